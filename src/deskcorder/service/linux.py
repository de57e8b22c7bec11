"""Linux: a systemd user unit plus an XDG autostart entry for sessions without systemd.

User scope: ``~/.config/systemd/user/deskcorder.service``, enabled by the link
``~/.config/systemd/user/graphical-session.target.wants/deskcorder.service``,
and ``~/.config/autostart/deskcorder.desktop``.

All users: the vendor unit ``/usr/lib/systemd/user/deskcorder.service``, enabled
for everyone by ``/etc/systemd/user/graphical-session.target.wants/`` (what
``systemctl --global enable`` does), and ``/etc/xdg/autostart/deskcorder.desktop``.

Desktops whose autostart goes through systemd skip the ``.desktop`` entry
(``X-systemd-skip=true``); elsewhere the single-instance lock stops a second
agent (exit 4, which the unit does not restart).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from deskcorder.service.base import MARKER, Action, Planned, Target, fill, run_os, template

UNIT = "deskcorder.service"
DESKTOP = "deskcorder.desktop"
WANTS = "graphical-session.target.wants"


def _quote(path: str) -> str:
    return f'"{path}"' if any(c.isspace() for c in path) else path


def _command(target: Target) -> str:
    return " ".join(_quote(part) for part in (target.exec_path, *target.exec_args))


def render_unit(target: Target) -> str:
    text = fill(
        template(UNIT),
        {
            "EXEC": _command(target),
            "CPU_QUOTA": str(target.cpu_quota_percent),
            "MEMORY_HIGH": str(target.memory_high_mb),
            "MEMORY_MAX": str(target.memory_max_mb),
        },
    )
    return f"# {MARKER}; `deskcorder service uninstall` removes it.\n" + text


def render_desktop(target: Target) -> str:
    text = fill(template(DESKTOP), {"EXEC": _command(target)})
    return f"# {MARKER}; `deskcorder service uninstall` removes it.\n" + text


def unit_dir(target: Target) -> PurePosixPath:
    if target.scope == "all-users":
        return PurePosixPath("/usr/lib/systemd/user")
    return PurePosixPath(target.home) / ".config/systemd/user"


def plan(target: Target) -> list[Planned]:
    units = unit_dir(target)
    if target.scope == "all-users":
        wants = PurePosixPath("/etc/systemd/user") / WANTS
        autostart = PurePosixPath("/etc/xdg/autostart")
    else:
        wants = units / WANTS
        autostart = PurePosixPath(target.home) / ".config/autostart"
    return [
        Planned(units / UNIT, render_unit(target).encode(), what="systemd user unit"),
        Planned(
            wants / UNIT,
            link_to=str(units / UNIT),
            what="starts it with the session",
            prune_parent=True,
        ),
        Planned(autostart / DESKTOP, render_desktop(target).encode(), what="XDG autostart"),
    ]


def after_install(target: Target) -> list[Action]:
    if target.scope == "all-users":
        return [Action("note", "takes effect at each user's next login")]
    return [
        run_os(
            target,
            ["systemctl", "--user", "daemon-reload"],
            "systemd reads the new unit",
            required=False,
        ),
        Action("note", "starts at your next login; now: systemctl --user start deskcorder"),
    ]


def before_uninstall(target: Target) -> list[Action]:
    if target.scope == "all-users":
        return [
            Action("note", "running agents stop at logout or: systemctl --user stop deskcorder")
        ]
    return [
        run_os(
            target, ["systemctl", "--user", "stop", UNIT], "stop the running agent", required=False
        )
    ]


def after_uninstall(target: Target) -> list[Action]:
    if target.scope == "all-users":
        return []
    return [
        run_os(
            target,
            ["systemctl", "--user", "daemon-reload"],
            "systemd forgets the unit",
            required=False,
        )
    ]


def query(target: Target) -> Action:
    """Is the agent running in this user's systemd session? (user scope, live only)"""
    if target.scope == "all-users":
        return Action("note", "per-user state: systemctl --user status deskcorder (as each user)")
    row = run_os(target, ["systemctl", "--user", "is-active", UNIT], "state", required=False)
    if row.verb == "ran":
        return Action("active", f"{UNIT} (systemd user session)")
    if row.verb == "skipped" and row.note in ("inactive", "failed", "activating", "deactivating"):
        return Action(row.note, f"{UNIT} (systemd user session)")
    return Action("unknown", f"{UNIT} (systemd user session)", row.note)
