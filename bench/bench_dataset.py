"""Dataset export speed and memory (issue 15). Prints figures; not a timed test.

Generated sessions: the reference workload (``workload.py``, human-like input
with pauses) cut to one hour of session time per hour asked, run through the
real pipeline into a real spool (60 Hz move sampling, redacted keys).

* **Reduction alone**: ``reduce_records`` over the already-decoded records of a
  one-hour session, single thread; raw records/s (lines of the session files)
  and input events/s (each sampled pointer position counted), next to the
  baseline of the same loop doing nothing but reading each record's kind.
Chunks hold about five minutes each (the agent rotates every 300 s).

* **Export**: ``deskcorder dataset build`` (JSONL and Parquet, no images) of
  the 1-hour session and of a 10-hour one, each in a fresh process: wall time,
  actions/s, records/s, and the process's peak RSS (flat: 10x the input should
  stay within 1.2x the memory).

    .venv/bin/python bench/bench_dataset.py             # 1 h and 10 h sessions, 5 repeats
    .venv/bin/python bench/bench_dataset.py --quick     # 1 h and 2 h, 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from deskcorder.capture.pipeline import Pipeline  # noqa: E402
from deskcorder.events import FORMAT_NAME, FORMAT_VERSION  # noqa: E402
from deskcorder.policy.load import Layer, build_policy  # noqa: E402
from deskcorder.storage.reader import read_session  # noqa: E402
from deskcorder.storage.spool import Spool  # noqa: E402
from workload import generate  # noqa: E402

HOUR_NS = 3600 * 10**9
T0 = 10**9


def hour_of_events(seed: int) -> list[tuple[Any, ...]]:
    events = generate(80_000, seed=seed, t0_ns=0)
    return [e for e in events if e[1] < HOUR_NS]


def make_session(root: Path, hours: int, session: str) -> Path:
    """A spool with one session of ``hours`` hours of generated input; its folder."""
    # chunks of about 5 minutes, as the agent's 300 s rotation makes (generation is faster
    # than real time, so the size limit stands in for the age limit)
    spool_cfg = {"quota_mb": 100_000, "chunk_max_mb": 0.005}
    policy = build_policy([Layer("bench", {"spool": spool_cfg})]).policy
    spool = Spool(root, policy.spool)
    spool.ensure()

    def header(seq: int) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "session": session,
            "seq": seq, "device": "d-bench", "user": "u-bench", "agent": "deskcorder/bench",
            "os": "Linux", "screen": [[0, 0, 1920, 1080]], "policy_digest": "0" * 64,
            "keystrokes": "redacted", "mouse_move_hz": 60.0,
            "clock": {"t": 0, "unix_ns": 1_795_770_000 * 10**9, "utc": "2026-11-27T09:00:00Z"},
        }  # fmt: skip

    pipeline = Pipeline(
        policy, spool, header, session_id=session, t0_ns=T0, clock_ns=lambda: T0,
        event_time_flush=True,
    )  # fmt: skip
    pipeline.start()
    for hour in range(hours):
        for raw in hour_of_events(seed=1000 + hour):
            pipeline.queue.put_control((raw[0], T0 + hour * HOUR_NS + raw[1], *raw[2:]))
        while len(pipeline.queue) > 100_000:
            time.sleep(0.01)
    assert pipeline.stop(600)
    return root / "sessions" / session


def reduction(session_dir: Path, repeat: int) -> dict[str, Any]:
    from deskcorder.dataset import reduce_records
    from deskcorder.events import event_count

    session = read_session(session_dir)
    header = session.headers()[0]
    records = list(session.records())
    events = sum(event_count(r) for r in records)
    best_reduce = best_base = float("inf")
    actions = 0
    for _ in range(repeat):
        start = time.process_time()
        kinds = 0
        for record in records:  # the baseline: touch every record once
            kinds += record["k"] == "mv"
        best_base = min(best_base, time.process_time() - start)
        start = time.process_time()
        actions = sum(1 for _ in reduce_records(records, header=header))
        best_reduce = min(best_reduce, time.process_time() - start)
    return {
        "records": len(records),
        "events": events,
        "actions": actions,
        "reduce_s": best_reduce,
        "records_per_s": len(records) / best_reduce,
        "events_per_s": events / best_reduce,
        "baseline_records_per_s": len(records) / best_base,
    }


EXPORT = """
import sys, time
from pathlib import Path
from deskcorder.dataset import BuildOptions, build
if sys.argv[3] == "parquet":
    import pyarrow.parquet  # imported before the clock starts (about 0.3 s)
start = time.perf_counter()
info = build(sys.argv[1], BuildOptions(out=Path(sys.argv[2]), fmt=sys.argv[3], images="none"))
wall = time.perf_counter() - start
# VmHWM, not ru_maxrss: on Linux ru_maxrss keeps the forking parent's peak across exec
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(info["counts"]["actions"], wall, hwm)
"""


def export(spool: Path, fmt: str, records: int, tmp: Path) -> dict[str, Any]:
    out = tmp / f"out-{fmt}-{time.monotonic_ns()}"
    done = subprocess.run(
        [sys.executable, "-c", EXPORT, str(spool), str(out), fmt],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    actions, wall, maxrss_kb = done.stdout.split()
    return {
        "format": fmt,
        "actions": int(actions),
        "wall_s": float(wall),
        "actions_per_s": int(actions) / float(wall),
        "records_per_s": records / float(wall),
        "peak_rss_mb": int(maxrss_kb) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=int, default=10, help="the long session's length")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    hours, repeat = (2, 1) if args.quick else (args.hours, args.repeat)
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        short = make_session(tmp / "h1", 1, "20261127T090000Z-00000001")
        long = make_session(tmp / f"h{hours}", hours, "20261127T090000Z-00000010")
        out["reduction"] = reduction(short, repeat)
        out["reduction_long"] = reduction(long, 1)
        rows = []
        for name, spool, recs in (
            ("1 h", tmp / "h1", out["reduction"]["records"]),
            (f"{hours} h", tmp / f"h{hours}", out["reduction_long"]["records"]),
        ):
            for fmt in ("jsonl", "parquet"):
                runs = [export(spool, fmt, recs, tmp) for _ in range(max(1, repeat // 2))]
                best = min(runs, key=lambda r: r["wall_s"])
                best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
                rows.append({"input": name, **best})
        out["export"] = rows
    out["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    r = out["reduction"]
    print(f"reduction alone (1 h session: {r['records']:,} records, {r['events']:,} input "
          f"events -> {r['actions']:,} actions), one thread: {r['records_per_s']:,.0f} "
          f"records/s = {r['events_per_s']:,.0f} events/s; baseline loop "
          f"{r['baseline_records_per_s']:,.0f} records/s")  # fmt: skip
    rl = out["reduction_long"]
    print(f"reduction alone ({hours} h session: {rl['records']:,} records): "
          f"{rl['records_per_s']:,.0f} records/s")  # fmt: skip
    print("\n| input | format | actions | wall s | actions/s | records/s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['input']} | {row['format']} | {row['actions']:,} | {row['wall_s']:.2f} | "
              f"{row['actions_per_s']:,.0f} | {row['records_per_s']:,.0f} | "
              f"{row['peak_rss_mb']:.1f} |")  # fmt: skip
    for fmt in ("jsonl", "parquet"):
        a, b = (row["peak_rss_mb"] for row in rows if row["format"] == fmt)
        print(f"{fmt}: peak RSS {hours}x input / 1x input = {b / a:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
