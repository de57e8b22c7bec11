"""The collector's Prometheus metrics (text format 0.0.4), per process (per instance).

Counters and histograms are kept in memory by this process; the row counts
come from the index when scraped. ``INDEX_SECONDS`` and ``OBJECT_SECONDS``
are observed by the backends (the fleet one: every PostgreSQL transaction or
query, every S3 request), so an operator sees which of the two a slow PUT
waited on.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .validate import LINE_SCANNER

if TYPE_CHECKING:
    from .store import Store

# seconds: from a cached look-up to an S3 request that waits on a retry
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """A Prometheus histogram with one label (thread-safe; ~1 µs per observation)."""

    def __init__(self, name: str, help_text: str, label: str) -> None:
        self.name = name
        self.help = help_text
        self.label = label
        self._lock = threading.Lock()
        self._series: dict[str, list[float]] = {}  # value -> bucket counts..., count, sum

    def observe(self, value: str, seconds: float) -> None:
        i = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            series = self._series.get(value)
            if series is None:
                series = self._series[value] = [0.0] * (len(BUCKETS) + 2)
            series[i] += 1  # one bucket here; render() accumulates them
            series[-2] += 1
            series[-1] += seconds

    @contextlib.contextmanager
    def time(self, value: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(value, time.perf_counter() - start)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            series = {k: list(v) for k, v in sorted(self._series.items())}
        for value, counts in series.items():
            label = f'{self.label}="{value}"'
            total = 0.0
            for bound, n in zip(BUCKETS, counts, strict=False):
                total += n
                lines.append(f'{self.name}_bucket{{{label},le="{bound}"}} {total:.0f}')
            lines.append(f'{self.name}_bucket{{{label},le="+Inf"}} {counts[-2]:.0f}')
            lines.append(f"{self.name}_count{{{label}}} {counts[-2]:.0f}")
            lines.append(f"{self.name}_sum{{{label}}} {counts[-1]:.6f}")
        return lines


REQUEST_SECONDS = Histogram(
    "deskcorder_collector_request_seconds", "Time to answer a request, by route.", "route"
)
INDEX_SECONDS = Histogram(
    "deskcorder_collector_index_seconds", "Time of the index's operations (database).", "op"
)
OBJECT_SECONDS = Histogram(
    "deskcorder_collector_object_seconds", "Time of the object store's requests (S3).", "op"
)

PUT_OUTCOMES = ("created", "duplicate", "conflict", "refused", "failed")


def put_outcome(status: int) -> str:
    """A chunk PUT's answer as an outcome: 201, 200, 409, other 4xx, 5xx."""
    if status == 201:
        return "created"
    if status == 200:
        return "duplicate"
    if status == 409:
        return "conflict"
    return "refused" if status < 500 else "failed"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.puts: Counter[str] = Counter()
        self.bytes_received = 0
        self.chunks_stored = 0
        self.chunks_duplicate = 0
        self.blobs_stored = 0

    def request(self, route: str, status: int, seconds: float | None = None) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            if route == "chunk_put":
                self.puts[put_outcome(status)] += 1
        if seconds is not None:
            REQUEST_SECONDS.observe(route, seconds)

    def render(self, store: Store) -> str:
        lines = [
            "# HELP deskcorder_collector_info How this collector runs (line_scanner: c or python).",
            "# TYPE deskcorder_collector_info gauge",
            f'deskcorder_collector_info{{line_scanner="{LINE_SCANNER}"}} 1',
            "# HELP deskcorder_collector_backend_info The storage backend (local or fleet).",
            "# TYPE deskcorder_collector_backend_info gauge",
            f'deskcorder_collector_backend_info{{backend="{store.backend}"}} 1',
            "# HELP deskcorder_collector_requests_total HTTP requests by route and status.",
            "# TYPE deskcorder_collector_requests_total counter",
        ]
        with self._lock:
            for (route, status), n in sorted(self.requests.items()):
                lines.append(
                    f'deskcorder_collector_requests_total{{route="{route}",status="{status}"}} {n}'
                )
            puts = dict(self.puts)
            scalars = {
                "bytes_received_total": self.bytes_received,
                "chunks_stored_total": self.chunks_stored,
                "chunks_duplicate_total": self.chunks_duplicate,
                "blobs_stored_total": self.blobs_stored,
            }
        lines.append(
            "# HELP deskcorder_collector_chunk_puts_total Chunk PUTs by outcome "
            "(created 201, duplicate 200, conflict 409, refused 4xx, failed 5xx)."
        )
        lines.append("# TYPE deskcorder_collector_chunk_puts_total counter")
        for outcome in PUT_OUTCOMES:
            n = puts.get(outcome, 0)
            lines.append(f'deskcorder_collector_chunk_puts_total{{outcome="{outcome}"}} {n}')
        scalars["commit_batches_total"] = store.ingest.batches  # chunks stored / this = group size
        for name, value in scalars.items():
            lines.append(f"# TYPE deskcorder_collector_{name} counter")
            lines.append(f"deskcorder_collector_{name} {value}")
        for table, n in store.counts().items():
            lines.append(f"# TYPE deskcorder_collector_{table} gauge")
            lines.append(f"deskcorder_collector_{table} {n}")
        for name, level in store.gauges().items():
            lines.append(f"# TYPE deskcorder_collector_{name} gauge")
            lines.append(f"deskcorder_collector_{name} {level:g}")
        for histogram in (REQUEST_SECONDS, INDEX_SECONDS, OBJECT_SECONDS):
            lines += histogram.render()
        return "\n".join(lines) + "\n"
