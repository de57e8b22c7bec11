"""Cost of accessibility (issue 17): agent CPU and hook latency with element lookups on vs off.

A real desktop (Xvfb, openbox, a D-Bus session bus, at-spi-bus-launcher) and a
real GTK 3 form (tests/a11y/desktop.py). XTEST moves the pointer over the form
at ``--rate`` moves/s and clicks its button once a second, for ``--seconds`` per
configuration, all in one run:

* ``off``: no accessibility (the agent sees no session bus; `full` degrades);
* ``secure``: accessibility for secure input only (`capture.elements = false`):
  every click resets the answer and the focused element is asked again;
* ``on``: plus element lookups (`capture.elements = true`): every click is hit-tested;
* ``hung``: as ``on`` with the form stopped (SIGSTOP): every lookup times out.

CPU is the agent's plus its children's (the AT-SPI helper) user + system time
over the workload window only (start-up excluded); "desktop" CPU is what the
lookups cost the rest of the desktop (the GTK form, the session and accessibility
buses, the registry). Hook latency is the X11 listener callback's duration
(``DESKCORDER_HOOK_TIMING``), as in bench_capture.py; element latency is
``t - act`` of the ``el`` records. The configurations run in turn, ``--rounds``
times (off, secure, on, hung, off, secure, ...), so that a busy moment of the
shared machine does not land on one configuration only; the table gives the
median over the rounds of each figure, and ``--json`` every run.

    .venv/bin/python bench/bench_a11y.py                        # 3 rounds of 15 s each
    .venv/bin/python bench/bench_a11y.py --rounds 1 --seconds 5 # quick look (not figures)
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

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_capture import TICK, cpu_ticks, percentiles  # noqa: E402
from tests.a11y.desktop import Desktop, a11y_desktop  # noqa: E402
from tests.xserver import wait_for  # noqa: E402

POLICY = """\
[capture]
keystrokes = "full"
elements = {elements}
"""
CONFIGS = ("off", "secure", "on", "hung")


def generate(
    display: str, rate: int, seconds: float, rect: list[int], click_at: tuple[int, int]
) -> int:
    """XTEST moves over ``rect`` at ``rate``/s; a left click at ``click_at`` once a second."""
    from Xlib import X
    from Xlib import display as xdisplay
    from Xlib.ext import xtest

    d = xdisplay.Display(display)
    left, top, width, height = rect
    n = int(rate * seconds)
    start = time.perf_counter()
    clicks = 0
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if i % rate == rate // 2:
            xtest.fake_input(d, X.MotionNotify, x=click_at[0], y=click_at[1])
            xtest.fake_input(d, X.ButtonPress, 1)
            xtest.fake_input(d, X.ButtonRelease, 1)
            clicks += 1
        else:
            x = left + 5 + (i * 7) % (width - 10)
            y = top + 5 + (i * 13) % (height - 10)
            xtest.fake_input(d, X.MotionNotify, x=x, y=y)
        if i % 10 == 0:
            d.flush()
    d.sync()
    d.close()
    return clicks


def form_area(desk: Desktop) -> list[int]:
    """From the entry's top left to the button's bottom right: the form's widgets."""
    left, top, width, _ = desk.rects["entry"]
    _, by, bw, bh = desk.rects["button"]
    return [left, top, max(width, bw), by + bh - top]


def family_ticks(proc: psutil.Process) -> int:
    """CPU ticks of the agent and every child it has now (the AT-SPI helper)."""
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_ticks(p.pid)
    return total


def desktop_ticks(desk: Desktop) -> int:
    """CPU ticks of the desktop's processes that answer accessibility calls: the form,
    the session bus, at-spi-bus-launcher and what it started (its bus, the registry)."""
    total = 0
    for popen in desk.procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += family_ticks(psutil.Process(popen.pid))
    return total


def run_config(desk: Desktop, name: str, rate: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        policy = tmp / "policy.toml"
        policy.write_text(POLICY.format(elements="true" if name in ("on", "hung") else "false"))
        timing = tmp / "hook_ns.bin"
        runtime = tmp / "run"
        runtime.mkdir(mode=0o700)
        env = {**desk.env, "DESKCORDER_RUNTIME_DIR": str(runtime),
               "DESKCORDER_HOOK_TIMING": str(timing)}  # fmt: skip
        if name == "off":  # no session bus: accessibility unavailable
            env.pop("DBUS_SESSION_BUS_ADDRESS", None)
            env.pop("XDG_RUNTIME_DIR", None)
        spool = tmp / "spool"
        cmd = [sys.executable, "-m", "deskcorder", "run", "--backend", "x11",
               "--policy", str(policy), "--spool", str(spool)]  # fmt: skip
        agent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        status = [sys.executable, "-m", "deskcorder", "status", "--json"]
        try:

            def ready() -> dict[str, Any] | None:
                if agent.poll() is not None:
                    raise SystemExit(f"agent exited: {agent.stderr.read().decode()}")  # type: ignore[union-attr]
                out = subprocess.run(status, env=env, capture_output=True, check=False)
                return json.loads(out.stdout) if out.returncode == 0 else None

            state = wait_for(ready, 30, "agent ready")
            assert isinstance(state, dict)
            desk.x.activate("Sign up - Form")
            proc = psutil.Process(agent.pid)
            time.sleep(1.0)  # start-up (the helper, the first answers) is not counted
            if name == "hung":
                desk.hang_form(True)
            c0, d0, t0 = family_ticks(proc), desktop_ticks(desk), time.monotonic()
            clicks = generate(desk.x.display, rate, seconds, form_area(desk), desk.center("button"))
            c1, d1, t1 = family_ticks(proc), desktop_ticks(desk), time.monotonic()
            rss = [p.memory_info().rss / 2**20 for p in (proc, *proc.children(recursive=True))]
            if name == "hung":
                desk.hang_form(False)
            final = ready() or {}
        finally:
            agent.terminate()
            agent.wait(10)
            if agent.stderr is not None:
                agent.stderr.close()
        n, p50, p99, worst = percentiles(timing)
        records = _records(spool)
        bds = {r["t"] for r in records if r["k"] == "bd"}
        lat = sorted(r["t"] - r["act"] for r in records if r["k"] == "el" and r.get("act") in bds)
        return {
            "config": name,
            "keystrokes": state.get("privacy", {}).get("keystrokes"),
            "cpu_percent": 100 * (c1 - c0) / TICK / (t1 - t0),
            "desktop_cpu_percent": 100 * (d1 - d0) / TICK / (t1 - t0),
            "agent_rss_mb": rss[0],
            "helper_rss_mb": sum(rss[1:]),
            "hook_n": n,
            "hook_p50_us": p50,
            "hook_p99_us": p99,
            "hook_max_us": worst,
            "clicks": clicks,
            "bd_records": len(bds),
            "elements": len(lat),
            "el_p50_ms": lat[len(lat) // 2] / 1000 if lat else None,
            "el_max_ms": lat[-1] / 1000 if lat else None,
            "lookups": (final.get("privacy", {}).get("accessibility") or {}).get("lookups"),
        }


def _records(spool: Path) -> list[dict[str, Any]]:
    from deskcorder.storage.reader import list_sessions

    return [r for s in list_sessions(spool) for r in s.records()]


MEDIAN = ("cpu_percent", "desktop_cpu_percent", "agent_rss_mb", "helper_rss_mb", "hook_p50_us",
          "hook_p99_us", "hook_max_us")  # fmt: skip


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration over its rounds: medians of the figures, totals of the counts."""
    row: dict[str, Any] = {"config": runs[0]["config"], "keystrokes": runs[0]["keystrokes"]}
    for key in MEDIAN:
        row[key] = statistics.median(r[key] for r in runs)
    for key in ("hook_n", "clicks", "bd_records", "elements"):
        row[key] = sum(r[key] for r in runs)
    p50 = [r["el_p50_ms"] for r in runs if r["el_p50_ms"] is not None]
    row["el_p50_ms"] = statistics.median(p50) if p50 else None
    worst = [r["el_max_ms"] for r in runs if r["el_max_ms"] is not None]
    row["el_max_ms"] = max(worst) if worst else None
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="workload per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each configuration")
    parser.add_argument("--rate", type=int, default=200, help="pointer moves per second")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="which, comma-separated")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    names = [c for c in args.configs.split(",") if c]
    if not names or set(names) - set(CONFIGS) or len(set(names)) != len(names):
        raise SystemExit(f"--configs: expected some of {', '.join(CONFIGS)}, each once")
    if args.rounds < 1:
        raise SystemExit("--rounds: expected 1 or more")
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    runs: list[dict[str, Any]] = []
    with a11y_desktop() as desk:
        desk.start_form(x=100, y=100)
        for round_no in range(args.rounds):
            for name in names:
                runs.append({"round": round_no, **run_config(desk, name, args.rate, args.seconds)})
    out["load_after"] = os.getloadavg()[0]
    out["runs"] = runs
    out["rows"] = [summary([r for r in runs if r["config"] == name]) for name in names]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    load = f"load {out['load_before']:.2f} before, {out['load_after']:.2f} after"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rate} moves/s and a "
          f"click a second, {args.rounds} rounds of {args.seconds:.0f} s per configuration "
          f"(medians); {load}")  # fmt: skip
    print("| config | keys | CPU % (agent + helper) | x first | desktop CPU % | hook p50 us "
          "| hook p99 us | hook max us | clicks / bd | el found | el latency p50 / max ms "
          "| RSS MB agent + helper |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    off = out["rows"][0]["cpu_percent"] or float("nan")  # the first configuration
    for r in out["rows"]:
        lat = (f"{r['el_p50_ms']:.0f} / {r['el_max_ms']:.0f}" if r["el_p50_ms"] is not None
               else "-")  # fmt: skip
        print(
            f"| {r['config']} | {r['keystrokes']} | {r['cpu_percent']:.2f} "
            f"| {r['cpu_percent'] / off:.2f} | {r['desktop_cpu_percent']:.2f} "
            f"| {r['hook_p50_us']:.1f} | {r['hook_p99_us']:.1f} | {r['hook_max_us']:.0f} "
            f"| {r['clicks']} / {r['bd_records']} | {r['elements']} | {lat} "
            f"| {r['agent_rss_mb']:.0f} + {r['helper_rss_mb']:.0f} |"
        )
    print("hook p99 us per round: " + "; ".join(
        f"{name} " + ", ".join(f"{r['hook_p99_us']:.0f}" for r in runs if r["config"] == name)
        for name in names))  # fmt: skip


if __name__ == "__main__":
    main()
