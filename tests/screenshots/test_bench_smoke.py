"""bench/bench_screenshots.py runs end to end and prints sane figures (not timed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_screenshots.py"

pytestmark = pytest.mark.x11


def test_bench_screenshots_smoke() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--frames", "2", "--quick", "--scenes", "empty,text",
         "--no-pipeline"],
        capture_output=True, text=True, check=True, timeout=240,
    ).stdout  # fmt: skip
    rows = re.findall(r"(\w+ q\d+(?: m\d)?)\s+p50\s+([\d.]+) ms .* ([\d.]+) KiB/frame", out)
    assert {name for name, _, _ in rows} == {"jpeg q70", "webp q70 m0", "webp q70 m4"}, out
    assert all(float(ms) > 0 and float(kib) > 0 for _, ms, kib in rows), out
    assert re.search(r"unchanged screen: first frame [1-9]\d* B, second frame 0 B", out), out
