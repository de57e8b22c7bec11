"""Self-limits: keep the agent under the policy's ``[limits]`` by shedding load in steps.

The service manager's ceilings (systemd ``CPUQuota``/``MemoryMax``, set well
above the policy limits by ``deskcorder service install``) throttle or kill
the agent; this watchdog acts first. Every ``interval_s`` it measures the
agent's own CPU use (averaged over ``window_s``) and resident memory and moves
``host.shed_level`` one step at a time:

====== ===================================================== =====================
level  what is shed                                          honoured by
====== ===================================================== =====================
0      nothing
1      screenshots                                           the screenshot worker
2      screenshots; mouse moves sampled at most 10 Hz        the pipeline
3      screenshots; mouse moves sampled at most 2 Hz         the pipeline
====== ===================================================== =====================

CPU counts as over the limit when both the average over a full window and the
latest interval are over it (a burst that has ended is not sustained load). It
steps up after ``up_after`` consecutive samples over a limit and back down
after ``down_after_s`` seconds comfortably below (CPU under half the limit,
memory under 80 %). Each change is written into the session as a ``shed``
record (``{"k": "shed", "level": 2, "what": "screenshots,moves<=10Hz; cpu 23% > 10%"}``),
so a reader knows why screenshots stop or moves get coarser.

Consumers read ``host.shed_level`` (an ``int``; reading it is atomic) and use
:func:`screenshots_allowed` and :func:`move_hz`. The watchdog applies the move
cap to the pipeline itself (:func:`apply_move_cap`).

Measurement: psutil (user + system CPU time of the process, resident set
size), the same figures on every OS.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from deskcorder.events import K_SHED, RAW_MARK
from deskcorder.host import Host
from deskcorder.platform import clock

log = logging.getLogger(__name__)

MAX_LEVEL = 3
_MOVE_CAP_HZ = {2: 10.0, 3: 2.0}
_WHAT = {
    0: "nothing",
    1: "screenshots",
    2: "screenshots,moves<=10Hz",
    3: "screenshots,moves<=2Hz",
}


def screenshots_allowed(level: int) -> bool:
    """False once the watchdog sheds screenshots (level 1 and above)."""
    return level < 1


def move_hz(policy_hz: float, level: int) -> float:
    """The mouse move sample rate to use at ``level`` (policy 0 means every event)."""
    cap = _MOVE_CAP_HZ.get(min(level, MAX_LEVEL))
    if cap is None:
        return policy_hz
    return cap if policy_hz == 0 else min(policy_hz, cap)


def describe(level: int) -> str:
    return _WHAT[min(max(level, 0), MAX_LEVEL)]


# ---------------------------------------------------------------------------
# measurement (small OS functions, replaceable in tests)
# ---------------------------------------------------------------------------

Measure = Callable[[], tuple[float, float | None]]  # (cpu seconds, rss MiB or None)


def process_usage() -> tuple[float, float | None]:
    """This process's CPU seconds (all threads) and resident memory in MiB (psutil)."""
    me = _process()
    cpu = me.cpu_times()
    try:
        rss: float | None = me.memory_info().rss / (1 << 20)
    except psutil.Error:
        rss = None
    return cpu.user + cpu.system, rss


@functools.cache
def _process() -> psutil.Process:
    """This process, looked up once (psutil keeps its handle and caches static facts)."""
    return psutil.Process()


# ---------------------------------------------------------------------------
# decision (pure)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    level: int
    was: int
    reason: str


class Shedder:
    """Decides the shed level from samples; no clocks or OS calls of its own."""

    def __init__(
        self,
        cpu_percent: float,
        memory_mb: float,
        *,
        window_s: float = 10.0,
        up_after: int = 2,
        down_after_s: float = 60.0,
    ) -> None:
        self.cpu_limit = cpu_percent
        self.mem_limit = memory_mb
        self.window_s = window_s
        self.up_after = up_after
        self.down_after_s = down_after_s
        self.level = 0
        self.cpu_pct: float | None = None
        self.rss_mb: float | None = None
        self._cpu: deque[tuple[float, float]] = deque()
        self._over = 0
        self._calm_since: float | None = None

    def update(self, now: float, cpu_s: float, rss_mb: float | None) -> Change | None:
        last = self._cpu[-1] if self._cpu else None
        self._cpu.append((now, cpu_s))
        while len(self._cpu) > 2 and now - self._cpu[1][0] >= self.window_s:
            self._cpu.popleft()
        t0, c0 = self._cpu[0]
        self.cpu_pct = 100.0 * (cpu_s - c0) / (now - t0) if now > t0 else None
        # judge CPU only over a full window: a start-up burst is not "sustained"
        full = now - t0 >= self.window_s
        busy_now = (
            last is not None
            and now > last[0]
            and (100.0 * (cpu_s - last[1]) / (now - last[0]) > self.cpu_limit)
        )
        self.rss_mb = rss_mb
        reasons = []
        if full and busy_now and self.cpu_pct is not None and self.cpu_pct > self.cpu_limit:
            reasons.append(f"cpu {self.cpu_pct:.0f}% > {self.cpu_limit:g}%")
        if rss_mb is not None and rss_mb > self.mem_limit:
            reasons.append(f"memory {rss_mb:.0f} MiB > {self.mem_limit:g} MiB")
        if reasons:
            self._calm_since = None
            self._over += 1
            if self._over >= self.up_after and self.level < MAX_LEVEL:
                self._over = 0
                return self._set(self.level + 1, ", ".join(reasons))
            return None
        self._over = 0
        calm = (self.cpu_pct is None or self.cpu_pct < self.cpu_limit * 0.5) and (
            rss_mb is None or rss_mb < self.mem_limit * 0.8
        )
        if not calm or self.level == 0:
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since >= self.down_after_s:
            self._calm_since = now
            cpu = "cpu ?" if self.cpu_pct is None else f"cpu {self.cpu_pct:.0f}%"
            mem = "" if rss_mb is None else f", memory {rss_mb:.0f} MiB"
            return self._set(self.level - 1, f"recovered: {cpu}{mem}")
        return None

    def _set(self, level: int, reason: str) -> Change:
        change = Change(level, self.level, reason)
        self.level = level
        return change


def apply_move_cap(host: Host, level: int) -> None:
    """Set the pipeline's move sampling interval for ``level``.

    ``MoveCoalescer.interval_us`` is a plain int that the pipeline thread reads
    for every move, so one assignment from the watchdog thread is enough.
    """
    hz = move_hz(host.policy.capture.mouse_move_hz, level)
    host.set_move_interval_us(int(1_000_000 / hz) if hz > 0 else 0)


# ---------------------------------------------------------------------------
# the component
# ---------------------------------------------------------------------------


class Watchdog:
    """Agent component: measures, decides, sets ``host.shed_level``, records ``shed``."""

    name = "watchdog"

    def __init__(
        self,
        *,
        interval_s: float = 2.0,
        measure: Measure = process_usage,
        clock: Callable[[], float] = time.monotonic,
        shedder: Shedder | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.measure = measure
        self.clock = clock
        self.shedder = shedder
        self.changes = 0
        self._host: Host | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, host: Host) -> None:
        self._host = host
        if self.shedder is None:
            limits = host.policy.limits
            self.shedder = Shedder(limits.cpu_percent, limits.memory_mb)
        self.tick()  # the first sample starts the CPU window
        self._thread = threading.Thread(target=self._loop, name="deskcorder-watchdog", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("watchdog sample failed")

    def tick(self) -> Change | None:
        """Take one sample and apply a level change, if any (called by the thread)."""
        assert self._host is not None and self.shedder is not None
        cpu_s, rss_mb = self.measure()
        change = self.shedder.update(self.clock(), cpu_s, rss_mb)
        if change is None:
            return None
        host = self._host
        host.shed_level = change.level
        apply_move_cap(host, change.level)
        self.changes += 1
        if change.level > change.was and "memory" in change.reason:
            gc.collect()
        what = f"{describe(change.level)}; {change.reason}"
        log.warning("shed level %d -> %d: %s", change.was, change.level, what)
        host.emit((RAW_MARK, clock.now_ns(), K_SHED, {"level": change.level, "what": what}))
        return change

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, object]:
        s = self.shedder
        return {
            "shed_level": 0 if s is None else s.level,
            "shed": describe(0 if s is None else s.level),
            "cpu_percent": None if s is None or s.cpu_pct is None else round(s.cpu_pct, 1),
            "rss_mb": None if s is None or s.rss_mb is None else round(s.rss_mb, 1),
            "changes": self.changes,
        }
