"""bench/bench_capture.py runs end to end on a tiny load and prints sane figures (not timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.xserver import have_xvfb

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_capture.py"

pytestmark = [pytest.mark.x11, pytest.mark.slow]


def test_bench_capture_prints_sane_figures() -> None:
    if not have_xvfb():
        pytest.skip("Xvfb/xdotool/xprop not installed")
    args = ["--seconds", "1", "--rates", "200", "--keys-per-second", "10", "--idle-seconds", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    (row,) = out["rates"]
    assert row["sent"] == 200
    assert row["hook_n"] == row["sent"]  # our hooks wait for RECORD to run: none missed
    # bare pynput says "ready" just before RECORD is enabled: it may miss the first few
    assert 0 < row["floor_seen"] <= row["sent"]
    assert row["key_n"] == 20  # 10 taps: a press and a release each
    assert 0 < row["hook_p50_us"] <= row["hook_p99_us"] <= row["hook_max_us"]
    assert 10 < row["agent_rss"] < 500 and 5 < row["floor_rss"] < 500
    assert row["agent_cpu"] >= 0 and row["floor_cpu"] >= 0
    assert 0 <= out["idle"]["idle_cpu"] < 100
