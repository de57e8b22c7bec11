"""``deskcorder dataset build|erase|head``: argument parsing and printing only.

The work is in :mod:`deskcorder.dataset` (docs/dataset.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from deskcorder.errors import UsageError


def add_parser(sub: Any) -> None:
    """Register ``dataset build|erase|head`` on the CLI's subparsers."""
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
        help="a spool, a session folder or a collector data folder",
    )
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
    info = build(args.source, opts, jobs=args.jobs, progress=terminal_progress())
    counts = info["counts"]
    print(
        f"dataset: {counts['episodes']} episodes, {counts['actions']} actions, "
        f"{counts['images']} images in {args.out} (purpose {opts.purpose}; "
        f"lineage in {opts.lineage_dir()})"
    )
    return 0


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
