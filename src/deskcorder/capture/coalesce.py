"""Mouse move sampling and batching.

Moves are sampled to the policy rate, but the exact position right before and
right after every button or scroll event is always kept, and so is the last
position of a burst. Kept moves are packed into ``mv`` batch records: the
first point absolute, then delta arrays (``dt`` microseconds, ``dx``, ``dy``).
"""

from __future__ import annotations

from typing import Any

from deskcorder.events import K_MOVE

MAX_BATCH = 512


class MoveCoalescer:
    def __init__(self, hz: float) -> None:
        self.interval_us = int(1_000_000 / hz) if hz > 0 else 0
        self._last_kept_t = -(1 << 62)
        self._pending: tuple[int, int, int] | None = None  # sampled away, may still be needed
        self._force_next = False
        self._batch_t = 0
        self._last = (0, 0, 0)
        self._dt: list[int] = []
        self._dx: list[int] = []
        self._dy: list[int] = []
        self._open = False
        self.kept = 0
        self.sampled_away = 0

    def move(self, t: int, x: int, y: int, out: list[dict[str, Any]]) -> None:
        if self._force_next or t - self._last_kept_t >= self.interval_us:
            self._force_next = False
            self._pending = None
            self._keep(t, x, y, out)
        else:
            if self._pending is not None:
                self.sampled_away += 1
            self._pending = (t, x, y)

    def before_discrete(self, out: list[dict[str, Any]]) -> None:
        """Call before writing any non-move record: keeps the exact last position."""
        if self._pending is not None:
            t, x, y = self._pending
            self._pending = None
            self._keep(t, x, y, out)
        self.close_batch(out)

    def after_pointer_event(self) -> None:
        """The first move after a button or scroll event is always kept."""
        self._force_next = True

    def tick(self, now_t: int, out: list[dict[str, Any]]) -> None:
        """Periodic: a pending move older than one interval ends a burst: keep it."""
        if self._pending is not None and now_t - self._pending[0] >= self.interval_us:
            t, x, y = self._pending
            self._pending = None
            self._keep(t, x, y, out)

    def drop_pending(self) -> None:
        self._pending = None

    def _keep(self, t: int, x: int, y: int, out: list[dict[str, Any]]) -> None:
        self.kept += 1
        self._last_kept_t = t
        if not self._open:
            self._open = True
            self._batch_t = t
            self._last = (t, x, y)
            return
        lt, lx, ly = self._last
        self._dt.append(t - lt)
        self._dx.append(x - lx)
        self._dy.append(y - ly)
        self._last = (t, x, y)
        if len(self._dt) >= MAX_BATCH:
            self.close_batch(out)

    def close_batch(self, out: list[dict[str, Any]]) -> None:
        if not self._open:
            return
        first_t = self._batch_t
        # first point = last point minus all deltas
        x0 = self._last[1] - sum(self._dx)
        y0 = self._last[2] - sum(self._dy)
        rec: dict[str, Any] = {"k": K_MOVE, "t": first_t, "x": x0, "y": y0}
        if self._dt:
            rec["dt"] = self._dt
            rec["dx"] = self._dx
            rec["dy"] = self._dy
        out.append(rec)
        self._open = False
        self._dt, self._dx, self._dy = [], [], []
