"""Capture overhead of the X11 backend (issue 3). Prints figures; not a timed test.

Under Xvfb + openbox, XTEST (python-xlib ``xtest.fake_input``) generates mouse
moves at a fixed rate. Two processes receive them at the same time:

* the **agent**: ``deskcorder run --backend x11`` (default policy: 60 Hz move
  sampling, redacted keys), hook durations recorded via ``DESKCORDER_HOOK_TIMING``;
* the **floor**: bare pynput mouse and keyboard listeners whose callbacks only
  append to a list.

For each, CPU% (utime+stime from /proc over the generation window) and peak RSS
(VmHWM). Then the agent's idle CPU with no input at all.

    .venv/bin/python bench/bench_capture.py                      # 30 s per rate, 60 s idle
    .venv/bin/python bench/bench_capture.py --seconds 5 --idle-seconds 10   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.xserver import XServer, wait_for, xserver  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

FLOOR = """
import sys
from pynput import keyboard, mouse
seen, keys = [], []
m = mouse.Listener(on_move=lambda x, y: seen.append((x, y)))
k = keyboard.Listener(on_press=keys.append, on_release=keys.append)
m.start(); k.start(); m.wait(); k.wait()
print("ready", flush=True)
sys.stdin.readline()
print(len(seen), flush=True)
"""


def generate(display: str, rate: int, seconds: float, keys_per_s: float = 0) -> int:
    """XTEST motion events at ``rate``/s for ``seconds``, plus a press and release
    of ``a`` ``keys_per_s`` times a second; returns how many moves were sent."""
    from Xlib import XK, X
    from Xlib import display as xdisplay
    from Xlib.ext import xtest

    d = xdisplay.Display(display)
    key_a = d.keysym_to_keycode(XK.string_to_keysym("a"))
    key_every = max(1, round(rate / keys_per_s)) if keys_per_s else 0
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        xtest.fake_input(d, X.MotionNotify, x=200 + (i % 800), y=200 + (i * 7 % 600))
        if key_every and i % key_every == 0:
            xtest.fake_input(d, X.KeyPress, key_a)
            xtest.fake_input(d, X.KeyRelease, key_a)
        if i % 10 == 0:
            d.flush()
    d.sync()
    d.close()
    return n


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_agent(
    x: XServer, tmp: Path, timing: Path
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**x.env, "DESKCORDER_RUNTIME_DIR": str(runtime), "DESKCORDER_HOOK_TIMING": str(timing)}
    args = ["run", "--backend", "x11", "--spool", str(tmp / "spool")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "deskcorder", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"agent exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        status = [sys.executable, "-m", "deskcorder", "status"]
        return subprocess.run(status, env=env, capture_output=True, check=False).returncode == 0

    wait_for(ready, 30, "agent ready")
    return proc, env


def stop_agent(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(10)


def percentiles(path: Path) -> tuple[int, float, float, float]:
    data = array("q")
    with open(path, "rb") as fh:
        data.frombytes(fh.read())
    if not data:
        return 0, float("nan"), float("nan"), float("nan")
    values = sorted(data)
    p = lambda q: values[min(len(values) - 1, int(q * len(values)))] / 1000  # noqa: E731
    return len(values), p(0.5), p(0.99), values[-1] / 1000


def run_rate(x: XServer, rate: int, seconds: float, keys_per_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        timing = tmp / "hook_ns.bin"
        agent, _ = start_agent(x, tmp, timing)
        floor = subprocess.Popen(
            [sys.executable, "-c", FLOOR], env=x.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert floor.stdout is not None and floor.stdin is not None
            floor.stdout.readline()
            a0, f0, t0 = cpu_ticks(agent.pid), cpu_ticks(floor.pid), time.monotonic()
            sent = generate(x.display, rate, seconds, keys_per_s)
            a1, f1, t1 = cpu_ticks(agent.pid), cpu_ticks(floor.pid), time.monotonic()
            agent_rss, floor_rss = peak_rss_mb(agent.pid), peak_rss_mb(floor.pid)
            floor.stdin.write(b"\n")
            floor.stdin.flush()
            floor_seen = int(floor.stdout.readline())
        finally:
            floor.kill()
            floor.wait(5)
            stop_agent(agent)
        wall = t1 - t0
        n, p50, p99, worst = percentiles(timing)
        kn, k50, k99, kmax = percentiles(Path(f"{timing}.keys"))
        return {
            "rate": rate,
            "sent": sent,
            "wall_s": wall,
            "agent_cpu": 100 * (a1 - a0) / TICK / wall,
            "floor_cpu": 100 * (f1 - f0) / TICK / wall,
            "agent_rss": agent_rss,
            "floor_rss": floor_rss,
            "floor_seen": floor_seen,
            "hook_n": n,
            "hook_p50_us": p50,
            "hook_p99_us": p99,
            "hook_max_us": worst,
            "key_n": kn,
            "key_p50_us": k50,
            "key_p99_us": k99,
            "key_max_us": kmax,
        }


def run_idle(x: XServer, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        agent, _ = start_agent(x, tmp, tmp / "hook_ns.bin")
        try:
            time.sleep(2)  # let start-up work settle before measuring
            c0, t0 = cpu_ticks(agent.pid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = cpu_ticks(agent.pid), time.monotonic()
            rss = peak_rss_mb(agent.pid)
        finally:
            stop_agent(agent)
        return {"idle_s": t1 - t0, "idle_cpu": 100 * (c1 - c0) / TICK / (t1 - t0), "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="generation time per rate")
    parser.add_argument("--rates", default="200,1000", help="moves per second, comma-separated")
    parser.add_argument("--keys-per-second", type=float, default=10.0, help="key taps per second")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    out: dict[str, object] = {"load_before": os.getloadavg()[0], "rates": []}
    with xserver() as x:
        x.tk_window("bench-window", x=100, y=100, width=1200, height=900)
        x.activate("bench-window")
        rows = [run_rate(x, int(r), args.seconds, args.keys_per_second)
                for r in args.rates.split(",")]  # fmt: skip
        out["rates"] = rows
        if args.idle_seconds > 0:
            out["idle"] = run_idle(x, args.idle_seconds)
    out["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_report(out)


def print_report(out: dict[str, Any]) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load {out['load_before']:.2f} before, {out['load_after']:.2f} after")  # fmt: skip
    print("| moves/s | agent CPU % | floor CPU % | ratio | agent peak RSS MB | floor RSS MB "
          "| hook p50 us | hook p99 us | hook max us | hooks / sent |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["rates"]:
        ratio = r["agent_cpu"] / r["floor_cpu"] if r["floor_cpu"] else float("nan")
        print(
            f"| {r['rate']} | {r['agent_cpu']:.1f} | {r['floor_cpu']:.1f} | {ratio:.2f} "
            f"| {r['agent_rss']:.1f} | {r['floor_rss']:.1f} | {r['hook_p50_us']:.1f} "
            f"| {r['hook_p99_us']:.1f} | {r['hook_max_us']:.0f} "
            f"| {r['hook_n']}/{r['sent']} (floor saw {r['floor_seen']}) |"
        )
    print("\n| moves/s | key hooks | key hook p50 us | key hook p99 us | key hook max us |")
    print("|---|---|---|---|---|")
    for r in out["rates"]:
        print(
            f"| {r['rate']} | {r['key_n']} | {r['key_p50_us']:.1f} | {r['key_p99_us']:.1f} "
            f"| {r['key_max_us']:.0f} |"
        )
    idle = out.get("idle")
    if idle:
        print(f"\nidle: {idle['idle_cpu']:.3f} % CPU over {idle['idle_s']:.0f} s, "
              f"peak RSS {idle['rss']:.1f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
