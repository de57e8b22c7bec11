"""Pure upload decisions: classification, Retry-After, backoff with full jitter, throttle."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from deskcorder.upload.retry import (
    MAX_RETRY_AFTER_S,
    Backoff,
    Outcome,
    Throttle,
    classify_exception,
    classify_status,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (201, Outcome.OK),
        (204, Outcome.OK),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (599, Outcome.RETRY),
        (401, Outcome.REAUTH),
        (400, Outcome.REJECT),
        (403, Outcome.REJECT),
        (404, Outcome.REJECT),
        (409, Outcome.REJECT),
        (413, Outcome.REJECT),
        (422, Outcome.REJECT),
        (301, Outcome.RETRY),
        (100, Outcome.RETRY),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_a_revoked_device_is_told_apart_from_other_refusals() -> None:
    assert classify_status(403, "device_revoked") is Outcome.REVOKED
    assert classify_status(403, "something_else") is Outcome.REJECT
    assert classify_status(401, "device_revoked") is Outcome.REAUTH


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed"),
        httpx.ReadError("reset"),
        httpx.WriteError("broken pipe"),
        ConnectionResetError(),
        TimeoutError(),
    ],
)
def test_network_errors_are_transient(exc: BaseException) -> None:
    assert classify_exception(exc) is Outcome.RETRY


def test_other_exceptions_are_not_retried() -> None:
    with pytest.raises(ValueError, match="bug"):
        classify_exception(ValueError("bug"))


NOW = datetime(2026, 11, 27, 3, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("7", 7.0),
        ("99999999", MAX_RETRY_AFTER_S),
        ("-3", None),
        ("soon", None),
        ("1.5", None),
        (format_datetime(NOW + timedelta(seconds=42), usegmt=True), 42.0),
        (format_datetime(NOW - timedelta(seconds=42), usegmt=True), 0.0),
        ("Fri, 27 Nov 2026 03:00:10 GMT", 10.0),
        ("Friday, 27-Nov-26 03:00:10 GMT", 10.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    backoff = Backoff(cap=8.0, base=1.0, rng=random.Random(1))
    for attempt, ceiling in enumerate([1, 2, 4, 8, 8, 8]):
        delays = []
        for _ in range(200):
            backoff.attempts = attempt
            delays.append(backoff.next_delay())
        assert 0 <= min(delays) < ceiling * 0.1
        assert ceiling * 0.9 < max(delays) <= ceiling


def test_backoff_grows_then_resets() -> None:
    backoff = Backoff(cap=100.0, base=1.0, rng=random.Random(7))
    for _ in range(5):
        backoff.next_delay()
    assert backoff.attempts == 5
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() <= 1.0


def test_backoff_honours_retry_after_and_small_caps() -> None:
    backoff = Backoff(cap=0.2, base=1.0, rng=random.Random(3))
    assert backoff.base == 0.2
    assert all(backoff.next_delay() <= 0.2 for _ in range(50))
    assert backoff.next_delay(retry_after=5.0) == 5.0
    assert Backoff(cap=1000, attempts=10_000).next_delay() <= 1000


def test_throttle_limits_the_rate() -> None:
    throttle = Throttle(rate_bytes_s=1000.0, burst=1000.0)
    now = 0.0
    sent = 0
    for _ in range(50):
        now += throttle.delay(100, now)
        sent += 100
    # 5000 bytes at 1000 B/s with a 1000-byte burst need >= 4 s
    assert 3.9 <= now <= 5.1
    assert sent == 5000


def test_unlimited_throttle_never_waits() -> None:
    throttle = Throttle(rate_bytes_s=0)
    assert all(throttle.delay(1 << 20, float(i)) == 0 for i in range(10))
