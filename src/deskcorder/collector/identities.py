"""Who a device is, decided on the collector: pseudonyms, challenges, rate limits.

Pseudonyms are derived here, under the pseudonym key only the collector holds
(``--pseudonym-key-file``), from what an agent claims once at enrollment (its
login name and machine id), which is then forgotten::

    user    u-HMAC(K, "user:<machine id>:<login>")    one person on one machine
    machine m-HMAC(K, "device:<machine id>")          one machine
    person  p-HMAC(K, "person:<login, case-folded>")  one login on every machine

(HMAC-SHA256 truncated to 128 bits, 32 hex digits.) The ``user`` and machine
derivations are the ones agents used with ``identity.org_key`` before, so an
organisation that moves its old org key to the collector keeps its pseudonyms.
The person pseudonym stays in the collector's index: it links a login's
pseudonyms across machines for data-subject requests, and is never attached
to data.

Challenges are stateless (any collector instance can check one): ``<issued
ms>.<nonce>.<mac>`` under a random key kept in the index; the device row
remembers the newest challenge it used, so none is accepted twice.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass

CHALLENGE_TTL_S = 120.0


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Pseudonyms:
    user: str
    machine: str
    person: str


def derive(key: bytes, login: str, machine_id: str) -> Pseudonyms:
    """The pseudonyms of ``login`` on the machine ``machine_id``."""
    return Pseudonyms(
        user=f"u-{_mac(key, f'user:{machine_id}:{login}')}",
        machine=f"m-{_mac(key, f'device:{machine_id}')}",
        person=person_of(key, login),
    )


def person_of(key: bytes, login: str) -> str:
    """The person pseudonym of a login (case-folded: ``Alice`` and ``alice`` are one)."""
    return f"p-{_mac(key, f'person:{login.strip().casefold()}')}"


class Challenges:
    """Issues and checks the nonces an agent signs to prove it holds its key."""

    def __init__(self, key: bytes, ttl_s: float = CHALLENGE_TTL_S) -> None:
        self._key = key
        self.ttl_s = ttl_s

    def issue(self, now: float | None = None) -> str:
        issued = int((time.time() if now is None else now) * 1000)
        nonce = secrets.token_hex(16)
        return f"{issued}.{nonce}.{_mac(self._key, f'challenge:{issued}.{nonce}')}"

    def check(self, challenge: str, now: float | None = None) -> int | None:
        """The challenge's issue time (ms) if it is ours and fresh, else None."""
        parts = challenge.split(".") if isinstance(challenge, str) else []
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 16:
            return None
        issued, nonce, mac = parts
        if not hmac.compare_digest(mac, _mac(self._key, f"challenge:{issued}.{nonce}")):
            return None
        age = (time.time() if now is None else now) - int(issued) / 1000
        if age < -5 or age > self.ttl_s:  # a little slack for clocks of several instances
            return None
        return int(issued)


class RateLimiter:
    """Token buckets by key (a client address, a device): ``rate`` per second, ``burst``.

    In memory, per collector process: behind a load balancer each instance
    limits on its own. ``rate <= 0`` turns it off. Memory is bounded: buckets
    that have refilled completely are dropped when there are too many.
    """

    MAX_KEYS = 100_000

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0 if allowed, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.MAX_KEYS:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) > self.MAX_KEYS:  # still too many: forget the oldest half
            for key, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[
                : len(self._buckets) // 2
            ]:
                del self._buckets[key]


def retry_after(wait: float) -> str:
    """A ``Retry-After`` value (whole seconds, at least 1) for a wait."""
    return str(max(1, math.ceil(wait)))
