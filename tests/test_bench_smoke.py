"""The benchmark runs end to end on a tiny workload and prints sane figures (not timed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_pipeline.py"


def _run(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--events", "3000", "--repeat", "1", "--json", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    result = json.loads(out.stdout)
    assert isinstance(result, dict)
    return result


def test_bench_prints_sane_numbers() -> None:
    r = _run()
    size, rate = r["size"], r["rate"]
    for key in ("hz60", "hz0", "hz60_us", "hz0_us", "hz60_rot"):
        per_event = size[key]["bytes_per_event"]
        assert 0.2 < per_event < 20, (key, per_event)
        assert size[key]["journal_per_event"] >= per_event  # sealing never grows a chunk
    assert size["hz60"]["bytes_per_event"] <= size["hz0"]["bytes_per_event"]
    assert size["hz60"]["bytes_per_event"] < size["naive_zstd3"]
    for key in ("hz60", "hz0", "naive"):
        assert rate[key]["median"] > 0


def test_bench_study_and_text_report() -> None:
    r = _run("--study", "--levels", "3")
    assert {row["which"] for row in r["levels"]} == {"seal", "journal"}
    for row in r["framing"]["recovery"]:
        assert row["flushed_lines_lost"] in (0, None)  # a torn tail never costs a flushed line
    text = subprocess.run(
        [sys.executable, str(BENCH), "--events", "2000", "--repeat", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    ).stdout
    assert "bytes/event" in text and "naive" in text and "target" in text


def test_collector_bench_runs_both_chunk_kinds_end_to_end(tmp_path: Path) -> None:
    """bench_collector.py on a tiny load: every PUT stored, every figure printed."""
    bench = BENCH.parent / "bench_collector.py"
    out = subprocess.run(
        [
            sys.executable, str(bench), "--puts", "30", "--rounds", "1", "--concurrency", "2,4",
            "--bodies", "synthetic,agent", "--upload-mb", "3", "--data", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )  # fmt: skip
    lines = out.stdout.splitlines()
    cells = [line for line in lines if line.startswith("collector, ")]
    assert len(cells) == 4, out.stdout
    for line in cells:
        assert "30 PUTs (30 stored)" in line, line
        assert re.search(r"host steal (n/a|\d+\.\d %)$", line), line
    assert any(line.startswith("collector, agent chunks of 6") for line in cells), cells
    assert any(line.startswith("uploader: ") for line in lines), out.stdout
    assert not list(tmp_path.iterdir())  # the bench cleans up after itself


def test_fleet_clients_bench_runs_end_to_end() -> None:
    """bench_fleet_clients.py on a tiny load: every S3 and PostgreSQL figure printed."""
    bench = BENCH.parent / "bench_fleet_clients.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--puts", "40", "--rows", "64", "--conns", "4"],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    ).stdout
    # every PUT stored, and every conditional PUT of an existing key answered 412
    assert re.search(r"obstore \(threads\), conditional PUT, exists .*\(40/40 as expected\)", out)
    assert re.search(r"psycopg \+ pool, 32 rows per commit \(unnest\) +\d+/s", out), out


def test_fleet_bench_runs_end_to_end() -> None:
    """bench_fleet.py on a tiny load: both parts, every configuration, every figure."""
    bench = BENCH.parent / "bench_fleet.py"
    out = subprocess.run(
        [
            sys.executable, str(bench), "--puts", "40", "--rounds", "1", "--agents", "6",
            "--chunks-per-agent", "2", "--instances", "1,2", "--clients", "1",
            "--deadline", "60", "--bodies", "synthetic",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout  # fmt: skip
    assert re.search(r"target, local: median \d+ PUTs/s", out), out
    assert re.search(r"target, fleet: median \d+ PUTs/s .* collector CPU per PUT", out), out
    for config in ("local, 1 instance:", "fleet, 1 instance:", "fleet, 2 instances:"):
        (line,) = [x for x in out.splitlines() if x.startswith(config)]
        assert line.startswith(f"{config} 12 PUTs in "), line
        assert "NOT delivered" not in line and "p99" in line, line
    assert "collector 1 " in out and "postgresql " in out and "seaweedfs " in out
