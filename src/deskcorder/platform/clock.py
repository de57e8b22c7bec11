"""The session clock: one time source for every record, and it keeps counting in sleep.

Record times (``t``) are :func:`now_ns` readings relative to the session start.
This clock keeps running while the machine is suspended, so the one clock
anchor in each chunk header places every event at its true wall time even when
a chunk spans a suspend:

* Linux: ``CLOCK_BOOTTIME`` (``CLOCK_MONOTONIC`` stops during suspend);
* macOS: ``CLOCK_MONOTONIC``, which there counts sleep (Python's
  ``time.monotonic`` uses a clock that does not);
* Windows: the interrupt time (``QueryInterruptTimePrecise``, which includes
  sleep and hibernation); ``time.monotonic_ns`` where it is missing.

:func:`awake_ns` is the matching clock that stops during suspend; the gap
between the two tells the pipeline that, and for how long, the machine slept
(:class:`deskcorder.capture.clockwatch.ClockWatch`). Both are monotonic and
cheap enough for an input hook. Nothing here calls the OS at import time.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

Clock = Callable[[], int]

if sys.platform == "win32":  # pragma: no cover - exercised on Windows (tests replace the calls)
    import ctypes

    _WIN: tuple[Clock, Clock] | None = None

    def _resolve_windows() -> tuple[Clock, Clock]:
        """(interrupt time, unbiased interrupt time) in ns; monotonic_ns where missing."""
        try:
            kernel = ctypes.WinDLL("kernelbase")
            with_sleep = kernel.QueryInterruptTimePrecise
            without_sleep = kernel.QueryUnbiasedInterruptTimePrecise
        except (OSError, AttributeError):  # before Windows 10
            return time.monotonic_ns, time.monotonic_ns
        with_sleep.restype = None
        without_sleep.restype = None
        with_sleep.argtypes = without_sleep.argtypes = [ctypes.POINTER(ctypes.c_ulonglong)]

        def reader(fn: Callable[[ctypes._Pointer[ctypes.c_ulonglong]], None]) -> Clock:
            def read() -> int:
                value = ctypes.c_ulonglong()  # one per call: hooks run on several threads
                fn(ctypes.pointer(value))
                return value.value * 100  # 100 ns units

            return read

        return reader(with_sleep), reader(without_sleep)

    def _windows() -> tuple[Clock, Clock]:
        global _WIN
        if _WIN is None:
            _WIN = _resolve_windows()
        return _WIN

    def now_ns() -> int:
        return _windows()[0]()

    def awake_ns() -> int:
        return _windows()[1]()

    NAME = "interrupt time"
elif sys.platform == "darwin":
    now_ns: Clock = functools.partial(time.clock_gettime_ns, time.CLOCK_MONOTONIC)
    awake_ns: Clock = functools.partial(time.clock_gettime_ns, time.CLOCK_UPTIME_RAW)
    NAME = "CLOCK_MONOTONIC (counts sleep)"
elif sys.platform.startswith("linux"):
    now_ns: Clock = functools.partial(time.clock_gettime_ns, time.CLOCK_BOOTTIME)
    awake_ns: Clock = time.monotonic_ns
    NAME = "CLOCK_BOOTTIME"
else:  # pragma: no cover - other systems: sleep shows up as a wall-clock step instead
    now_ns: Clock = time.monotonic_ns
    awake_ns: Clock = time.monotonic_ns
    NAME = "monotonic"


def now_s() -> float:
    """The session clock in seconds (pause expiry: a pause ends on time across a suspend)."""
    return now_ns() / 1e9


def utc_text(unix_ns: int) -> str:
    """ISO 8601 UTC with microseconds, e.g. ``2026-11-27T03:15:00.123456Z``."""
    return (
        datetime.fromtimestamp(unix_ns / 1e9, timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def anchor(t_us: int, unix_ns: int) -> dict[str, object]:
    """A clock anchor (chunk header, ``clock`` record): session time ``t_us`` was ``unix_ns``."""
    return {"t": t_us, "unix_ns": unix_ns, "utc": utc_text(unix_ns)}
