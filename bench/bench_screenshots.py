"""Screenshot cost on this machine (issue 6). Prints figures; not a timed test.

Usage::

    .venv/bin/python bench/bench_screenshots.py [--frames 30] [--quick]

Starts its own Xvfb (1920x1080, via tests/xserver.py) and measures, for an
empty desktop, a screen full of dense random text (busy) and random noise
(worst case):

* grab + mask + downscale (to 1280 px) + encode time per frame, p50 / p95,
  and bytes per frame, for JPEG and WebP at several ``method`` values;
* bytes stored for an unchanged screen (second shot of the same pixels);
* pipeline event throughput with and without screenshots being taken.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.screenshots.helpers import pattern_window
from tests.xserver import wait_for, xserver

from deskcorder.capture.pipeline import Pipeline
from deskcorder.capture.screenshots import (
    MssGrabber,
    ScreenshotWorker,
    downscale,
    encode,
    to_image,
)
from deskcorder.events import RAW_BUTTON, RAW_KEY, RAW_MOVE, WindowInfo
from deskcorder.policy.model import Policy, Screenshots
from deskcorder.storage.blobs import BlobStore
from deskcorder.storage.spool import Spool

SCREEN = (0, 0, 1920, 1080)
WIN = WindowInfo(id=1, title="bench", x=0, y=0, width=1920, height=1080)


class AllowAll:
    def blocked_reason(self) -> str | None:
        return None

    def window_rule(self, win: WindowInfo | None) -> str | None:
        return None


class FixedProbe:
    def start(self, emit: Any) -> None: ...

    def stop(self, timeout: float) -> None: ...

    def active_window(self) -> WindowInfo | None:
        return WIN

    def visible_windows(self) -> list[WindowInfo]:
        return [WIN]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(grabber: MssGrabber, settings: list[tuple[str, int, int]], frames: int) -> list[str]:
    """Full path per frame for every setting, interleaved so all see the same machine load."""
    times: dict[tuple[str, int, int], list[float]] = {s: [] for s in settings}
    sizes: dict[tuple[str, int, int], list[int]] = {s: [] for s in settings}
    cpu: dict[tuple[str, int, int], list[float]] = {s: [] for s in settings}
    for _ in range(frames):
        for setting in settings:
            fmt, quality, method = setting
            c0 = time.thread_time()
            t0 = time.perf_counter()
            frame = grabber.grab(SCREEN)
            img = downscale(to_image(frame, [], SCREEN), 1280)
            data = encode(img, fmt, quality, method)
            times[setting].append((time.perf_counter() - t0) * 1000)
            cpu[setting].append((time.thread_time() - c0) * 1000)
            sizes[setting].append(len(data))
    lines = []
    for setting in settings:
        fmt, quality, method = setting
        t, n = times[setting], sizes[setting]
        label = f"{fmt} q{quality}" + (f" m{method}" if fmt == "webp" else "")
        lines.append(
            f"  {label:<16} p50 {statistics.median(t):6.1f} ms  p95 {pct(t, 95):6.1f} ms"
            f"  CPU p50 {statistics.median(cpu[setting]):6.1f} ms"
            f"  {statistics.median(n) / 1024:7.1f} KiB/frame"
        )
    return lines


def stages(grabber: MssGrabber, frames: int) -> str:
    g: list[float] = []
    c: list[float] = []
    d: list[float] = []
    for _ in range(frames):
        t0 = time.perf_counter()
        frame = grabber.grab(SCREEN)
        t1 = time.perf_counter()
        img = to_image(frame, [], SCREEN)
        img.load()
        t2 = time.perf_counter()
        downscale(img, 1280)
        t3 = time.perf_counter()
        g.append((t1 - t0) * 1000)
        c.append((t2 - t1) * 1000)
        d.append((t3 - t2) * 1000)
    return (
        f"  stages p50: grab {statistics.median(g):.1f} ms, to RGB {statistics.median(c):.1f} ms,"
        f" downscale {statistics.median(d):.1f} ms"
    )


def unchanged_bytes(tmp: Path) -> str:
    store = BlobStore(tmp / "blobs")
    emitted: list[tuple[Any, ...]] = []
    worker = ScreenshotWorker(
        Screenshots(min_spacing_s=0, after_typing_s=0),
        gates=AllowAll(),
        probe=FixedProbe(),
        store=store,
        emit=emitted.append,
    )
    worker.start()
    try:
        worker.observe({"k": "bd", "t": 0, "x": 5, "y": 5, "b": "left"})
        wait_for(lambda: worker.shots >= 1, 20, "first shot")
        first = worker.bytes_written
        t0 = time.perf_counter()
        worker.observe({"k": "bd", "t": 1, "x": 5, "y": 5, "b": "left"})
        wait_for(lambda: worker.shots >= 2, 20, "second shot")
        dt = (time.perf_counter() - t0) * 1000
    finally:
        worker.stop(5)
    return (
        f"  unchanged screen: first frame {first} B, second frame "
        f"{worker.bytes_written - first} B (reused={worker.reused}, {dt:.1f} ms trigger->record)"
    )


class Switch:
    """Gates for the bench worker: screenshots allowed only while ``on``."""

    def __init__(self, gates: Any) -> None:
        self.gates = gates
        self.on = False

    def blocked_reason(self) -> str | None:
        return self.gates.blocked_reason() if self.on else "bench-off"

    def window_rule(self, win: WindowInfo | None) -> str | None:
        return self.gates.window_rule(win)  # type: ignore[no-any-return]


def event_batch(n: int) -> list[tuple[Any, ...]]:
    base = time.monotonic_ns()
    out: list[tuple[Any, ...]] = []
    for i in range(n):
        t = base + i * 1000
        r = i % 50
        if r == 0:
            out.append((RAW_BUTTON, t, 10, 10, "left", True))
        elif r == 1:
            out.append((RAW_BUTTON, t, 10, 10, "left", False))
        elif r < 10:
            out.append((RAW_KEY, t, r % 2 == 0, "a", None, 97))
        else:
            out.append((RAW_MOVE, t, i % 1920, i % 1080))
    return out


def pipeline_throughput(tmp: Path, spacing: float, phases: int, phase_s: float) -> None:
    """One pipeline kept busy; screenshots enabled and disabled every ``phase_s`` seconds.

    "Enabled" is everything screenshots add: the observer on every record and
    the worker taking a shot on clicks (the workload clicks constantly, so the
    worker shoots once per ``min_spacing_s``) and typing pauses. "Disabled"
    detaches the observer and blocks the worker. Alternating short phases of
    the same run cancel most of the noise from other processes on a shared
    machine. Throughput per phase = events drained / time.
    """
    policy = Policy.model_validate({"capture": {"screenshots": True, "mouse_move_hz": 0,
                                                "queue_size": 4_194_304}})  # fmt: skip
    spool = Spool(tmp, policy.spool)
    spool.ensure()
    pipe = Pipeline(policy, spool, lambda seq: {"format": "deskcorder-chunk", "seq": seq})
    switch = Switch(pipe.gates)
    worker = ScreenshotWorker(
        Screenshots(min_spacing_s=spacing, per_hour=100_000),
        gates=switch,
        probe=FixedProbe(),
        store=BlobStore(spool.blobs_dir),
        emit=pipe.queue.put_nowait,
    )
    batch = event_batch(100_000)
    pushed = 0

    def top_up() -> None:
        nonlocal pushed
        q = pipe.queue
        while len(q) < 300_000:
            for raw in batch:
                q.put_nowait(raw)
            pushed += len(batch)

    top_up()
    worker.start()
    pipe.start()
    rates: dict[bool, list[float]] = {False: [], True: []}
    shots: dict[bool, int] = {False: 0, True: 0}
    for phase in range(phases):
        on = phase % 2 == 1
        switch.on = on
        if on:
            pipe.observers.append(worker.observe)
        elif worker.observe in pipe.observers:
            pipe.observers.remove(worker.observe)
        before_shots = worker.shots
        t0 = time.perf_counter()
        done0 = pushed - len(pipe.queue)
        end = t0 + phase_s
        while time.perf_counter() < end:
            top_up()
            time.sleep(0.02)
        done = pushed - len(pipe.queue) - done0
        rates[on].append(done / (time.perf_counter() - t0))
        shots[on] += worker.shots - before_shots
    switch.on = False
    worker.stop(5)
    pipe.stop(30)
    off, on_ = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"  pipeline, min_spacing_s {spacing} ({shots[True]} shots in "
        f"{phases // 2} x {phase_s:.0f} s): {on_:,.0f} events/s vs {off:,.0f} without: "
        f"{100 * (on_ / off - 1):+.1f}% (median of alternating phases)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--phases", type=int, default=16, help="on/off phases of 2 s each")
    ap.add_argument("--quick", action="store_true", help="fewer formats")
    ap.add_argument("--scenes", default="empty,text,dense,noise", help="comma-separated")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the throughput part")
    args = ap.parse_args()
    settings: list[tuple[str, int, int]] = [("jpeg", 70, 0)]
    methods = (0, 4) if args.quick else (0, 1, 2, 4, 6)
    settings += [("webp", 70, m) for m in methods]
    if not args.quick:
        settings += [("webp", 50, 0), ("webp", 80, 0)]
    with xserver(wm=False, size="1920x1080x24") as x, tempfile.TemporaryDirectory() as td:
        os.environ["DISPLAY"] = x.display
        tmp = Path(td)
        grabber = MssGrabber()
        print(f"deskcorder screenshot bench, {args.frames} frames each, 1920x1080 -> 1280 px,"
              f" {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        for scene in args.scenes.split(","):
            proc = None
            if scene != "empty":
                proc = pattern_window(x, f"bench-{scene}", "1920x1080+0+0", scene)
                # wait until the content is on screen (not the black root any more)
                wait_for(lambda: any(grabber.grab((0, 0, 64, 64)).pixels[:4096]), 20, scene)
            print(f"scene: {scene}")
            print(stages(grabber, args.frames))
            print("\n".join(measure(grabber, settings, args.frames)))
            if scene == "text":
                print(unchanged_bytes(tmp))
                for spacing in () if args.no_pipeline else (1.0, 0.5, 0.1):
                    pipeline_throughput(tmp / f"pipe-{spacing}", spacing, args.phases, 2.0)
            if proc is not None and proc.stdin is not None:
                proc.stdin.close()
                proc.wait(10)
        grabber.close()
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
