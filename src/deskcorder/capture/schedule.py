"""Work hours: is capture allowed at this instant? (pure; policy ``[schedule]``)

Spans are ``"HH:MM-HH:MM"`` in the policy's IANA time zone, per weekday
(``mon``..``sun``); the start is included, the end excluded; ``24:00`` means
midnight at the end of that day. A day without spans records nothing. Local
time is computed with :mod:`zoneinfo`, so daylight-saving changes follow the
zone's rules. A disabled schedule allows every instant.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from deskcorder.policy.model import WEEKDAYS, Schedule


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class WorkHours:
    def __init__(self, cfg: Schedule) -> None:
        self.enabled = cfg.enabled
        self.zone = ZoneInfo(cfg.timezone)
        self.spans: dict[int, list[tuple[int, int]]] = {i: [] for i in range(7)}
        for day, spans in cfg.hours.items():
            index = WEEKDAYS.index(day)
            for span in spans:
                start, end = span.split("-")
                self.spans[index].append((_minutes(start), _minutes(end)))

    def allows(self, unix_s: float) -> bool:
        """True if capture is allowed at wall time ``unix_s`` (seconds since the epoch)."""
        if not self.enabled:
            return True
        local = datetime.fromtimestamp(unix_s, timezone.utc).astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.spans[local.weekday()])

    def next_change(self, unix_s: float, horizon_days: int = 8) -> float | None:
        """Wall time of the next switch between allowed and not (minute resolution)."""
        if not self.enabled:
            return None
        now = self.allows(unix_s)
        local = datetime.fromtimestamp(unix_s, timezone.utc).astimezone(self.zone)
        base = local.replace(second=0, microsecond=0)
        # candidate instants: every span boundary in the coming days
        candidates: list[float] = []
        for offset in range(horizon_days):
            day = (base + timedelta(days=offset)).replace(hour=0, minute=0)
            for start, end in self.spans[day.weekday()]:
                for minute in (start, end):
                    instant = day + timedelta(minutes=minute)
                    ts = instant.timestamp()
                    if ts > unix_s:
                        candidates.append(ts)
        for ts in sorted(candidates):
            if self.allows(ts) != now:
                return ts
        return None


def schedule_check(cfg: Schedule) -> Callable[[float], bool] | None:
    """The ``Gates.schedule_check`` for ``cfg``, or None when the schedule is off."""
    if not cfg.enabled:
        return None
    return WorkHours(cfg).allows
