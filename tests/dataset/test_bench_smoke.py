"""The dataset and pre-action benchmarks run end to end briefly and print sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.xserver import have_xvfb

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, *args, "--json"], capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(out.stdout)
    assert isinstance(result, dict)
    return result


def test_dataset_bench_reduces_and_exports() -> None:
    r = run(str(BENCH / "bench_dataset.py"), "--quick")
    red = r["reduction"]
    assert isinstance(red, dict) and red["actions"] > 100 and red["records_per_s"] > 10_000
    rows = r["export"]
    assert isinstance(rows, list) and {row["format"] for row in rows} == {"jsonl", "parquet"}
    short = [row["actions"] for row in rows if row["input"] == "1 h"]
    long = [row["actions"] for row in rows if row["input"] == "2 h"]
    assert short[0] == short[1] == red["actions"] and long[0] > short[0]


@pytest.mark.x11
@pytest.mark.slow
def test_preaction_bench_runs_both_agents() -> None:
    if not have_xvfb():
        pytest.skip("Xvfb not installed")
    r = run(str(BENCH / "bench_preaction.py"), "--seconds", "1", "--phases", "1")
    rows = r["rows"]
    assert isinstance(rows, list) and [row["pre_action"] for row in rows] == [False, True]
    assert rows[0]["ring_grabs"] == 0 and rows[1]["ring_grabs"] >= 1
    assert all(row["cpu"] > 0 and row["rss_peak"] > 10 for row in rows)
