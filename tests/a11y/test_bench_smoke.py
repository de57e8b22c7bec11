"""bench/bench_a11y.py runs (one configuration, one second): its figures come out sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.a11y.desktop import have_a11y

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_a11y.py"
pytestmark = pytest.mark.x11


def test_bench_a11y_smoke() -> None:
    missing = have_a11y()
    if missing:
        pytest.skip(missing)
    quick = ["--configs", "on", "--rounds", "1", "--seconds", "1", "--json"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *quick],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = json.loads(done.stdout)["rows"]
    assert row["config"] == "on" and row["keystrokes"] == "full"
    assert row["clicks"] == row["bd_records"] == 1 and row["elements"] == 1
    assert row["hook_n"] >= 150 and row["cpu_percent"] > 0 and row["desktop_cpu_percent"] > 0
