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
