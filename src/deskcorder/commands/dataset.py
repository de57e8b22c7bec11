"""``deskcorder dataset build|erase|head``: argument parsing and printing, and the
source a build reads (:func:`source_opener`: a collector's data is opened here, read
only, through the collector's storage interface, since ``dataset`` does not import
``collector``).

The work is in :mod:`deskcorder.dataset` (docs/dataset.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deskcorder.errors import UsageError

if TYPE_CHECKING:
    from deskcorder.collector.backends.fleet import FleetConfig
    from deskcorder.dataset._source import SourceOpener


FLEET_ONLY = "--db and --s3-endpoint go with --from s3://BUCKET/PREFIX, not a folder"


def source_opener(where: str | os.PathLike[str], fleet: FleetConfig | None = None) -> SourceOpener:
    """A picklable opener of the source at ``where``: a spool or session folder, a
    collector's data folder (local backend), or ``s3://BUCKET/PREFIX`` with ``fleet``
    (the fleet backend). Collector data is opened read only: a running collector is not
    disturbed. A one-line error when ``where`` is none of these."""
    from deskcorder.dataset._source import open_collector, open_source, source_kind

    text = os.fspath(where)
    if text.startswith("s3://"):
        if fleet is None:
            raise UsageError(f"--from {text}: needs --db postgresql://USER@HOST:PORT/DB")
        from deskcorder.collector.backends.fleet import open_fleet_reader

        reader = functools.partial(open_fleet_reader, fleet)
        return functools.partial(open_collector, reader, local_files=False)
    if fleet is not None:
        raise UsageError(FLEET_ONLY)
    if source_kind(text) == "collector":
        from deskcorder.collector.backends.local import open_local_reader

        reader = functools.partial(open_local_reader, Path(text))
        return functools.partial(open_collector, reader, local_files=True)
    return functools.partial(open_source, text)


def add_parser(sub: Any, fleet_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``dataset build|erase|head`` on the CLI's subparsers (``fleet_options``
    adds the fleet backend's options, as ``collector serve`` has them)."""
    from deskcorder.dataset import Thresholds
    from deskcorder.dataset._export import FORMATS, IMAGE_MODES, PURPOSES

    p = sub.add_parser("dataset", help="turn recorded sessions into a training dataset")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", parser_class=type(p))

    b = dsub.add_parser("build", help="reduce sessions to actions and write Parquet or JSONL")
    b.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="PATH",
        help="a spool, a session folder, a collector data folder or s3://BUCKET/PREFIX "
        "(a fleet collector's data, with --db)",
    )
    fleet_options(b)
    b.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder")
    b.add_argument("--format", dest="fmt", choices=FORMATS, default="parquet")
    b.add_argument(
        "--since",
        metavar="DATE",
        help="only episodes that began on or after DATE (YYYY-MM-DD, UTC)",
    )
    b.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="only sessions of shard I of N (by session id), for parallel builds",
    )
    b.add_argument("--jobs", type=int, default=1, metavar="N", help="worker processes")
    b.add_argument(
        "--images",
        choices=IMAGE_MODES,
        default="copy",
        help="observation images: copy or link them beside the rows, leave them "
        "out, or embed their bytes",
    )
    b.add_argument(
        "--purpose",
        choices=PURPOSES,
        default="training",
        help="training (default): no person identifier, no wall-clock time; "
        "analysis: pseudonyms and times kept",
    )
    b.add_argument(
        "--lineage",
        type=Path,
        metavar="DIR",
        help="where the episode -> session/user map goes (default: OUT.lineage)",
    )
    for f in fields(Thresholds):
        b.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=int,
            dest=f.name,
            metavar="N",
            help=f"threshold (default {f.default})",
        )
    b.set_defaults(func=cmd_build)

    e = dsub.add_parser("erase", help="remove one person's rows and images from an export")
    e.add_argument(
        "--lineage",
        required=True,
        type=Path,
        metavar="F",
        help="the export's lineage file or folder",
    )
    e.add_argument("--user", required=True, metavar="U", help="the user pseudonym")
    e.add_argument(
        "--dataset",
        type=Path,
        metavar="DIR",
        help="the export (default: the lineage folder's name without .lineage)",
    )
    e.set_defaults(func=cmd_erase)

    h = dsub.add_parser("head", help="print the first rows of an export as JSON lines")
    h.add_argument("dataset", type=Path, metavar="DIR")
    h.add_argument("-n", type=int, default=5, metavar="N", help="rows (default 5)")
    h.set_defaults(func=cmd_head)


def cmd_build(args: argparse.Namespace) -> int:
    from deskcorder.dataset import BuildOptions, Thresholds, build
    from deskcorder.dataset._export import parse_shard, parse_since, terminal_progress

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    fleet = _fleet_config(args)
    given = {f.name: getattr(args, f.name) for f in fields(Thresholds)}
    try:
        thresholds = Thresholds(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise UsageError(f"--{str(exc).split()[1].replace('_', '-')}: {exc}") from exc
    opts = BuildOptions(
        out=args.out,
        fmt=args.fmt,
        since=None if args.since is None else parse_since(args.since),
        shard=parse_shard(args.shard),
        images=args.images,
        purpose=args.purpose,
        thresholds=thresholds,
        lineage=args.lineage,
    )
    opener = source_opener(args.source, fleet)
    info = build(opener, opts, jobs=args.jobs, progress=terminal_progress())
    counts = info["counts"]
    print(
        f"dataset: {counts['episodes']} episodes, {counts['actions']} actions, "
        f"{counts['images']} images in {args.out} (purpose {opts.purpose}; "
        f"lineage in {opts.lineage_dir()})"
    )
    return 0


def _fleet_config(args: argparse.Namespace) -> FleetConfig | None:
    """The fleet backend of ``--from s3://...`` (None for a folder)."""
    from deskcorder.collector.backends.fleet import FleetConfig

    if not args.source.startswith("s3://"):
        if args.db is not None or args.s3_endpoint is not None:
            raise UsageError(FLEET_ONLY)
        return None
    return FleetConfig.from_options(args.source, args, "--from")


def cmd_erase(args: argparse.Namespace) -> int:
    from deskcorder.dataset import erase

    done = erase(args.lineage, args.user, args.dataset)
    print(
        f"erased {args.user}: {done['episodes']} episodes, {done['rows']} rows, "
        f"{done['images']} images"
    )
    return 0


def cmd_head(args: argparse.Namespace) -> int:
    from deskcorder.dataset._export import iter_rows

    if not (args.dataset / "dataset_info.json").is_file():
        raise UsageError(f"{args.dataset}: not a deskcorder dataset (no dataset_info.json)")
    for row in iter_rows(args.dataset, max(args.n, 0)):
        sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return 0
