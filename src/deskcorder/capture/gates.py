"""Policy gates: may this event be recorded now? (pipeline thread)

Blocking causes, in order of precedence: ``consent`` (policy requires an
acknowledged notice), ``user`` (paused by the user), ``lock`` (screen locked),
``inactive`` (session not in the foreground), ``schedule`` (outside work
hours), ``quota`` (spool full and policy says stop), ``storage`` (the spool
cannot be written, or its disk is below ``spool.min_free_mb``; last, so that
while it is the reason every other gate would let capture run). While any applies no
input, window or screenshot record is written: the pipeline writes a
``pause`` marker naming only the cause category, and ``resume`` when it ends.

Window exclusion is decided per focused window by :meth:`Gates.window_rule`.
Every check fails closed: an exception means "blocked" / "excluded".
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from deskcorder.capture.exclusions import builtin_rules
from deskcorder.capture.schedule import schedule_check
from deskcorder.events import WindowInfo
from deskcorder.platform import clock as session_clock
from deskcorder.policy.model import Policy

log = logging.getLogger(__name__)

WindowRule = Callable[[WindowInfo], str | None]


class Gates:
    def __init__(
        self,
        policy: Policy,
        *,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = session_clock.now_s,
    ) -> None:
        self.policy = policy
        self.clock = clock  # wall time: the schedule (work hours are wall-clock hours)
        # the session clock (counts sleep, never steps): pauses end on time even when
        # the wall clock is stepped (NTP, a manual change) or the machine sleeps
        self.timer = timer
        self.paused_until: float | None = None  # timer() value; float('inf') = until resumed
        self.locked = False
        self.inactive = False
        self.consent_ok = not policy.notice.require_ack
        self.quota_blocked = False
        self.storage: str | None = None  # the storage fault's cause (set by the pipeline)
        self.schedule_check: Callable[[float], bool] | None = schedule_check(policy.schedule)
        self.extra_window_rules: list[WindowRule] = builtin_rules(policy.exclusions)
        ex = policy.exclusions
        self._deny_apps = {a.lower() for a in ex.apps}
        self._allow_apps = {a.lower() for a in ex.allow_apps}
        self._deny_titles = [re.compile(p, re.IGNORECASE) for p in ex.titles]
        self._allow_titles = [re.compile(p, re.IGNORECASE) for p in ex.allow_titles]

    # -- pause ----------------------------------------------------------------
    def pause_until(self, minutes: float | None) -> float:
        """Validate a pause request against policy; return its end (wall time, inf = none).

        ``minutes`` None or 0 means "until resumed", capped by policy's
        ``max_minutes`` when that is set. Raises PermissionError / ValueError
        with a one-line reason when policy forbids the request.
        """
        cfg = self.policy.pause
        if not cfg.allowed:
            raise PermissionError("pausing is not allowed by your organisation's policy")
        limit = cfg.max_minutes
        if minutes is not None and minutes < 0:
            raise ValueError("--minutes must be positive")
        if not minutes:
            minutes = float(limit) if limit else None
        elif limit and minutes > limit:
            raise ValueError(f"the longest pause policy allows is {limit} minutes")
        return float("inf") if minutes is None else self.timer() + minutes * 60

    def resume(self) -> None:
        self.paused_until = None

    def pause_left(self) -> float | None:
        if self.paused_until is None:
            return None
        return max(0.0, self.paused_until - self.timer())

    # -- the verdict ------------------------------------------------------------
    def blocked_reason(self) -> str | None:
        """Why nothing may be recorded right now, or None. Fails closed."""
        try:
            if not self.consent_ok:
                return "consent"
            if self.paused_until is not None:
                if self.timer() < self.paused_until:
                    return "user"
                self.paused_until = None
            if self.policy.pause.on_lock:
                if self.locked:
                    return "lock"
                if self.inactive:
                    return "inactive"
            if self.schedule_check is not None and not self.schedule_check(self.clock()):
                return "schedule"
            if self.quota_blocked:
                return "quota"
            if self.storage is not None:
                return "storage"
            return None
        except Exception:
            log.exception("a capture gate failed; capture stays off")
            return "error"

    def window_rule(self, win: WindowInfo | None) -> str | None:
        """The exclusion rule that matches ``win``, or None if it may be recorded."""
        try:
            return self._window_rule(win)
        except Exception:
            log.exception("window exclusion check failed; window treated as excluded")
            return "check_failed"

    def _window_rule(self, win: WindowInfo | None) -> str | None:
        if win is None:
            if self._allow_apps or self._allow_titles:
                return "not_allowlisted"
            return None
        names = {n.lower() for n in (win.app, win.process, win.exe) if n}
        if win.exe:
            names.add(win.exe.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].lower())
        if names & self._deny_apps:
            return "app"
        title = win.title or ""
        if any(p.search(title) for p in self._deny_titles):
            return "title"
        for rule in self.extra_window_rules:
            matched = rule(win)
            if matched:
                return matched
        if self._allow_apps and not names & self._allow_apps:
            return "not_allowlisted"
        if self._allow_titles and not any(p.search(title) for p in self._allow_titles):
            return "not_allowlisted"
        return None

    def status(self) -> dict[str, Any]:
        left = self.pause_left()
        return {
            "blocked": self.blocked_reason(),
            "pause_left_s": None if left is None or left == float("inf") else round(left),
            "paused_indefinitely": left == float("inf"),
            "locked": self.locked,
            "consent_ok": self.consent_ok,
        }
