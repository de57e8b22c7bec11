"""``deskcorder service install|uninstall|status``: the login service for this platform.

Each platform module (``linux``, ``macos``, ``windows``) renders templates
shipped in ``deskcorder/data`` (copies of ``packaging/``) into planned files;
this module writes or removes them and reports every path it touched.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

from deskcorder.errors import EnvironmentUnsupported
from deskcorder.service.base import Action, Scope, Target, apply, inspect, remove

__all__ = ["Action", "Scope", "Target", "default_exec", "install", "status", "uninstall"]


def _module(platform: str) -> ModuleType:
    if platform.startswith("linux"):
        from deskcorder.service import linux

        return linux
    if platform == "darwin":
        from deskcorder.service import macos

        return macos
    if platform.startswith("win"):
        from deskcorder.service import windows

        return windows
    raise EnvironmentUnsupported(f"no login service support for platform {platform!r}")


def default_exec(platform: str = sys.platform) -> tuple[str, tuple[str, ...]]:
    """The command the service starts: the ``deskcorder`` script, or Python ``-m deskcorder``.

    On Windows it is ``pythonw.exe -m deskcorder`` when there is one, so that no
    console window opens at logon (the tray icon is the visible indicator).
    """
    here = Path(sys.executable).parent
    if platform.startswith("win"):
        pythonw = here / "pythonw.exe"
        if pythonw.is_file():
            return str(pythonw), ("-m", "deskcorder")
    for name in ("deskcorder", "deskcorder.exe"):
        candidate = here / name
        if candidate.is_file():
            return str(candidate), ()
    found = shutil.which("deskcorder")
    if found:
        return str(Path(found).absolute()), ()
    return str(Path(sys.executable).absolute()), ("-m", "deskcorder")


def default_user() -> str:
    if sys.platform.startswith("win"):
        domain = os.environ.get("USERDOMAIN")
        name = os.environ.get("USERNAME") or getpass.getuser()
        return f"{domain}\\{name}" if domain else name
    return getpass.getuser()


def install(target: Target) -> list[Action]:
    module = _module(target.platform)
    actions = apply(module.plan(target), target)
    extra: list[Action] = module.after_install(target)
    return actions + extra


def uninstall(target: Target) -> list[Action]:
    module = _module(target.platform)
    planned = module.plan(target)
    before: list[Action] = module.before_uninstall(target)
    removed = remove(planned, target)
    after: list[Action] = module.after_uninstall(target)
    if not removed:
        removed = [Action("nothing", "to remove", f"no {target.scope} service is installed")]
    return before + removed + after


def status(target: Target) -> list[Action]:
    module = _module(target.platform)
    rows = inspect(module.plan(target), target)
    if hasattr(module, "query"):
        rows.append(module.query(target))
    return rows
