"""Three fleet collector instances behind the test's own round-robin proxy, as one collector."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx

from tests.collector.helpers import ADMIN, CollectorProc, wait_until
from tests.fleet.rrproxy import RoundRobinProxy
from tests.services import FleetTarget


class FleetCluster(CollectorProc):
    """``CollectorProc``'s interface over N instances on one bucket and database.

    ``url``/``port`` are the proxy's; ``kill()`` and ``start()`` act on every
    instance (the whole service down and up); ``instances`` reach each one.
    """

    def __init__(self, root: Path, fleet: FleetTarget, n: int = 3) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root, None, fleet=fleet)
        self.instances = []
        for k in range(n):
            (root / f"instance-{k}").mkdir(parents=True, exist_ok=True)
            self.instances.append(CollectorProc(root / f"instance-{k}", None, fleet=fleet))
        self.proxy = RoundRobinProxy([inst.port for inst in self.instances])
        self.url = self.proxy.url
        self.port = self.proxy.port

    def start(self) -> FleetCluster:
        """Start every instance that is not running (at once), then wait for them all."""
        for inst in self.instances:
            if inst.proc is None or inst.proc.poll() is not None:
                inst.spawn()
        wait_until(self.healthy, 30, "every instance to answer /healthz")
        return self

    def healthy(self) -> bool:
        return all(inst.healthy() for inst in self.instances)

    def kill(self) -> None:
        for inst in self.instances:
            inst.kill()

    def stop(self) -> None:
        for inst in self.instances:
            inst.stop()
        self.proxy.close()

    def metrics(self) -> str:
        """Every instance's /metrics: counters (``*_total``) added up, gauges from the first."""
        totals: Counter[str] = Counter()
        order: list[str] = []
        for n, inst in enumerate(self.instances):
            text = httpx.get(
                inst.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10
            ).text
            for line in text.splitlines():
                if line.startswith("#") or " " not in line:
                    continue
                name, value = line.rsplit(" ", 1)
                if name not in totals and name not in order:
                    order.append(name)
                if "_total" in name.split("{")[0] or n == 0:
                    totals[name] += int(float(value))
        return "\n".join(f"{name} {totals[name]}" for name in order) + "\n"
