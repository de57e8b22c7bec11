"""macOS: a LaunchAgent started in every GUI (Aqua) login session.

User scope: ``~/Library/LaunchAgents/com.deskcorder.agent.plist``;
all users: ``/Library/LaunchAgents/com.deskcorder.agent.plist``.
"""

from __future__ import annotations

import os
import plistlib
from pathlib import PurePosixPath
from typing import Any

from deskcorder.errors import DeskcorderError
from deskcorder.service.base import MARKER, Action, Planned, Target, fill, run_os, template

LABEL = "com.deskcorder.agent"
PLIST = f"{LABEL}.plist"


def render_plist(target: Target) -> bytes:
    text = fill(template(PLIST), {"EXEC": target.exec_path})
    try:
        data: dict[str, Any] = plistlib.loads(text.encode())
    except plistlib.InvalidFileException as exc:  # pragma: no cover - template is tested
        raise DeskcorderError(f"service template {PLIST} is not a valid plist") from exc
    data["ProgramArguments"] = [target.exec_path, *target.exec_args, "run"]
    if target.scope == "user":
        log = str(PurePosixPath(target.home) / "Library/Logs/deskcorder/agent.log")
        data["StandardErrorPath"] = log
        data["StandardOutPath"] = log
    body = plistlib.dumps(data, sort_keys=False)
    comment = f"<!-- {MARKER}; `deskcorder service uninstall` removes it. -->\n"
    head, sep, rest = body.partition(b"<plist")
    return head + comment.encode() + sep + rest


def plist_path(target: Target) -> PurePosixPath:
    if target.scope == "all-users":
        return PurePosixPath("/Library/LaunchAgents") / PLIST
    return PurePosixPath(target.home) / "Library/LaunchAgents" / PLIST


def plan(target: Target) -> list[Planned]:
    return [Planned(plist_path(target), render_plist(target), what="launchd LaunchAgent")]


def _domain() -> str:
    getuid = getattr(os, "getuid", None)
    return f"gui/{getuid() if getuid else 0}"


def after_install(target: Target) -> list[Action]:
    start = f"launchctl bootstrap {_domain()} {plist_path(target)}"
    return [Action("note", f"starts at the next login; now: {start}")]


def before_uninstall(target: Target) -> list[Action]:
    if target.scope == "all-users":
        return [Action("note", "running agents stop at logout")]
    return [
        run_os(
            target,
            ["launchctl", "bootout", f"{_domain()}/{LABEL}"],
            "stop the agent",
            required=False,
        )
    ]


def after_uninstall(target: Target) -> list[Action]:
    return []
