"""Benchmark: the cost of device identity (issue 13), before and after, in one run.

Usage (from the repository root, under the heavy lock for figures):

    .venv/bin/python bench/bench_identity.py [--before main] [--rounds 3] [--puts 2000]
        [--upload-mb 100] [--concurrency 64] [--bodies agent]

The *before* code is ``git archive <before>`` of this repository, unpacked in a
temp folder, with this checkout's built C line scanner copied in when its
source is the same. The two checkouts' own ``bench/bench_collector.py`` runs
(each speaks its own enrollment protocol) take turns, round by round, on the
same machine state: collector chunk PUTs/s (one uvicorn worker, real 64 KiB
chunks, per-device rate limit and token lookup on the path after) and the
uploader's MB/s to a loopback collector (token renewal, consent check per
chunk after). Then the Ed25519 work an enrollment or a token costs, which is
off the PUT path. Prints the figures; docs/performance.md records them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUTS = re.compile(r"collector, (\w+) chunks .*?, (\d+) connections.*?median (\d+) PUTs/s")
UPLOAD = re.compile(r"= ([\d.]+) MB/s to a loopback collector")
CPU = re.compile(r"server CPU per PUT\): \d+ \(([\d.]+) ms CPU")


def unpack(ref: str, into: Path) -> Path:
    tree = into / "before"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "src", "bench"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    same_c = not subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "diff",
            "--quiet",
            ref,
            "--",
            "src/deskcorder/collector/_linescan.c",
        ]
    ).returncode
    built = list((ROOT / "src/deskcorder/collector").glob("_linescan*.so"))
    if same_c and built:
        shutil.copy(built[0], tree / "src/deskcorder/collector" / built[0].name)
    else:
        print("note: the before tree runs without the C line scanner (its source differs)")
    return tree


def run(tree: Path, args: argparse.Namespace) -> tuple[dict[str, float], float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    cmd = [
        sys.executable, str(tree / "bench" / "bench_collector.py"),
        "--rounds", "1", "--puts", str(args.puts), "--upload-mb", str(args.upload_mb),
        "--concurrency", args.concurrency, "--bodies", args.bodies,
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: bench_collector failed:\n{done.stderr[-2000:]}")
    puts = {f"{m[1]}/{m[2]}": float(m[3]) for m in PUTS.finditer(done.stdout)}
    # the collector's CPU per PUT: far less sensitive than PUTs/s to other load on the host
    puts |= {f"cpu_ms/{n}": float(m[1]) for n, m in enumerate(CPU.finditer(done.stdout))}
    upload = UPLOAD.search(done.stdout)
    assert upload is not None, done.stdout
    return puts, float(upload[1])


def _fmt(key: str, value: float) -> str:
    if key.startswith("cpu_ms/"):
        return f"collector CPU {value:.2f} ms per PUT"
    return f"{key} {value:.0f} PUTs/s"


def crypto_costs() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from deskcorder.devicekey import DeviceKey, b64decode, signed_message, verify

    key = DeviceKey.generate()
    n = 2000
    t0 = time.perf_counter()
    for i in range(n):
        sig = key.sign("token", f"challenge-{i}")
    sign_us = (time.perf_counter() - t0) / n * 1e6
    message = signed_message("token", key.device, f"challenge-{n - 1}")
    raw = b64decode(sig)
    t0 = time.perf_counter()
    for _ in range(n):
        assert verify(key.public, raw, message)
    verify_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(200):
        DeviceKey.generate()
    gen_us = (time.perf_counter() - t0) / 200 * 1e6
    return (
        f"Ed25519 (cryptography): key made once per agent {gen_us:.0f} us; "
        f"sign {sign_us:.0f} us (agent, once per token); verify {verify_us:.0f} us "
        "(collector, once per enrollment or token, not per PUT)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", help="git ref of the baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--puts", type=int, default=2000)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--concurrency", default="64")
    parser.add_argument("--bodies", default="agent")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-identity-"))
    try:
        trees = {
            f"before ({args.before})": unpack(args.before, work),
            "after (this checkout)": ROOT,
        }
        results: dict[str, list[tuple[dict[str, float], float]]] = {name: [] for name in trees}
        for n in range(args.rounds):
            for name, tree in trees.items():
                puts, mbs = run(tree, args)
                results[name].append((puts, mbs))
                shown = ", ".join(_fmt(k, v) for k, v in puts.items())
                print(f"round {n + 1}, {name}: {shown}; uploader {mbs:.1f} MB/s", flush=True)
        for name, rows in results.items():
            keys = rows[0][0].keys()
            medians = ", ".join(
                "median " + _fmt(k, statistics.median(r[0][k] for r in rows)) for k in keys
            )
            mbs = statistics.median(r[1] for r in rows)
            print(f"{name}: {medians}; uploader median {mbs:.1f} MB/s")
        print(crypto_costs())
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
