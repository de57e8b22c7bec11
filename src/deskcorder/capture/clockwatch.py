"""Notice a suspend and a wall-clock step, so the pipeline can write a fresh clock anchor.

Record times come from the session clock (:mod:`deskcorder.platform.clock`), which keeps
counting while the machine sleeps, so a suspend never moves an event away from
its wall time; the pipeline still writes a ``clock`` record after one (the
session slept from ``t - slept_us`` to ``t``: no one was at the keyboard).

The wall clock can also *step* (NTP, a manual change): from then on, the
header's anchor would be off by the step. When the wall clock moves against the
session clock by more than a threshold, a ``clock`` record re-anchors session
time to the new wall time. Record times never go backwards because of either:
they do not come from the wall clock. Pure logic; the three clocks are passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from deskcorder.platform import clock

THRESHOLD_NS = 500_000_000  # below this, a difference is scheduling noise or NTP slewing


@dataclass(frozen=True)
class ClockChange:
    cause: Literal["suspend", "step"]
    amount_ns: int  # suspend: time asleep; step: how far wall time moved against session time
    session_ns: int  # session clock reading when it was noticed
    wall_ns: int  # wall clock reading at the same moment (the new anchor)


class ClockWatch:
    def __init__(
        self,
        session_ns: Callable[[], int] = clock.now_ns,
        awake_ns: Callable[[], int] = clock.awake_ns,
        wall_ns: Callable[[], int] = time.time_ns,
        threshold_ns: int = THRESHOLD_NS,
    ) -> None:
        self._session = session_ns
        self._awake = awake_ns
        self._wall = wall_ns
        self.threshold_ns = threshold_ns
        s = session_ns()
        self._last_session = s
        self._last_awake = awake_ns()
        self._wall_offset = wall_ns() - s  # wall - session at the anchor in force

    def check(self) -> list[ClockChange]:
        """What changed since the last call (usually nothing)."""
        s = self._session()
        a = self._awake()
        w = self._wall()
        changes: list[ClockChange] = []
        slept = (s - self._last_session) - (a - self._last_awake)
        if slept >= self.threshold_ns:
            changes.append(ClockChange("suspend", slept, s, w))
        self._last_session, self._last_awake = s, a
        offset = w - s
        step = offset - self._wall_offset
        if abs(step) >= self.threshold_ns:
            self._wall_offset = offset
            changes.append(ClockChange("step", step, s, w))
        return changes
