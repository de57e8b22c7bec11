"""``deskcorder dataset erase``: remove one person's rows and images from an export.

The lineage (written by ``build`` beside the export, readable by the admin
only) maps each random episode id to its session and user pseudonym; erase
rewrites every data file holding an episode of that user without its rows,
deletes the images no remaining row references, and drops the lineage entries.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from deskcorder.dataset._export import LINEAGE_FORMAT, need_pyarrow, write_info
from deskcorder.errors import FormatError, UsageError


def _lineage_files(lineage: Path) -> list[Path]:
    if lineage.is_dir():
        return sorted(lineage.glob("*.jsonl"))
    if lineage.is_file():
        return [lineage]
    raise UsageError(f"{lineage}: no such lineage file or folder")


def _read_lineage(path: Path) -> list[dict[str, Any]]:
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise FormatError(f"{path}:{n}: not JSON ({exc})") from exc
        if not isinstance(entry, dict) or entry.get("format") != LINEAGE_FORMAT:
            raise FormatError(f"{path}:{n}: not a deskcorder lineage entry")
        entries.append(entry)
    return entries


def _atomic_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _rewrite(path: Path, drop: set[str]) -> int:
    """Write ``path`` again without the rows of episodes ``drop``; rows removed."""
    if path.suffix == ".parquet":
        need_pyarrow()
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        keep = pc.invert(pc.is_in(table["episode_id"], value_set=pa.array(sorted(drop))))
        kept = table.filter(keep)
        removed = table.num_rows - kept.num_rows
        if removed:
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(kept, tmp, compression="zstd")
            os.replace(tmp, path)
        return int(removed)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept_lines = [line for line in lines if json.loads(line).get("episode_id") not in drop]
    if len(kept_lines) != len(lines):
        _atomic_lines(path, kept_lines)
    return len(lines) - len(kept_lines)


def _referenced(dataset: Path) -> set[str]:
    shas: set[str] = set()
    for path in sorted(dataset.glob("data/day=*/part-*.parquet")):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["observation_sha256", "after_sha256"])
        for col in table.columns:
            shas.update(v for v in col.to_pylist() if v)
    for path in sorted(dataset.glob("data/day=*/part-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            shas.update(v for v in (row.get("observation_sha256"), row.get("after_sha256")) if v)
    return shas


def erase(lineage: Path, user: str, dataset: Path | None = None) -> dict[str, int]:
    """Remove ``user``'s episodes from the export; returns what was removed."""
    files = _lineage_files(lineage)
    per_file = {f: _read_lineage(f) for f in files}
    theirs = [e for entries in per_file.values() for e in entries if e.get("user") == user]
    if dataset is None:
        base = lineage if lineage.is_dir() else lineage.parent
        if not base.name.endswith(".lineage"):
            raise UsageError(f"{lineage}: give the dataset folder with --dataset")
        dataset = base.with_name(base.name[: -len(".lineage")])
    info_path = dataset / "dataset_info.json"
    if not info_path.is_file():
        raise UsageError(f"{dataset}: not a deskcorder dataset (no dataset_info.json)")
    drop = {e["episode_id"] for e in theirs}
    rows = 0
    for rel in sorted({e["file"] for e in theirs}):
        path = dataset / rel
        if path.exists():
            rows += _rewrite(path, drop)
    candidates = {sha for e in theirs for sha in e.get("images", ())}
    left = _referenced(dataset) if candidates else set()
    images = 0
    for sha in sorted(candidates - left):
        for path in (dataset / "images" / sha[:2]).glob(f"{sha}*"):
            path.unlink()
            images += 1
    # the shard summaries count what is left, then dataset_info is merged again
    info = json.loads(info_path.read_text())
    for shard_file in sorted((dataset / "_shards").glob("*.json")):
        summary = json.loads(shard_file.read_text())
        mine = [e for e in theirs if e["file"].split("/")[-1].startswith(summary["name"] + ".")]
        if mine:
            summary["episodes"] -= len(mine)
            summary["kinds"] = _recount_kinds(dataset, summary["files"])
            summary["actions"] = sum(summary["kinds"].values())
            tmp = shard_file.with_name(f".{shard_file.name}.tmp")
            tmp.write_text(json.dumps(summary, indent=1) + "\n")
            os.replace(tmp, shard_file)
    from deskcorder.dataset._export import BuildOptions
    from deskcorder.dataset._reduce import Thresholds

    opts = BuildOptions(
        out=dataset,
        fmt=info.get("data_format", "parquet"),
        images=info.get("images", "copy"),
        purpose=info.get("purpose", "training"),
        thresholds=Thresholds(**info.get("thresholds", {})),
    )
    write_info(dataset, opts)
    for path, entries in per_file.items():
        remaining = [e for e in entries if e.get("user") != user]
        if len(remaining) != len(entries):
            _atomic_lines(path, [json.dumps(e) + "\n" for e in remaining])
    return {"episodes": len(drop), "rows": rows, "images": images}


def _recount_kinds(dataset: Path, files: list[str]) -> dict[str, int]:
    from collections import Counter

    kinds: Counter[str] = Counter()
    for rel in files:
        path = dataset / rel
        if not path.exists():
            continue
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            kinds.update(pq.read_table(path, columns=["kind"])["kind"].to_pylist())
        else:
            kinds.update(
                json.loads(line)["kind"] for line in path.read_text(encoding="utf-8").splitlines()
            )
    return dict(sorted(kinds.items()))
