"""Benchmark: the collector's fleet backend (S3 + PostgreSQL) beside the local one.

Usage (repository root, after ``bash .ci/setup``):

    .venv/bin/python bench/bench_fleet.py [--puts 2000] [--rounds 3] [--agents 1000]
        [--chunks-per-agent 3] [--instances 1,2,3] [--clients 2] [--deadline 240]

Starts SeaweedFS and a durable PostgreSQL 15 (fsync on) on loopback
(``tests/services.py``), every server on this machine's 2 cores. Two parts:

1. **Target** (issue 14: one fleet instance >= 600 PUTs/s of 64 KB agent
   chunks, collector CPU per PUT within 1.5x of the local backend's): the
   lean asyncio client of ``bench_collector.py`` (64 keep-alive connections,
   distinct chunks of real agent records sealed at level 9) against one local
   and one fleet collector, taking turns round by round. Reports PUTs/s and
   CPU per PUT of the collector, PostgreSQL and SeaweedFS.
2. **Fleet simulation**: ``--agents`` simulated agents, each the real
   ``Uploader`` (enroll, then PUT its spool's sealed chunks in order, verify
   the echoed digest, delete) on a spool of ``--chunks-per-agent`` chunks of
   real records, run in ``--clients`` processes; the agents are spread over
   N collector instances (agent i talks to instance i mod N, as DNS round
   robin would), for the local backend (1 instance) and the fleet backend
   with each N of ``--instances``. Reports PUTs/s, the PUT latency the agents
   saw (p50/p99), and CPU per PUT of each instance, PostgreSQL, SeaweedFS
   and the agents. Each configuration stops at ``--deadline`` seconds.

Bounded in count and time; everything on loopback; every server is stopped
and every temp folder removed at the end. docs/performance.md keeps the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from tests.services import Postgres, SeaweedFS  # noqa: E402

import bench_collector as bc  # noqa: E402
from deskcorder.devicekey import KEY_FILE  # noqa: E402

ADMIN = bc.ADMIN
ENROLL = bc.ENROLL


# -- CPU accounting (Linux /proc) ----------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def proc_cpu(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its children that exited (waited for) and those running."""
    fields = _stat(pid)
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            if int(_stat(int(child.name))[1]) == pid:
                total += proc_cpu(int(child.name))
        except (OSError, ValueError, IndexError):
            continue
    return total


class Meter:
    """CPU seconds of named processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, tuple[int, bool]]) -> None:
        self.pids = pids  # name -> (pid, whole tree)
        self._t0: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {n: (tree_cpu(p) if tree else proc_cpu(p)) for n, (p, tree) in self.pids.items()}

    def start(self) -> None:
        self._t0 = self._read()

    def stop(self) -> dict[str, float]:
        now = self._read()
        self.used = {n: now[n] - self._t0[n] for n in now}
        return self.used


# -- servers -------------------------------------------------------------------------------


class Servers:
    """SeaweedFS and PostgreSQL for the whole run; a fresh bucket prefix and database, and
    collector processes, for each configuration."""

    def __init__(self, root: Path, gomaxprocs: int | None = None) -> None:
        self.root = root
        (root / "seaweedfs").mkdir(parents=True)
        self.sw: SeaweedFS | None = SeaweedFS(root / "seaweedfs", gomaxprocs=gomaxprocs).start()
        self.pg = Postgres(durable=True).start()
        self._n = 0

    def stop(self) -> None:
        if self.sw is not None:
            self.sw.stop()
        self.pg.stop()

    def fleet_args(self) -> tuple[list[str], dict[str, str]]:
        """A new migrated fleet (prefix + database): ``serve`` options and environment."""
        assert self.sw is not None
        self._n += 1
        name = f"bench{self._n}"
        db = self.pg.create_database(name)
        env = {**os.environ, **self.sw.env, **self.pg.env}
        subprocess.run(
            [sys.executable, "-m", "deskcorder", "collector", "migrate", "--db", db],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        store = f"s3://{self.sw.bucket}/{name}"
        return ["--store", store, "--s3-endpoint", self.sw.endpoint, "--db", db], env

    def collectors(self, backend: str, n: int) -> list[tuple[subprocess.Popen[bytes], int]]:
        """``n`` collector instances on one new backend (``local``: n must be 1)."""
        (self.root / "admin").write_text(ADMIN)
        (self.root / "enroll").write_text(ENROLL)
        (self.root / "pseudonym-key").write_text(bc.PSEUDONYM_KEY)
        if backend == "local":
            self._n += 1
            where, env = ["--data", str(self.root / f"local{self._n}")], dict(os.environ)
        else:
            where, env = self.fleet_args()
        out = []
        for _ in range(n):
            port = bc._free_port()
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "deskcorder", "collector", "serve", *where,
                    "--port", str(port), "--admin-token-file", str(self.root / "admin"),
                    "--enroll-secret-file", str(self.root / "enroll"),
                    "--pseudonym-key-file", str(self.root / "pseudonym-key"),
                    # the per-device write limit stays on, high enough for the lean client's
                    # one device sending a fleet's load
                    "--device-writes-per-s", "1000000",
                ],
                stdout=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            out.append((proc, port))
        for proc, port in out:
            bc._wait_listening(proc, port)
        return out

    def meter(self, collectors: list[tuple[subprocess.Popen[bytes], int]]) -> Meter:
        pids = {f"collector {k}": (p.pid, False) for k, (p, _) in enumerate(collectors)}
        pids["postgresql"] = (self.pg.proc.pid, True)  # type: ignore[union-attr]
        if self.sw is not None and self.sw.proc is not None:
            pids["seaweedfs"] = (self.sw.proc.pid, False)
        return Meter(pids)


def stop_all(collectors: list[tuple[subprocess.Popen[bytes], int]]) -> None:
    for proc, _ in collectors:
        proc.send_signal(signal.SIGTERM)
    for proc, _ in collectors:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def per_put(used: dict[str, float], puts: int) -> str:
    return ", ".join(f"{name} {1000 * cpu / puts:.2f} ms" for name, cpu in used.items())


# -- part 1: the target ----------------------------------------------------------------------


def body_pool(args: argparse.Namespace) -> list[bytes]:
    return bc.agent_pool() if args.bodies == "agent" else bc.synthetic_pool()


def part_target(servers: Servers, args: argparse.Namespace) -> None:
    pool = body_pool(args)
    n_rounds = args.rounds * 2
    rounds = bc.make_bodies(args.puts, n_rounds, pool, "f0", bc.SEAL_LEVEL or 9)
    size = statistics.mean(len(b) for r in rounds for _, _, b in r) / 1024
    print(
        f"target: {n_rounds} rounds of {args.puts} distinct {args.bodies} chunks of {size:.1f} KiB"
    )
    results: dict[str, list[tuple[float, dict[str, float]]]] = {"local": [], "fleet": []}
    setups = {b: servers.collectors(b, 1) for b in ("local", "fleet")}
    try:
        tokens = {b: bc.enroll(c[0][1]) for b, c in setups.items()}
        for r in range(args.rounds):
            order = ["local", "fleet"] if r % 2 == 0 else ["fleet", "local"]
            for k, backend in enumerate(order):
                collectors = setups[backend]
                meter = servers.meter(collectors)
                bodies = rounds[2 * r + k]
                meter.start()
                t0 = time.perf_counter()
                ok = asyncio.run(bc.put_all(collectors[0][1], tokens[backend], bodies, 64))
                rate = len(bodies) / (time.perf_counter() - t0)
                used = meter.stop()
                assert ok == len(bodies), f"{backend}: {ok} of {len(bodies)} stored"
                results[backend].append((rate, used))
                print(f"  round {r}, {backend}: {rate:.0f} PUTs/s; CPU per PUT: "
                      f"{per_put(used, len(bodies))}", flush=True)  # fmt: skip
    finally:
        for collectors in setups.values():
            stop_all(collectors)
    for backend, rows in results.items():
        rates = [rate for rate, _ in rows]
        cpu = statistics.median(1000 * u["collector 0"] / args.puts for _, u in rows)
        print(
            f"target, {backend}: median {statistics.median(rates):.0f} PUTs/s "
            f"(rounds {', '.join(f'{x:.0f}' for x in rates)}); collector CPU per PUT "
            f"median {cpu:.2f} ms"
        )


# -- part 2: the fleet simulation ------------------------------------------------------------


def build_spools(
    root: Path, agents: int, per_agent: int, pool: list[bytes]
) -> list[tuple[str, Path]]:
    """One template spool per agent (its own device and session), chunks of real records
    sealed as the agent seals them (zstd level 9, checksum), with their manifests."""
    import concurrent.futures
    import hashlib

    from deskcorder.storage.chunk import Manifest, write_manifest

    jobs = []
    for a in range(agents):
        device = agent_key(a).device
        session = f"20261127T{a:06d}Z-00a9e0{a % 100:02d}"
        for seq in range(per_agent):
            jobs.append((pool[(a * per_agent + seq) % len(pool)], session, seq, device))
    with concurrent.futures.ProcessPoolExecutor() as ex:
        datas = list(ex.map(_sealed, jobs, chunksize=16))
    out = []
    for a in range(agents):
        device = agent_key(a).device
        for seq in range(per_agent):
            _, session, _, _ = jobs[a * per_agent + seq]
            data = datas[a * per_agent + seq]
            folder = root / device / "sessions" / session
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{seq:06d}.jsonl.zst").write_bytes(data)
            write_manifest(
                folder,
                Manifest(
                    session=session, seq=seq, sha256=hashlib.sha256(data).hexdigest(),
                    bytes=len(data), records=0, events={},
                ),
            )  # fmt: skip
        agent_key(a).save(root / device / "state" / KEY_FILE)
        out.append((device, root / device))
    return out


def _sealed(job: tuple[bytes, str, int, str]) -> bytes:
    """A chunk of ``block``'s records for (session, seq, device), sealed like the agent's."""
    block, session, seq, device = job
    head = bc.encode_line({**bc.header(session, seq), "device": device, "agent": "bench 1.0"})
    level = bc.SEAL_LEVEL or 9
    return bc.zstd.ZstdCompressor(level=level, write_checksum=True).compress(head + block)


def agent_key(n: int) -> Any:
    """Agent ``n``'s key (each agent has its own, as on a real fleet)."""
    from deskcorder.devicekey import DeviceKey

    return DeviceKey.from_seed(n.to_bytes(4, "big") * 8)


def fresh_spool(template: Path, target: Path) -> None:
    """Hard links of the template's files: the uploader deletes the links, not the data."""
    for path in template.rglob("*"):
        dest = target / path.relative_to(template)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, dest)


def agents_worker(spec: dict[str, Any], queue: Any) -> None:
    """A client process: its share of the agents, each the real Uploader; reports latencies."""
    from deskcorder.policy.model import Upload
    from deskcorder.upload import Uploader, pending_chunks

    latencies: list[float] = []
    marks: list[tuple[float, float]] = []

    class TimedUploader(Uploader):
        def _request(self, method: str, url: str, **kw: Any) -> Any:
            t0 = time.perf_counter()
            resp = super()._request(method, url, **kw)
            if method == "PUT" and "/chunks/" in url:
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                marks.append((t0, t1))
            return resp

    ups = []
    cpu0 = time.process_time()
    for n, (_device, spool, url) in enumerate(spec["agents"]):
        cfg = Upload(endpoint=url, enroll_secret=ENROLL, backoff_max_s=2.0, timeout_s=120.0)
        claims = {"mode": "pseudonymous", "login": f"bench-{n}", "machine_id": f"bench-m-{n}"}
        up = TimedUploader(cfg, Path(spool), claims=claims, backoff_base=0.2)
        up.start()
        ups.append((up, Path(spool)))
    deadline = time.monotonic() + spec["deadline"]
    expected = spec["expected"]
    while time.monotonic() < deadline and sum(up.uploaded for up, _ in ups) < expected:
        time.sleep(0.1)  # a few attribute reads: the harness costs next to nothing
    for up, _ in ups:
        up._stop.set()
        up._wake.set()
    for up, _ in ups:
        up.stop(10)
    left = sum(len(pending_chunks(s)) for _, s in ups)
    queue.put(
        {
            "latencies": latencies,
            "first": min((a for a, _ in marks), default=0.0),
            "last": max((b for _, b in marks), default=0.0),
            "cpu": time.process_time() - cpu0,
            "left": left,
            "uploaded": sum(up.uploaded for up, _ in ups),
        }
    )


def part_simulation(servers: Servers, args: argparse.Namespace, work: Path) -> None:
    t0 = time.perf_counter()
    templates = build_spools(
        work / "templates", args.agents, args.chunks_per_agent, body_pool(args)
    )
    total = args.agents * args.chunks_per_agent
    print(
        f"simulation: {args.agents} agents x {args.chunks_per_agent} chunks = {total} PUTs "
        f"per configuration ({time.perf_counter() - t0:.0f} s to build the spools)"
    )
    configs = [("local", 1)] + [("fleet", int(n)) for n in args.instances.split(",")]
    ctx = multiprocessing.get_context("spawn")
    for run, (backend, n) in enumerate(configs):
        collectors = servers.collectors(backend, n)
        try:
            agents = []
            for a, (device, template) in enumerate(templates):
                spool = work / f"run{run}" / device
                fresh_spool(template, spool)
                agents.append((device, str(spool), f"http://127.0.0.1:{collectors[a % n][1]}"))
            queue = ctx.Queue()
            shares = [agents[c :: args.clients] for c in range(args.clients)]
            meter = servers.meter(collectors)
            meter.start()
            wall0 = time.perf_counter()
            procs = [
                ctx.Process(
                    target=agents_worker,
                    args=(
                        {
                            "agents": share,
                            "deadline": args.deadline,
                            "expected": len(share) * args.chunks_per_agent,
                        },
                        queue,
                    ),
                )
                for share in shares
            ]
            for p in procs:
                p.start()
            reports = [queue.get(timeout=args.deadline + 120) for _ in procs]
            for p in procs:
                p.join(30)
            wall = time.perf_counter() - wall0
            used = meter.stop()
        finally:
            stop_all(collectors)
            shutil.rmtree(work / f"run{run}", ignore_errors=True)
        lat = sorted(x for r in reports for x in r["latencies"])
        puts = sum(r["uploaded"] for r in reports)
        span = max(r["last"] for r in reports) - min(r["first"] for r in reports if r["first"])
        agents_cpu = sum(r["cpu"] for r in reports)
        left = sum(r["left"] for r in reports)
        p50 = 1000 * lat[len(lat) // 2] if lat else float("nan")
        p99 = 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
        print(
            f"{backend}, {n} instance{'s' if n > 1 else ''}: {puts} PUTs in {span:.1f} s = "
            f"{puts / span:.0f} PUTs/s ({wall:.1f} s with enrolment and start-up); latency "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms; CPU per PUT: {per_put(used, max(puts, 1))}, "
            f"agents {1000 * agents_cpu / max(puts, 1):.2f} ms"
            + (f"; {left} chunks NOT delivered by the deadline" if left else ""),
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=2000, help="PUTs per round (target)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per backend (target)")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--chunks-per-agent", type=int, default=3)
    parser.add_argument("--instances", default="1,2,3", help="fleet instances, comma-separated")
    parser.add_argument("--clients", type=int, default=2, help="agent processes")
    parser.add_argument("--deadline", type=float, default=240, help="seconds per configuration")
    parser.add_argument("--parts", default="target,simulation")
    parser.add_argument("--bodies", choices=["agent", "synthetic"], default="agent")
    parser.add_argument(
        "--gomaxprocs", type=int, help="SeaweedFS's Go worker threads (default: one per CPU)"
    )
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of agent sockets
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    servers = Servers(work / "servers", args.gomaxprocs)
    try:
        if "target" in args.parts:
            part_target(servers, args)
        if "simulation" in args.parts:
            part_simulation(servers, args, work)
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        servers.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
