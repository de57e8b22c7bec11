"""Cost of pre-action frames (issue 15): agent CPU and RSS with the ring on vs off.

Under Xvfb (1920x1080) + openbox, the real agent (``deskcorder run --backend
x11``) records with screenshots on, once with ``[screenshots] pre_action =
false`` and once with ``true`` (the default ring: a frame when input starts,
then 1 a second while it goes on, one per 2 s idle, 2 frames), in alternating
phases so both see the same machine. In each
phase XTEST sends mouse moves at ``--rate`` per second (and a key tap a second,
so actions happen and pre-action frames are stored); the agent's CPU is counted
over the generation window only (not its start-up), RSS is read at the end.

    .venv/bin/python bench/bench_preaction.py                    # 3 x 2 phases of 30 s
    .venv/bin/python bench/bench_preaction.py --seconds 5 --phases 1   # quick look
"""

from __future__ import annotations

import argparse
import contextlib
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tests.xserver import XServer, wait_for, xserver  # noqa: E402

from bench_capture import TICK, cpu_ticks, generate, peak_rss_mb  # noqa: E402

POLICY = """\
[capture]
screenshots = true

[screenshots]
pre_action = {pre}
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def status(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "deskcorder", "status", "--json"],
        env=env, capture_output=True, check=False, text=True,
    )  # fmt: skip
    return json.loads(out.stdout) if out.returncode == 0 else {}


def ring_grabs(env: dict[str, str]) -> int:
    return int(status(env).get("screenshots", {}).get("ring_grabs", 0))


def phase(x: XServer, pre: bool, rate: int, seconds: float, keys: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "run").mkdir(mode=0o700)
        (tmp / "policy.toml").write_text(POLICY.format(pre=str(pre).lower()))
        env = {**x.env, "DESKCORDER_RUNTIME_DIR": str(tmp / "run")}
        args = ["run", "--backend", "x11", "--spool", str(tmp / "spool"),
                "--policy", str(tmp / "policy.toml")]  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "deskcorder", *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_for(lambda: bool(status(env)), 30, "agent ready")
            time.sleep(2)  # start-up work (imports, first focus shot) settles first
            rss0 = rss_mb(proc.pid)
            c0, t0 = cpu_ticks(proc.pid), time.monotonic()
            generate(x.display, rate, seconds, keys)
            c1, t1 = cpu_ticks(proc.pid), time.monotonic()
            if pre:  # on a loaded machine the worker may lag the input a little
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: ring_grabs(env) > 0, 10, "a ring frame")
            shots = status(env).get("screenshots", {})
            rss1, hwm = rss_mb(proc.pid), peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
        return {
            "pre_action": pre,
            "cpu": 100 * (c1 - c0) / TICK / (t1 - t0),
            "rss_start": rss0,
            "rss_end": rss1,
            "rss_peak": hwm,
            "pre_shots": shots.get("pre_action_shots", 0),
            "ring_grabs": shots.get("ring_grabs", 0),
            "ring_cpu_s": shots.get("ring_cpu_s", 0),
            "prof": shots.get("prof"),
            "shots": shots.get("shots", 0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="mouse moves per second")
    parser.add_argument("--keys-per-second", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="generation time per phase")
    parser.add_argument("--phases", type=int, default=3, help="phases of each kind")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()[0]
    with xserver() as x:
        x.tk_window("bench-window", x=100, y=100, width=1200, height=900)
        x.activate("bench-window")
        for _ in range(args.phases):
            for pre in (False, True):
                rows.append(phase(x, pre, args.rate, args.seconds, args.keys_per_second))
    off = [r for r in rows if not r["pre_action"]]
    on = [r for r in rows if r["pre_action"]]
    summary = {
        "rate": args.rate,
        "seconds": args.seconds,
        "load_before": load,
        "cpu_off": statistics.median(r["cpu"] for r in off),
        "cpu_on": statistics.median(r["cpu"] for r in on),
        "rss_peak_off": statistics.median(r["rss_peak"] for r in off),
        "rss_peak_on": statistics.median(r["rss_peak"] for r in on),
        "rows": rows,
    }
    summary["cpu_ratio"] = summary["cpu_on"] / summary["cpu_off"]
    summary["rss_growth_mb"] = summary["rss_peak_on"] - summary["rss_peak_off"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print("| phase | pre_action | agent CPU % | RSS start MB | RSS end MB | peak RSS MB "
          "| ring grabs | pre-action frames |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for n, r in enumerate(rows):
        print(f"| {n + 1} | {'on' if r['pre_action'] else 'off'} | {r['cpu']:.2f} | "
              f"{r['rss_start']:.1f} | {r['rss_end']:.1f} | {r['rss_peak']:.1f} | "
              f"{r['ring_grabs']} | {r['pre_shots']} |")  # fmt: skip
    print(f"\nmedian CPU: off {summary['cpu_off']:.2f} %, on {summary['cpu_on']:.2f} % "
          f"(ratio {summary['cpu_ratio']:.2f}, budget <= 1.5); median peak RSS: off "
          f"{summary['rss_peak_off']:.1f} MB, on {summary['rss_peak_on']:.1f} MB (growth "
          f"{summary['rss_growth_mb']:.1f} MB, budget <= 40)")  # fmt: skip


if __name__ == "__main__":
    main()
