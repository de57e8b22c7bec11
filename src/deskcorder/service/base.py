"""What every platform's service installer shares: the target, planned files, actions.

A platform module turns a :class:`Target` into a list of :class:`Planned` files
(and, on Windows, a scheduled task). :func:`apply` writes them and
:func:`remove` deletes them; both return :class:`Action` rows that the CLI
prints, one per path written, linked or removed, so the user sees exactly
what changed. OS calls (``systemctl``, ``launchctl``, ``schtasks``) go
through ``Target.run`` so that tests can replace them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePath
from typing import Literal

from deskcorder.errors import DeskcorderError

Scope = Literal["user", "all-users"]
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

#: First line of every file that ``deskcorder service install`` writes. Uninstall
#: removes only files that carry it (never a file a package or a person put there).
MARKER = "Written by `deskcorder service install`"


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run an OS tool with a timeout; replaced in tests."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)


@dataclass(frozen=True)
class Target:
    """Where and for whom to install.

    ``root`` is a DESTDIR-like prefix: every path is written below it. OS calls
    run only when ``root`` is ``/`` (a real install).
    """

    scope: Scope
    exec_path: str
    exec_args: tuple[str, ...] = ()  # e.g. ("-m", "deskcorder") after pythonw.exe
    platform: str = sys.platform
    root: Path = Path("/")
    home: PurePath = field(default_factory=Path.home)
    user: str = ""
    run: Runner = run_command
    cpu_quota_percent: int = 25
    memory_high_mb: int = 300
    memory_max_mb: int = 400

    @property
    def live(self) -> bool:
        """True for a real install at ``/``, where paths are used as they are."""
        return self.root == Path("/")

    @property
    def os_calls(self) -> bool:
        """OS tools run for a real install, or through a runner a test supplied."""
        return self.live or self.run is not run_command

    def path(self, logical: PurePath | str) -> Path:
        """The on-disk location of ``logical`` (an absolute path on the target system)."""
        if not isinstance(logical, PurePath):
            logical = PurePath(logical)
        if self.live:
            return Path(logical)
        return self.root.joinpath(*logical.parts[1:])


@dataclass(frozen=True)
class Planned:
    """One file (or symlink) the service consists of, as a path on the target system."""

    logical: PurePath
    content: bytes | None = None
    link_to: str | None = None
    what: str = ""
    prune_parent: bool = False  # remove the parent folder on uninstall when it is left empty


@dataclass(frozen=True)
class Action:
    verb: str  # wrote, unchanged, linked, removed, kept, ran, skipped, missing, present ...
    subject: str
    note: str = ""

    def __str__(self) -> str:
        return f"{self.verb:<9} {self.subject}" + (f"  ({self.note})" if self.note else "")


def template(name: str) -> str:
    """A template shipped as package data (``deskcorder/data``)."""
    try:
        return resources.files("deskcorder").joinpath("data", name).read_text(encoding="utf-8")
    except OSError as exc:
        raise DeskcorderError(f"service template {name} is missing from the package") from exc


def fill(text: str, values: dict[str, str]) -> str:
    """Replace ``@KEY@`` placeholders; every placeholder must be filled."""
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    leftover = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if leftover:
        raise DeskcorderError(f"service template has unfilled placeholders: {', '.join(leftover)}")
    return text


def _ours(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    for enc in ("utf-8", "utf-16"):
        try:
            if MARKER in head.decode(enc, errors="ignore"):
                return True
        except LookupError:  # pragma: no cover
            continue
    return False


def _fail(verb: str, path: Path, exc: OSError, target: Target) -> DeskcorderError:
    reason = exc.strerror or type(exc).__name__
    hint = " (--all-users needs administrator rights)" if target.scope == "all-users" else ""
    return DeskcorderError(f"cannot {verb} {path}: {reason}{hint}")


def apply(planned: Sequence[Planned], target: Target) -> list[Action]:
    """Write every planned file (atomically) and link; report each path."""
    actions: list[Action] = []
    for item in planned:
        path = target.path(item.logical)
        try:
            if item.link_to is not None:
                if path.is_symlink() and os.readlink(path) == item.link_to:
                    actions.append(Action("unchanged", str(path), item.what))
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_symlink() or path.exists():
                    path.unlink()
                path.symlink_to(item.link_to)
                actions.append(Action("linked", f"{path} -> {item.link_to}", item.what))
                continue
            assert item.content is not None
            if path.exists() and not path.is_symlink():
                if not _ours(path):
                    actions.append(
                        Action("kept", str(path), "not written by deskcorder; left as is")
                    )
                    continue
                if path.read_bytes() == item.content:
                    actions.append(Action("unchanged", str(path), item.what))
                    continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(item.content)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            actions.append(Action("wrote", str(path), item.what))
        except OSError as exc:
            raise _fail("write", path, exc, target) from exc
    return actions


def remove(planned: Sequence[Planned], target: Target) -> list[Action]:
    """Remove every planned file we wrote; a file without our marker is kept."""
    actions: list[Action] = []
    for item in planned:
        path = target.path(item.logical)
        try:
            if path.is_symlink():
                if item.link_to is not None and os.readlink(path) != item.link_to:
                    actions.append(Action("kept", str(path), "links elsewhere; left as is"))
                    continue
                path.unlink()
                actions.append(Action("removed", str(path), item.what))
            elif path.exists():
                if item.link_to is not None or not _ours(path):
                    actions.append(
                        Action("kept", str(path), "not written by deskcorder; left as is")
                    )
                    continue
                path.unlink()
                actions.append(Action("removed", str(path), item.what))
            else:
                continue
        except OSError as exc:
            raise _fail("remove", path, exc, target) from exc
        if item.prune_parent:
            try:
                path.parent.rmdir()  # only succeeds when empty
                actions.append(Action("removed", str(path.parent), "empty folder"))
            except OSError:
                pass
    return actions


def inspect(planned: Sequence[Planned], target: Target) -> list[Action]:
    """For ``status``: installed, outdated, missing or foreign, per path."""
    rows: list[Action] = []
    for item in planned:
        path = target.path(item.logical)
        if item.link_to is not None:
            if path.is_symlink():
                state = "present" if os.readlink(path) == item.link_to else "foreign"
            else:
                state = "missing"
        elif not path.exists():
            state = "missing"
        elif not _ours(path):
            state = "foreign"
        else:
            state = "present" if path.read_bytes() == item.content else "outdated"
        rows.append(Action(state, str(path), item.what))
    return rows


def run_os(target: Target, argv: Sequence[str], why: str, *, required: bool = True) -> Action:
    """Run an OS tool for a live install; report what happened in one row.

    A failed ``required`` call is a ``failed`` row (the CLI exits 1); an optional
    one (e.g. ``systemctl --user daemon-reload`` without a user session) is ``skipped``.
    """
    shown = " ".join(argv)
    if not target.os_calls:
        return Action("skipped", shown, "staging root: no OS calls")
    try:
        done = target.run(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        return Action("failed" if required else "skipped", shown, f"{why}: {exc}")
    if done.returncode != 0:
        err = (done.stderr or done.stdout or "").strip().splitlines()
        return Action(
            "failed" if required else "skipped", shown, err[0] if err else f"exit {done.returncode}"
        )
    return Action("ran", shown, why)
