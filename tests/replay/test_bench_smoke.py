"""bench/bench_replay.py runs end to end on a small session and prints sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.replay.browser import CHROMIUM

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_replay.py"


def test_bench_replay_smoke() -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    out = subprocess.run(
        [sys.executable, str(BENCH), "--minutes", "1", "--shots", "12", "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    r = json.loads(out.stdout)
    session, browser = r["session"], r["browser"]
    assert 40 <= session["duration_s"] <= 60 and session["screenshots"] == 12
    assert session["steps"] > 10 and session["events"] > session["steps"]
    # inline holds the screenshots as base64: about 4/3 of their bytes
    assert session["inline_page_bytes"] > session["image_bytes"] * 4 / 3
    assert session["page_bytes"] < session["inline_page_bytes"]
    for name in ("files", "inline"):
        (run,) = browser[name]
        assert 0 < run["ready_ms"] <= run["shot_ms"] < 30_000
    assert browser["scroll"]["loaded"] == browser["sheet_images"] == 12
    assert browser["step_ms"] > 0
