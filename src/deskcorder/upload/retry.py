"""Pure upload decisions: classify an outcome, compute the next delay, throttle.

No I/O here; everything is a function of its arguments (and an injected RNG
or clock) so that tests can pin every branch.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 86400.0


class Outcome(enum.Enum):
    OK = "ok"  # stored: delete locally once the echoed digest matches
    RETRY = "retry"  # transient: back off and try again, keep the data
    REJECT = "reject"  # permanent: move to rejected/ with the reason, never retry
    REAUTH = "reauth"  # the device token is unknown or expired: sign a new challenge
    REVOKED = "revoked"  # the collector revoked this device: stop uploading, keep the data


RETRY_STATUSES = frozenset({408, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})


REVOKED_CODE = "device_revoked"


def classify_status(status: int, code: str | None = None) -> Outcome:
    """The outcome of an HTTP status (and the body's ``code``) for an upload."""
    if 200 <= status < 300:
        return Outcome.OK
    if status in RETRY_STATUSES or 500 <= status < 600:
        return Outcome.RETRY
    if status == 401:
        return Outcome.REAUTH
    if status == 403 and code == REVOKED_CODE:
        return Outcome.REVOKED
    if 400 <= status < 500:
        return Outcome.REJECT
    # 1xx and 3xx are not valid final answers from the collector: treat as transient
    return Outcome.RETRY


def classify_exception(exc: BaseException) -> Outcome:
    """Network-level failures are transient; anything else is a bug, not a retry."""
    import httpx

    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return Outcome.RETRY
    raise exc


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter: uniform(0, min(cap, base * 2**n))."""

    cap: float
    base: float = 1.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def __post_init__(self) -> None:
        self.base = min(self.base, self.cap)

    def next_delay(self, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempts, 62)))
        self.attempts += 1
        delay = self.rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class Throttle:
    """Token bucket for the bandwidth cap: how long to wait before sending ``n`` bytes."""

    rate_bytes_s: float  # 0 = unlimited
    burst: float = 64 * 1024
    _tokens: float = 0.0
    _last: float | None = None

    def delay(self, n: int, now: float) -> float:
        if self.rate_bytes_s <= 0:
            return 0.0
        if self._last is None:
            self._last = now
            self._tokens = min(self.burst, float(n))
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_bytes_s)
        self._last = now
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate_bytes_s
