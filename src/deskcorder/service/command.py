"""The ``deskcorder service`` subcommand: argument parsing and printing only."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path, PureWindowsPath
from typing import Any

from deskcorder.errors import UsageError


def add_parser(sub: Any) -> None:
    """Register ``service install|uninstall|status`` on the CLI's subparsers."""
    p = sub.add_parser("service", help="install, remove or show the login service")
    ssub = p.add_subparsers(dest="service_command", metavar="ACTION", parser_class=type(p))
    for name, text in (
        ("install", "start deskcorder at login (writes the service files)"),
        ("uninstall", "stop starting deskcorder at login (removes the service files)"),
        ("status", "show which service files are installed"),
    ):
        sp = ssub.add_parser(name, help=text)
        scope = sp.add_mutually_exclusive_group()
        scope.add_argument(
            "--user", dest="scope", action="store_const", const="user", help="this user (default)"
        )
        scope.add_argument(
            "--all-users",
            dest="scope",
            action="store_const",
            const="all-users",
            help="every user of this machine (needs administrator rights)",
        )
        sp.add_argument(
            "--root", type=Path, metavar="DIR", help="write below DIR instead of / (packaging)"
        )
        sp.add_argument("--exec", dest="exec_path", metavar="PATH", help="deskcorder command path")
        sp.add_argument("--platform", help=argparse.SUPPRESS)
        if name in ("install", "status"):
            sp.add_argument("--policy", metavar="FILE", help="policy whose [limits] size the unit")
        sp.set_defaults(func=cmd_service, scope="user")
    p.set_defaults(func=_need_action)


def _need_action(args: argparse.Namespace) -> int:
    raise UsageError("deskcorder service: choose an action: install, uninstall or status")


def ceilings(cpu_percent: float, memory_mb: int) -> tuple[int, int, int]:
    """Service-manager ceilings well above the watchdog's policy limits (it sheds first)."""
    cpu = max(25, math.ceil(cpu_percent * 2.5))
    return cpu, max(128, math.ceil(memory_mb * 1.5)), max(160, memory_mb * 2)


def cmd_service(args: argparse.Namespace) -> int:
    from deskcorder.service import Target, default_exec, default_user, install, status, uninstall

    root: Path = (args.root or Path("/")).absolute()
    if args.root is not None and not root.is_dir():
        raise UsageError(f"--root {args.root}: not a directory")
    platform = args.platform or sys.platform
    extra: dict[str, Any] = {}
    if args.service_command in ("install", "status"):
        from deskcorder.policy.load import load_policy
        from deskcorder.policy.managed import managed_layers

        limits = load_policy(args.policy, extra_machine_layers=managed_layers).policy.limits
        cpu, high, top = ceilings(limits.cpu_percent, limits.memory_mb)
        extra = {"cpu_quota_percent": cpu, "memory_high_mb": high, "memory_max_mb": top}
    if args.exec_path and not (
        args.exec_path.startswith("/") or PureWindowsPath(args.exec_path).is_absolute()
    ):
        raise UsageError(f"--exec {args.exec_path}: give an absolute path")
    exec_path, exec_args = (args.exec_path, ()) if args.exec_path else default_exec(platform)
    target = Target(
        scope=args.scope,
        exec_path=exec_path,
        exec_args=exec_args,
        platform=platform,
        root=root,
        user=default_user(),
        **extra,
    )
    if args.service_command == "install":
        rows = install(target)
    elif args.service_command == "uninstall":
        rows = uninstall(target)
    else:
        rows = status(target)
    for row in rows:
        print(row)
    failed = [row for row in rows if row.verb == "failed"]
    if failed:
        from deskcorder.errors import DeskcorderError

        raise DeskcorderError(f"{failed[0].subject}: {failed[0].note}")
    return 0
