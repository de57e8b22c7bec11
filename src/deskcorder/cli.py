"""Command line: argument parsing and exit codes only; the work happens elsewhere.

Exit codes (also in the README):

    0  success
    1  runtime failure (capture failed, a file could not be read ...)
    2  bad input: command-line usage or an invalid policy file
    3  capture cannot work here (no display, Wayland, missing permission; doctor failed)
    4  another agent already runs for this user
    5  no running agent to talk to (status, pause, resume)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from deskcorder import __version__
from deskcorder.errors import DeskcorderError, EnvironmentUnsupported, UsageError

log = logging.getLogger("deskcorder")

Command = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _add_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", metavar="FILE", help="policy file layered over the machine policy")


def _add_spool(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spool", metavar="DIR", type=Path, help="spool folder (default: per user)")


def _add_html(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--html", action="store_true", help="write HTML replay pages instead")
    p.add_argument("--out", metavar="PATH", type=Path, help=out_help + " (default: per user)")
    p.add_argument("--open", action="store_true", help="with --html: open it in the web browser")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deskcorder", description="Overt, policy-driven desktop recorder.")
    parser.add_argument("--version", action="version", version=f"deskcorder {__version__}")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="informational logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="record until stopped (SIGTERM/SIGINT) or --duration")
    _add_policy(p)
    _add_spool(p)
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--backend", metavar="NAME", help="x11, windows, macos or fake")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="show what was captured and is still on this machine")
    p.add_argument("session", nargs="?", help="a session id or folder (default: all)")
    _add_spool(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--events", action="store_true", help="print every record of the session")
    _add_html(p, "--html: folder for index.html and a replay page per session")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("policy", help="validate or describe the policy")
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=_Parser)
    pc = psub.add_parser("check", help="validate and print the effective policy with sources")
    _add_policy(pc)
    pc.add_argument("--json", action="store_true")
    pc.set_defaults(func=cmd_policy_check)
    ps = psub.add_parser("schema", help="print the policy's JSON Schema")
    ps.set_defaults(func=cmd_policy_schema)
    pf = psub.add_parser("format-schema", help="print the session format's JSON Schema")
    pf.set_defaults(func=cmd_format_schema)

    p = sub.add_parser("doctor", help="check that capture will work here and explain why not")
    _add_policy(p)
    _add_spool(p)
    p.add_argument("--backend", metavar="NAME")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("status", help="show the running agent's state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("pause", help="pause recording (within policy limits)")
    p.add_argument(
        "--minutes",
        type=float,
        help="pause length (default: until resumed or policy's longest pause)",
    )
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("resume", help="resume recording")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("collector", help="run the reference collection server")
    csub = p.add_subparsers(dest="collector_command", metavar="ACTION", parser_class=_Parser)
    cs = csub.add_parser("serve", help="serve the collector API (needs the [collector] extra)")
    where = cs.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", metavar="DIR", type=Path, help="storage folder (local backend)")
    where.add_argument("--store", metavar="s3://BUCKET/PREFIX", help="bucket (fleet backend)")
    _add_fleet(cs)
    cs.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    cs.add_argument("--port", type=int, default=8787, help="TCP port (default 8787; 0 = any)")
    cs.add_argument("--admin-token-file", metavar="F", type=Path, help="admin bearer token")
    cs.add_argument("--enroll-secret-file", metavar="F", type=Path, help="org enroll secret")
    cs.add_argument("--max-chunk-mb", type=float, default=64.0, help="largest chunk accepted")
    cs.add_argument(
        "--max-decompressed-mb", type=float, default=512.0, help="largest chunk once decompressed"
    )
    cs.add_argument("--access-log", action="store_true", help="log every request")
    cs.add_argument(
        "--pseudonym-key-file", metavar="F", type=Path, help="key the pseudonyms are derived with"
    )
    cs.add_argument("--allow-named", action="store_true", help="accept identity.mode = named")
    cs.add_argument("--tls-cert", metavar="F", type=Path, help="serve HTTPS with this PEM cert")
    cs.add_argument("--tls-key", metavar="F", type=Path, help="the certificate's PEM key")
    cs.add_argument(
        "--trusted-proxy", metavar="IPS", help="proxies whose X-Forwarded-For is believed"
    )
    cs.add_argument("--token-ttl-s", type=float, default=3600.0, help="device token lifetime")
    cs.add_argument(
        "--enroll-per-minute", type=float, default=60.0, help="enroll/auth requests per address"
    )
    cs.add_argument(
        "--device-writes-per-s", type=float, default=50.0, help="writes per device (0 = no limit)"
    )
    cs.add_argument(
        "--shutdown-timeout", type=float, default=30.0, metavar="S",
        help="on SIGTERM, how long requests in progress may take to finish (default 30)",
    )  # fmt: skip
    cs.add_argument(
        "--retain-days", type=float, metavar="N",
        help="delete sessions whose last chunk arrived more than N days ago (audited)",
    )  # fmt: skip
    cs.set_defaults(func=cmd_collector_serve)
    cp = csub.add_parser("person", help="every pseudonym of a login (data-subject requests)")
    cp.add_argument("login", help="the person's login name")
    cp.add_argument("--url", default="http://127.0.0.1:8787", help="the collector's URL")
    cp.add_argument("--admin-token-file", metavar="F", type=Path, required=True)
    cp.add_argument("--ca-bundle", metavar="F", help="CA bundle for an https:// URL")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    act = cp.add_mutually_exclusive_group()
    act.add_argument("--export", metavar="FILE", type=Path, help="write all their data (JSONL)")
    act.add_argument("--erase", action="store_true", help="erase all their data")
    cp.set_defaults(func=cmd_collector_person)
    cm = csub.add_parser("migrate", help="create or upgrade the fleet backend's database schema")
    cm.add_argument("--db", metavar="URL", required=True, help="postgresql://USER@HOST:PORT/DB")
    cm.add_argument("--db-password-file", metavar="F", type=Path, help="the database password")
    cm.set_defaults(func=cmd_collector_migrate)
    cc = csub.add_parser("copy", help="copy a local collector's data into the fleet backend")
    cc.add_argument("--from", dest="source", metavar="DIR", type=Path, required=True,
                    help="the local collector's --data folder (read only)")  # fmt: skip
    cc.add_argument("--to-store", metavar="s3://BUCKET/PREFIX", required=True)
    cc.add_argument("--to-db", metavar="URL", required=True, help="postgresql://USER@HOST:PORT/DB")
    cc.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint (default: AWS)")
    cc.add_argument("--s3-region", metavar="R", help="S3 region")
    cc.add_argument("--s3-credentials-file", metavar="F", type=Path, help="AWS_... lines")
    cc.add_argument("--db-password-file", metavar="F", type=Path, help="the database password")
    cc.add_argument("--workers", type=int, default=8, help="objects uploaded at once (default 8)")
    cc.set_defaults(func=cmd_collector_copy)

    p = sub.add_parser("consent", help="show, accept or withdraw the recording notice")
    p.add_argument("action", choices=["show", "accept", "withdraw"])
    _add_policy(p)
    _add_spool(p)
    p.set_defaults(func=cmd_consent)

    p = sub.add_parser("review", help="approve or delete sealed chunks before upload")
    p.add_argument(
        "action", nargs="?", default="list", choices=["list", "show", "approve", "delete"]
    )
    p.add_argument("chunk", nargs="?", help="SESSION/SEQ, SESSION or all (show/approve/delete)")
    _add_spool(p)
    _add_html(p, "--html: the page (show SESSION[/SEQ]) or the folder of pages (list)")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("replay", help="write an HTML replay of a session (stays on this machine)")
    p.add_argument("session", nargs="?", help="a session id or folder (default: the newest)")
    _add_spool(p)
    p.add_argument("--out", metavar="FILE.html", type=Path, help="the page (default: per user)")
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.add_argument(
        "--steps",
        choices=["actions", "records"],
        default="actions",
        help="step through actions (default) or the raw records",
    )
    p.set_defaults(func=cmd_replay)

    from deskcorder.service.command import add_parser as add_service_parser

    add_service_parser(sub)

    from deskcorder.commands.dataset import add_parser as add_dataset_parser

    add_dataset_parser(sub, _add_fleet)
    return parser


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Any:
    from deskcorder.policy.load import load_policy
    from deskcorder.policy.managed import managed_layers

    return load_policy(getattr(args, "policy", None), extra_machine_layers=managed_layers)


def _spool_dir(args: argparse.Namespace) -> Path:
    from deskcorder.agent import default_spool_dir

    spool: Path | None = getattr(args, "spool", None)
    return spool if spool is not None else default_spool_dir()


def cmd_run(args: argparse.Namespace) -> int:
    from deskcorder.agent import Agent
    from deskcorder.platform import select_backend

    loaded = _load(args)
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be a positive number of seconds")
    backend = select_backend(args.backend)
    agent = Agent(loaded, _spool_dir(args), backend, duration=args.duration)
    code = agent.run()
    print(f"session {agent.session_id} saved in {agent.spool.sessions_dir / agent.session_id}")
    return code


def _page_written(page: Path, args: argparse.Namespace) -> int:
    if args.open:
        import webbrowser

        webbrowser.open(page.as_uri())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from deskcorder.commands.replay import replay_page

    page = replay_page(_spool_dir(args), args.session, args.out, print, steps=args.steps)
    return _page_written(page, args)


def cmd_inspect(args: argparse.Namespace) -> int:
    from deskcorder.commands.inspect import inspect_spool

    if args.html:
        from deskcorder.commands.replay import inspect_pages, replay_page

        if args.session:
            page = replay_page(_spool_dir(args), args.session, args.out, print)
        else:
            page = inspect_pages(_spool_dir(args), args.out, print)
        return _page_written(page, args)
    if args.out is not None or args.open:
        raise UsageError("--out and --open go with --html")
    return inspect_spool(
        _spool_dir(args), args.session, as_json=args.json, all_events=args.events, out=sys.stdout
    )


def cmd_policy_check(args: argparse.Namespace) -> int:
    loaded = _load(args)
    rows = loaded.effective()
    if args.json:
        print(
            json.dumps(
                {
                    "files": loaded.files,
                    "digest": loaded.policy.digest(),
                    "settings": [{"key": k, "value": v, "source": s} for k, v, s in rows],
                },
                indent=2,
            )
        )
        return 0
    print("policy is valid")
    print(f"files: {', '.join(loaded.files) if loaded.files else '(none: built-in defaults)'}")
    print(f"digest: {loaded.policy.digest()}")
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        print(f"  {key:<{width}} = {json.dumps(value)}   [{source}]")
    return 0


def cmd_policy_schema(args: argparse.Namespace) -> int:
    from deskcorder.policy.model import Policy

    print(json.dumps(Policy.model_json_schema(), indent=2))
    return 0


def cmd_format_schema(args: argparse.Namespace) -> int:
    from deskcorder.events import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from deskcorder.commands.doctor import run_doctor

    ok = run_doctor(args.policy, _spool_dir(args), args.backend, out=sys.stdout)
    if not ok:
        raise EnvironmentUnsupported("capture will not work here: see the failed checks above")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from deskcorder.commands.status import format_status
    from deskcorder.control import request

    reply = request("status")
    if args.json:
        print(json.dumps(reply, indent=2, default=str))
    else:
        print(format_status(reply))
    return 0


def _control(cmd: str, **fields: Any) -> dict[str, Any]:
    from deskcorder.control import request

    reply = request(cmd, **fields)
    if not reply.get("ok"):
        raise DeskcorderError(f"{cmd} refused: {reply.get('error', 'unknown error')}")
    return reply


def cmd_pause(args: argparse.Namespace) -> int:
    reply = _control("pause", minutes=args.minutes)
    left = reply.get("pause_left_s")
    print("paused" + (f" for {round(left / 60)} min" if left else " until you resume"))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _control("resume")
    print("recording resumed")
    return 0


def _add_fleet(p: argparse.ArgumentParser) -> None:
    """The fleet backend's options (secrets come from the environment or files only)."""
    p.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint (default: AWS)")
    p.add_argument("--s3-region", metavar="R", help="S3 region (default: AWS_REGION or us-east-1)")
    p.add_argument(
        "--s3-credentials-file", metavar="F", type=Path, help="AWS_ACCESS_KEY_ID=... lines"
    )
    p.add_argument("--db", metavar="URL", help="postgresql://USER@HOST:PORT/DB (fleet backend)")
    p.add_argument("--db-password-file", metavar="F", type=Path, help="the database password")


def _fleet_config(args: argparse.Namespace) -> Any:
    from deskcorder.collector.backends.fleet import FleetConfig

    return FleetConfig.from_options(args.store, args)


def cmd_collector_serve(args: argparse.Namespace) -> int:
    from deskcorder.collector.app import Security
    from deskcorder.collector.base import Limits
    from deskcorder.collector.server import read_secret, serve, tls_files

    if args.max_chunk_mb <= 0 or args.max_decompressed_mb <= 0:
        raise UsageError("--max-chunk-mb and --max-decompressed-mb must be positive")
    if args.token_ttl_s < 60 or args.enroll_per_minute < 0 or args.device_writes_per_s < 0:
        raise UsageError("--token-ttl-s must be >= 60; the rates must be >= 0")
    key = read_secret(args.pseudonym_key_file, "pseudonym key")
    security = Security(
        pseudonym_key=key.encode() if key is not None else None,
        allow_named=args.allow_named,
        token_ttl_s=args.token_ttl_s,
        enroll_per_minute=args.enroll_per_minute,
        writes_per_s=args.device_writes_per_s,
        write_burst=max(1.0, args.device_writes_per_s * 10),
    )
    if not 0 < args.shutdown_timeout <= 3600:
        raise UsageError("--shutdown-timeout must be between 0 and 3600 seconds")
    if args.retain_days is not None and not args.retain_days > 0:
        raise UsageError("--retain-days must be positive")
    limits = Limits(
        max_chunk_bytes=int(args.max_chunk_mb * 1024 * 1024),
        max_decompressed_bytes=int(args.max_decompressed_mb * 1024 * 1024),
    )
    if args.data is not None:
        if args.db is not None or args.s3_endpoint is not None:
            raise UsageError("--db and --s3-endpoint go with --store, not --data")
        from deskcorder.collector.backends import open_local

        data = args.data
        opener = lambda: open_local(data, limits)  # noqa: E731
    else:
        from deskcorder.collector.backends.fleet import open_fleet

        config = _fleet_config(args)
        opener = lambda: open_fleet(config, limits)  # noqa: E731
    return serve(
        opener,
        args.host,
        args.port,
        admin_token=read_secret(args.admin_token_file, "admin token"),
        enroll_secret=read_secret(args.enroll_secret_file, "enroll secret"),
        access_log=args.access_log,
        security=security,
        tls=tls_files(args.tls_cert, args.tls_key),
        trusted_proxies=args.trusted_proxy,
        shutdown_timeout=args.shutdown_timeout,
        retain_days=args.retain_days,
    )


def cmd_collector_person(args: argparse.Namespace) -> int:
    from deskcorder.collector.admin import person_command
    from deskcorder.collector.server import read_secret

    token = read_secret(args.admin_token_file, "admin token")
    assert token is not None
    return person_command(
        args.url, token, args.login, ca_bundle=args.ca_bundle, as_json=args.json,
        export=args.export, erase=args.erase, out=sys.stdout,
    )  # fmt: skip


def cmd_collector_copy(args: argparse.Namespace) -> int:
    from deskcorder.collector.backends.copy import copy_command
    from deskcorder.collector.backends.fleet import FleetConfig

    if not 1 <= args.workers <= 64:
        raise UsageError("--workers must be between 1 and 64")
    config = FleetConfig.from_args(
        args.to_store,
        args.s3_endpoint,
        args.to_db,
        region=args.s3_region,
        credentials_file=args.s3_credentials_file,
        db_password_file=args.db_password_file,
    )
    return copy_command(args.source, config, sys.stdout, workers=args.workers)


def cmd_collector_migrate(args: argparse.Namespace) -> int:
    from deskcorder.collector.backends.fleet import migrate_command

    return migrate_command(args.db, args.db_password_file, sys.stdout)


def cmd_consent(args: argparse.Namespace) -> int:
    from deskcorder.commands.consent import consent_command

    return consent_command(args.action, _load(args).policy, _spool_dir(args), sys.stdout)


def cmd_review(args: argparse.Namespace) -> int:
    from deskcorder.commands.review import review_command

    if args.html:
        from deskcorder.commands.replay import review_html

        page = review_html(
            args.action,
            args.chunk,
            _spool_dir(args),
            args.out,
            print,
            spool_given=args.spool is not None,
        )
        return _page_written(page, args)
    if args.out is not None or args.open:
        raise UsageError("--out and --open go with --html")
    return review_command(args.action, args.chunk, _spool_dir(args), sys.stdout)


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def _configure_logging(debug: bool, verbose: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("deskcorder: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _configure_logging(args.debug, args.verbose)
        func: Command | None = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return 2
        return func(args)
    except DeskcorderError as exc:
        if debug:
            log.exception("failed")
        print(f"deskcorder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if debug:
            raise
        print(
            f"deskcorder: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
