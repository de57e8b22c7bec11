"""Benchmark: the fleet backend's client libraries on this machine (docs/dependencies.md).

Usage (repository root, after ``bash .ci/setup``; boto3 and aiobotocore are not
dependencies of deskcorder: ``pip install boto3 aiobotocore`` to include them):

    .venv/bin/python bench/bench_fleet_clients.py [--puts 2000] [--conns 16] [--rows 20000]

Starts SeaweedFS and a durable PostgreSQL 15 (fsync on) on loopback
(``tests/services.py``), then:

* **S3**: ``--puts`` distinct 64 KiB objects, plain and conditional
  (``If-None-Match: *``), from ``--conns`` threads (obstore, boto3) or tasks
  (obstore's async API, aiobotocore); PUTs/s, this process's CPU per PUT and
  SeaweedFS's CPU per PUT. Then the conditional PUT of objects that exist:
  every one must fail with 412 (a client that cannot tell is unusable here).
* **PostgreSQL** (psycopg 3 + psycopg_pool, ``--conns`` threads): chunk rows
  committed one per transaction vs in groups of 32 (one ``INSERT ... SELECT
  FROM unnest`` per group): rows/s and CPU per row, client and server.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.services import Postgres, SeaweedFS

BODY = 64 * 1024


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children still running (PostgreSQL's backends)."""
    total = proc_cpu(pid)
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                stat = (child / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                total += proc_cpu(int(child.name))
    return total


def measure(label: str, n: int, server_pid: int, run: Callable[[], int]) -> dict[str, Any]:
    cpu0, srv0, t0 = time.process_time(), tree_cpu(server_pid), time.perf_counter()
    ok = run()
    elapsed = time.perf_counter() - t0
    cpu, srv = time.process_time() - cpu0, tree_cpu(server_pid) - srv0
    out = {
        "label": label,
        "n": n,
        "ok": ok,
        "rate": n / elapsed,
        "client_ms": cpu / n * 1000,
        "server_ms": srv / n * 1000,
    }
    print(
        f"{label:<44} {out['rate']:7.0f}/s  client CPU {out['client_ms']:.3f} ms, "
        f"server CPU {out['server_ms']:.3f} ms per op  ({ok}/{n} as expected)",
        flush=True,
    )
    return out


def threaded(n: int, conns: int, one: Callable[[int], bool]) -> int:
    with concurrent.futures.ThreadPoolExecutor(conns) as ex:
        return sum(ex.map(one, range(n)))


def s3_obstore(sw: SeaweedFS, args: argparse.Namespace, bodies: list[bytes]) -> None:
    import obstore
    from obstore.exceptions import AlreadyExistsError

    store = sw.store("obstore")
    n, conns, pid = args.puts, args.conns, sw.proc.pid  # type: ignore[union-attr]

    def put(tag: str, mode: str | None) -> Callable[[int], bool]:
        def one(i: int) -> bool:
            try:
                obstore.put(store, f"{tag}/{i}", bodies[i % len(bodies)], mode=mode)  # type: ignore[arg-type]
            except AlreadyExistsError:
                return mode == "create" and tag == "cond"
            return not (mode == "create" and tag == "cond")

        return one

    measure("obstore (threads), PUT", n, pid, lambda: threaded(n, conns, put("plain", None)))
    measure(
        "obstore (threads), conditional PUT", n, pid, lambda: threaded(n, conns, put("c", "create"))
    )
    measure(
        "obstore (threads), conditional PUT, exists",
        n,
        pid,
        lambda: threaded(n, conns, put("cond", "create")) if _prefill(store, n, bodies) else 0,
    )

    async def run_async(tag: str) -> int:
        sem = asyncio.Semaphore(conns)

        async def one(i: int) -> bool:
            async with sem:
                await obstore.put_async(store, f"{tag}/{i}", bodies[i % len(bodies)], mode="create")
            return True

        return sum(await asyncio.gather(*(one(i) for i in range(n))))

    measure("obstore (asyncio), conditional PUT", n, pid, lambda: asyncio.run(run_async("a")))


def _prefill(store: Any, n: int, bodies: list[bytes]) -> bool:
    import obstore

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: obstore.put(store, f"cond/{i}", bodies[0]), range(n)))
    return True


def s3_boto3(sw: SeaweedFS, args: argparse.Namespace, bodies: list[bytes]) -> None:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError
    except ImportError:
        print("boto3: not installed, skipped")
        return
    client = boto3.client(
        "s3",
        endpoint_url=sw.endpoint,
        aws_access_key_id=sw.access_key,
        aws_secret_access_key=sw.secret_key,
        region_name="us-east-1",
        config=Config(max_pool_connections=args.conns, s3={"addressing_style": "path"}),
    )
    n, pid = args.puts, sw.proc.pid  # type: ignore[union-attr]

    def put(tag: str, cond: bool, expect_412: bool = False) -> Callable[[int], bool]:
        def one(i: int) -> bool:
            kw: dict[str, Any] = {"IfNoneMatch": "*"} if cond else {}
            try:
                client.put_object(
                    Bucket=sw.bucket, Key=f"boto3/{tag}/{i}", Body=bodies[i % len(bodies)], **kw
                )
            except ClientError as exc:
                return expect_412 and exc.response["Error"]["Code"] == "PreconditionFailed"
            return not expect_412

        return one

    measure("boto3 (threads), PUT", n, pid, lambda: threaded(n, args.conns, put("p", False)))
    measure(
        "boto3 (threads), conditional PUT", n, pid, lambda: threaded(n, args.conns, put("c", True))
    )
    measure(
        "boto3 (threads), conditional PUT, exists",
        n,
        pid,
        lambda: threaded(n, args.conns, put("c", True, expect_412=True)),
    )


def s3_aiobotocore(sw: SeaweedFS, args: argparse.Namespace, bodies: list[bytes]) -> None:
    try:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session
    except ImportError:
        print("aiobotocore: not installed, skipped")
        return
    n, conns, pid = args.puts, args.conns, sw.proc.pid  # type: ignore[union-attr]

    async def run() -> int:
        session = get_session()
        config = AioConfig(max_pool_connections=conns, s3={"addressing_style": "path"})
        async with session.create_client(
            "s3",
            endpoint_url=sw.endpoint,
            aws_access_key_id=sw.access_key,
            aws_secret_access_key=sw.secret_key,
            region_name="us-east-1",
            config=config,
        ) as client:
            sem = asyncio.Semaphore(conns)

            async def one(i: int) -> bool:
                async with sem:
                    await client.put_object(
                        Bucket=sw.bucket, Key=f"aio/{i}", Body=bodies[i % len(bodies)],
                        IfNoneMatch="*",
                    )  # fmt: skip
                return True

            return sum(await asyncio.gather(*(one(i) for i in range(n))))

    measure("aiobotocore (asyncio), conditional PUT", n, pid, lambda: asyncio.run(run()))


def postgres(pg: Postgres, args: argparse.Namespace) -> None:
    from psycopg_pool import ConnectionPool

    dsn = pg.create_database("bench")
    pool = ConnectionPool(
        dsn, min_size=args.conns, max_size=args.conns, kwargs={"password": pg.password}, open=True
    )
    with pool.connection() as conn:
        conn.execute(
            "CREATE TABLE chunks (session text, seq int, sha256 text, bytes bigint, "
            "records int, received double precision, PRIMARY KEY (session, seq))"
        )
    n, pid = args.rows, pg.proc.pid  # type: ignore[union-attr]
    counter = iter(range(10**9))
    lock = threading.Lock()

    def single(i: int) -> bool:
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO chunks VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (f"s1-{i // 1000}", i % 1000, "0" * 64, BODY, 1000, time.time()),
            )
        return True

    measure("psycopg + pool, 1 row per commit", n, pid, lambda: threaded(n, args.conns, single))
    group = 32

    def grouped(g: int) -> bool:
        with lock:
            start = next(counter) * group
        ids = range(start, start + group)
        with pool.connection() as conn:
            conn.execute(
                "INSERT INTO chunks SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], "
                "%s::bigint[], %s::int[], %s::float8[]) ON CONFLICT DO NOTHING",
                (
                    [f"s2-{i // 1000}" for i in ids],
                    [i % 1000 for i in ids],
                    ["0" * 64] * group,
                    [BODY] * group,
                    [1000] * group,
                    [time.time()] * group,
                ),
            )
        return True

    measure(
        f"psycopg + pool, {group} rows per commit (unnest)",
        n,
        pid,
        lambda: group * threaded(n // group, args.conns, grouped),
    )
    pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--only", default="s3,pg", help="s3, pg or both")
    args = parser.parse_args()
    bodies = [os.urandom(BODY) for _ in range(16)]
    with tempfile.TemporaryDirectory(prefix="bench-fleet-clients-") as tmp:
        if "s3" in args.only:
            sw = SeaweedFS(Path(tmp)).start()
            try:
                s3_obstore(sw, args, bodies)
                s3_boto3(sw, args, bodies)
                s3_aiobotocore(sw, args, bodies)
            finally:
                sw.stop()
        if "pg" in args.only:
            pg = Postgres(durable=True).start()
            try:
                postgres(pg, args)
            finally:
                pg.stop()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
