"""Capture overhead and pipeline throughput of two revisions, interleaved in one run.

For a change on the hot path (hooks, pipeline): checks each revision out into a
temporary git worktree, then runs ``bench_capture.py`` and ``bench_pipeline.py``
of each in turn, BEFORE, AFTER, BEFORE, AFTER ..., so that both see the same
machine load, and prints one table of medians. Each revision runs its own
code and benches (``PYTHONPATH`` points at its ``src/``) with this
checkout's virtual environment. Run it under the heavy lock::

    flock /tmp/deskcorder-heavy.lock .venv/bin/python bench/ab_capture.py BEFORE AFTER [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_json(tree: Path, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out = subprocess.run(
        [sys.executable, *args, "--json"], cwd=tree, env=env, capture_output=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def one_round(tree: Path, seconds: float, events: int) -> dict[str, float]:
    load = os.getloadavg()[0]
    cap = run_json(tree, ["bench/bench_capture.py", f"--seconds={seconds}", "--idle-seconds=0"])
    pipe = run_json(tree, ["bench/bench_pipeline.py", f"--events={events}", "--repeat=3"])
    row = {"load": load}
    for r in cap["rates"]:
        rate = r["rate"]
        row[f"ratio_{rate}"] = r["agent_cpu"] / r["floor_cpu"] if r["floor_cpu"] else float("nan")
        row[f"move_p50_{rate}"] = r["hook_p50_us"]
        row[f"move_p99_{rate}"] = r["hook_p99_us"]
        row[f"key_p50_{rate}"] = r["key_p50_us"]
        row[f"rss_{rate}"] = r["agent_rss"]
    for kind in ("hz60", "hz0", "naive"):
        row[f"eps_{kind}"] = pipe["rate"][kind]["median"]
    row["bytes_per_event"] = pipe["size"]["hz60"]["bytes_per_event"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0, help="bench_capture --seconds")
    ap.add_argument("--events", type=int, default=100_000, help="bench_pipeline --events")
    args = ap.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="deskcorder-ab-") as tmp:
        trees = {}
        for side in ("before", "after"):
            trees[side] = Path(tmp) / side
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(trees[side]),
                 getattr(args, side)],
                check=True,
            )  # fmt: skip
        try:
            for n in range(args.rounds):
                for side in ("before", "after"):
                    print(f"round {n + 1} {side} {time.strftime('%H:%M:%S')}", file=sys.stderr)
                    rows[side].append(one_round(trees[side], args.seconds, args.events))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
    print(json.dumps(rows, indent=1) if os.environ.get("AB_JSON") else "", end="")
    keys = list(rows["before"][0])
    print(f"| figure | before ({args.before}) | after ({args.after}) |")
    print("|---|---|---|")
    for key in keys:
        cells = []
        for side in ("before", "after"):
            values = [r[key] for r in rows[side]]
            med = statistics.median(values)
            each = ", ".join(f"{v:,.3g}" if v < 100 else f"{v:,.0f}" for v in values)
            cells.append(f"{med:,.3g} ({each})" if med < 100 else f"{med:,.0f} ({each})")
        print(f"| {key} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
