"""Benchmark: collector chunk PUTs/s (64 KB chunks, one uvicorn worker) and uploader MB/s.

Usage (from the repository root, with the [collector] extra installed):

    .venv/bin/python bench/bench_collector.py [--puts 3000] [--rounds 3]
        [--concurrency 16,64] [--bodies synthetic,agent] [--upload-mb 100] [--data DIR]
        [--compare OTHER_CHECKOUT/src]

With ``--compare``, a second collector runs from another checkout's code (its
``src/`` folder on PYTHONPATH, e.g. a clone of main with the C line scanner
built) and the two take turns round by round on the same chunks, so a change
is measured against its baseline in one run on the same machine state.

Starts ``deskcorder collector serve`` as a real process on a loopback port.
Part 1 sends distinct, valid 64 KiB chunks (a new session/seq each, so every
request is verified, decompressed, fsynced and indexed) from an asyncio client
with N keep-alive connections, in several rounds (median reported), for each
kind of body and each N:

* ``synthetic``: mouse records with a random id each, ~3x compression
  (~190 KB of JSON lines per chunk);
* ``agent``: what the agent really writes: the reference workload
  (``bench/workload.py``) through the real pipeline at default settings,
  ~20x compression (~1.3 MB of JSON lines per 64 KiB chunk), so each PUT
  decompresses and checks far more bytes.

The same-run baseline is a do-nothing ASGI app on the same uvicorn settings
that reads each body and answers 201, with the same client, bodies and
connections: the ceiling of this load generator plus the HTTP stack on this
machine at that moment. Part 2 fills a spool with ~1 MiB chunks and times the
uploader thread draining it (verify + PUT + ack + delete). Prints the
figures; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import zstandard as zstd

from deskcorder.devicekey import KEY_FILE, DeviceKey, b64encode
from deskcorder.events import FORMAT_NAME, FORMAT_VERSION
from deskcorder.policy.model import Capture, Upload
from deskcorder.storage.chunk import SEAL_LEVEL, ChunkWriter, encode_line
from deskcorder.upload import Uploader, pending_chunks

ADMIN = "bench-admin-token-0123456789"
ENROLL = "bench-enroll-secret-0123456789"
PSEUDONYM_KEY = "bench-pseudonym-key-0123456789"
KEY = DeviceKey.from_seed(b"\x07" * 32)  # the bench's device (an agent makes its own)
DEVICE = KEY.device
CLAIMS = {"mode": "pseudonymous", "login": "bench", "machine_id": "bench-machine"}


def header(session: str, seq: int) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "session": session,
        "seq": seq,
        "device": DEVICE,
        "user": None,  # the collector attaches the pseudonyms it gave the device
    }


def records_for(target: int, seed: int) -> list[dict[str, Any]]:
    """Mouse records with a random id each, about ``target`` bytes once compressed (~3x)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    t = 0
    for _ in range(int(target * 2.75 / 56)):
        t += rng.randrange(1, 20000)
        x, y = rng.randrange(1920), rng.randrange(1080)
        out.append({"k": "mv", "t": t, "x": x, "y": y, "id": rng.randbytes(6).hex()})
    return out


def synthetic_pool(target: int = 64 * 1024) -> list[bytes]:
    """8 blocks of encoded synthetic records (the JSON lines after a chunk's header)."""
    return [b"".join(encode_line(r) for r in records_for(target, seed)) for seed in range(8)]


def agent_pool(target: int = 64 * 1024) -> list[bytes]:
    """Blocks of the records the agent writes for the reference workload, each about
    ``target`` bytes once compressed like a sealed chunk."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pipeline import run_pipeline
    from workload import generate

    result = run_pipeline(
        generate(), hz=Capture().mouse_move_hz, event_time_flush=True, capture=True
    )
    lines = [encode_line(r) for batch in result.batches for r in batch]
    cctx = zstd.ZstdCompressor(level=SEAL_LEVEL or 9, write_checksum=True)
    pool: list[bytes] = []
    start = 0
    step = 250
    while start < len(lines):  # grow each block until it compresses to ``target``
        end = min(start + step, len(lines))
        while end < len(lines) and len(cctx.compress(b"".join(lines[start:end]))) < target:
            end = min(end + step, len(lines))
        pool.append(b"".join(lines[start:end]))
        start = end
    return pool[:-1] if len(pool) > 1 else pool  # the tail is short


def chunk_body(session: str, seq: int, block: bytes, level: int = 3) -> bytes:
    """A valid chunk (one zstd frame with checksum): a header line, then ``block``."""
    head = encode_line(header(session, seq))
    return zstd.ZstdCompressor(level=level, write_checksum=True).compress(head + block)


def make_chunk(folder: Path, session: str, seq: int, target: int) -> Path:
    """A sealed chunk with its manifest in the spool layout."""
    writer = ChunkWriter(folder, session, seq, header(session, seq), level=3)
    writer.write_many(records_for(target, seq))
    writer.seal()
    return folder / f"{seq:06d}.jsonl.zst"


NOOP_APP = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"created":true}'
    await send({"type": "http.response.start", "status": 201, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, lifespan="off")
"""


def start_noop(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", NOOP_APP, str(port)])
    _wait_listening(proc, port)
    return proc


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the baseline server did not start")


def start_collector(data: Path, port: int, src: Path | None = None) -> subprocess.Popen[bytes]:
    """``collector serve`` on ``data``; from the checkout ``src`` (its src/ folder) if given."""
    (data.parent / "admin").write_text(ADMIN)
    (data.parent / "enroll").write_text(ENROLL)
    (data.parent / "pseudonym-key").write_text(PSEUDONYM_KEY)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "deskcorder", "collector", "serve",
            "--data", str(data), "--port", str(port),
            "--admin-token-file", str(data.parent / "admin"),
            "--enroll-secret-file", str(data.parent / "enroll"),
            "--pseudonym-key-file", str(data.parent / "pseudonym-key"),
            # the per-device write limit stays on (its cost is measured) but high
            # enough for one device sending a fleet's load
            "--device-writes-per-s", "1000000",
        ],
        stdout=subprocess.DEVNULL,
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("collector did not start")


def enroll(port: int) -> str:
    """Enroll the bench's key as an agent does (challenge, signed enrollment)."""
    url = f"http://127.0.0.1:{port}"
    challenge = httpx.post(f"{url}/v1/auth/challenge", json={}).json()["challenge"]
    resp = httpx.post(
        f"{url}/v1/enroll",
        json={
            "public_key": b64encode(KEY.public),
            "challenge": challenge,
            "signature": KEY.sign("enroll", challenge, CLAIMS),
            "claims": CLAIMS,
        },
        headers={"Authorization": f"Bearer {ENROLL}"},
    )
    resp.raise_for_status()
    return str(resp.json()["token"])


async def put_all(port: int, token: str, bodies: list[tuple[str, int, bytes]], conns: int) -> int:
    queue: asyncio.Queue[tuple[str, int, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    ok = 0

    async def worker() -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not queue.empty():
            session, seq, body = queue.get_nowait()
            sha = hashlib.sha256(body).hexdigest()
            head = (
                f"PUT /v1/sessions/{session}/chunks/{seq} HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: Bearer {token}\r\nX-Deskcorder-SHA256: {sha}\r\n"
                f"Content-Type: application/zstd\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if status_line.split()[1] == b"201":
                ok += 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return ok


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, kernel) CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + kernel CPU time of a process (Linux /proc)."""
    return sum(cpu_split(pid))


def host_steal() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of this VM since boot (Linux ``/proc/stat``), else None.

    Steal is time the hypervisor gave this VM's CPUs to other guests: on a
    shared host it is one cause of runs of the same code differing.
    """
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _bodies_part(
    args: tuple[int, int, int, str, list[bytes], int],
) -> list[tuple[str, int, bytes]]:
    r, lo, hi, tag, pool, level = args
    out = []
    for i in range(lo, hi):
        session = f"20261127T{r:06d}Z-{tag}{i // 1000:06x}"
        seq = i % 1000
        out.append((session, seq, chunk_body(session, seq, pool[i % len(pool)], level)))
    return out


def make_bodies(
    n: int, rounds: int, pool: list[bytes], tag: str, level: int
) -> list[list[tuple[str, int, bytes]]]:
    """``rounds`` lists of ``n`` distinct valid chunks (a new session every 1000).

    Compressed in a process per CPU: level 9 (the agent's) costs ~9 ms a chunk.
    """
    step = 250
    parts = [
        (r, lo, min(lo + step, n), tag, pool, level)
        for r in range(rounds)
        for lo in range(0, n, step)
    ]
    with concurrent.futures.ProcessPoolExecutor() as ex:
        done = list(ex.map(_bodies_part, parts))
    out: list[list[tuple[str, int, bytes]]] = [[] for _ in range(rounds)]
    for (r, *_), bodies in zip(parts, done, strict=True):
        out[r].extend(bodies)
    return out


def bench_puts(
    port: int, token: str, rounds: list[list[tuple[str, int, bytes]]], conns: int, server_pid: int
) -> dict[str, Any]:
    per_round: list[float] = []
    cpu_ms: list[float] = []
    sys_ms: list[float] = []
    stored = 0
    steal0 = host_steal()
    for bodies in rounds:
        user0, sys0 = cpu_split(server_pid)
        t0 = time.perf_counter()
        stored += asyncio.run(put_all(port, token, bodies, conns))
        elapsed = time.perf_counter() - t0
        per_round.append(len(bodies) / elapsed)
        user1, sys1 = cpu_split(server_pid)
        cpu_ms.append((user1 - user0 + sys1 - sys0) / len(bodies) * 1000)
        sys_ms.append((sys1 - sys0) / len(bodies) * 1000)
    steal = steal_share(steal0, host_steal())
    sizes = [len(b) for bodies in rounds for _, _, b in bodies]
    return {
        "puts": len(sizes),
        "stored": stored,
        "mean_kib": sum(sizes) / len(sizes) / 1024,
        "rounds": per_round,
        "median": statistics.median(per_round),
        "cpu_ms": statistics.median(cpu_ms),
        "cpu_rounds": cpu_ms,
        "sys_rounds": sys_ms,
        "steal": steal,
    }


def merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell's figures from its rounds measured one at a time (``bench_puts``)."""
    rounds = [r["rounds"][0] for r in results]
    cpu = [r["cpu_rounds"][0] for r in results]
    steals = [r["steal"] for r in results if r["steal"] is not None]
    return {
        "puts": sum(r["puts"] for r in results),
        "stored": sum(r["stored"] for r in results),
        "mean_kib": statistics.mean(r["mean_kib"] for r in results),
        "rounds": rounds,
        "median": statistics.median(rounds),
        "cpu_ms": statistics.median(cpu),
        "cpu_rounds": cpu,
        "sys_rounds": [r["sys_rounds"][0] for r in results],
        "steal": statistics.mean(steals) if steals else None,
    }


def bench_uploader(port: int, work: Path, total_mb: int, server_pid: int) -> dict[str, float]:
    spool = work / "spool"
    session = "20261127T010000Z-0000beef"
    folder = spool / "sessions" / session
    folder.mkdir(parents=True)
    seq = 0
    size = 0
    while size < total_mb * 1_000_000:
        size += make_chunk(folder, session, seq, 1024 * 1024).stat().st_size
        seq += 1
    cfg = Upload(endpoint=f"http://127.0.0.1:{port}", enroll_secret=ENROLL, backoff_max_s=1)
    KEY.save(spool / "state" / KEY_FILE)
    up = Uploader(cfg, spool, claims=CLAIMS)
    cpu0 = cpu_seconds(server_pid)
    own0 = time.process_time()
    t0 = time.perf_counter()
    up.start()
    while pending_chunks(spool):
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    own = time.process_time() - own0
    cpu = cpu_seconds(server_pid) - cpu0
    up.stop(5)
    return {
        "chunks": seq,
        "mb": size / 1e6,
        "seconds": elapsed,
        "mb_per_s": size / 1e6 / elapsed,
        "uploader_cpu_s": own,
        "server_cpu_s": cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=3000)
    parser.add_argument("--concurrency", default="16,64", help="connections, comma-separated")
    parser.add_argument("--bodies", default="synthetic,agent", help="synthetic, agent or both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--data", type=Path, help="collector data folder's parent (default: tmp)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="SRC",
        help="also run the collector of another checkout's src/ folder (PYTHONPATH), the two "
        "taking turns round by round on the same chunks",
    )
    args = parser.parse_args()
    conns = [int(c) for c in args.concurrency.split(",")]
    kinds = args.bodies.split(",")
    pools = {"synthetic": synthetic_pool, "agent": agent_pool}
    levels = {"synthetic": 3, "agent": SEAL_LEVEL or 9}  # the agent seals at level 9
    if not conns or min(conns) < 1 or not set(kinds) <= set(pools):
        parser.error("--concurrency: positive numbers; --bodies: synthetic and/or agent")
    work = Path(tempfile.mkdtemp(prefix="bench-collector-", dir=args.data))
    t0 = time.perf_counter()
    bodies: dict[tuple[str, int], list[list[tuple[str, int, bytes]]]] = {}
    for k, kind in enumerate(kinds):
        pool = pools[kind]()
        raw = statistics.mean(len(block) for block in pool) / 1024
        for c, n in enumerate(conns):  # every measurement gets chunks of its own
            tag = f"{k:x}{c:x}"
            bodies[kind, n] = make_bodies(args.puts, args.rounds, pool, tag, levels[kind])
        print(f"{kind}: {len(pool)} record blocks of {raw:.0f} KiB of JSON lines each")
    total = sum(len(r) for rounds in bodies.values() for r in rounds)
    print(f"generated {total} chunks in {time.perf_counter() - t0:.1f} s")
    port = args.port or _free_port()
    noop = start_noop(port)
    try:
        base = {key: bench_puts(port, "x", r, key[1], noop.pid) for key, r in bodies.items()}
    finally:
        noop.terminate()
        noop.wait(10)
    servers = (
        {"this checkout": None}
        if args.compare is None
        else {"this checkout": None, f"--compare {args.compare}": args.compare}
    )
    procs: dict[str, tuple[subprocess.Popen[bytes], int, str]] = {}
    try:
        for n, (label, src) in enumerate(servers.items()):
            port = (args.port + n if args.port else 0) or _free_port()
            proc = start_collector(work / f"data{n}", port, src)
            procs[label] = (proc, port, enroll(port))
        for key, rounds in bodies.items():
            by_label: dict[str, list[dict[str, Any]]] = {label: [] for label in procs}
            for r, one_round in enumerate(rounds):  # the servers take turns, round by round
                order = list(procs) if r % 2 == 0 else list(reversed(procs))
                for label in order:
                    proc, port, token = procs[label]
                    by_label[label].append(bench_puts(port, token, [one_round], key[1], proc.pid))
            for label, results in by_label.items():
                puts = merge_rounds(results)
                per_round = zip(puts["rounds"], puts["cpu_rounds"], puts["sys_rounds"], strict=True)
                rounds_text = ", ".join(
                    f"{r:.0f} ({c:.2f} ms CPU, {k:.2f} kernel)" for r, c, k in per_round
                )
                base_text = ", ".join(f"{r:.0f}" for r in base[key]["rounds"])
                steal = "n/a" if puts["steal"] is None else f"{100 * puts['steal']:.1f} %"
                who = "" if len(procs) == 1 else f"[{label}] "
                print(
                    f"{who}collector, {key[0]} chunks of {puts['mean_kib']:.1f} KiB, {key[1]} "
                    f"connections, 1 worker: {puts['puts']:.0f} PUTs ({puts['stored']:.0f} "
                    f"stored), median {puts['median']:.0f} PUTs/s = "
                    f"{puts['median'] * puts['mean_kib'] * 1024 / 1e6:.1f} MB/s; rounds (PUTs/s, "
                    f"server CPU per PUT): {rounds_text}; same-run do-nothing ASGI app: median "
                    f"{base[key]['median']:.0f} PUTs/s (rounds: {base_text}); host steal {steal}"
                )
        for label, (proc, port, _token) in procs.items():
            if args.upload_mb <= 0:
                break
            up = bench_uploader(port, work / f"up-{len(label)}", args.upload_mb, proc.pid)
            who = "" if len(procs) == 1 else f"[{label}] "
            print(
                f"{who}uploader: {up['chunks']:.0f} chunks, {up['mb']:.1f} MB in "
                f"{up['seconds']:.2f} s = {up['mb_per_s']:.1f} MB/s to a loopback collector; "
                f"CPU: uploader (this process, incl. polling) {up['uploader_cpu_s']:.2f} s, "
                f"collector {up['server_cpu_s']:.2f} s"
            )
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        for proc, _port, _token in procs.values():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
