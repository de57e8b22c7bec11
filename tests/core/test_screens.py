"""Monitors change while recording: a ``screen`` record, and a new chunk whose header has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deskcorder.capture.pipeline import Pipeline
from deskcorder.events import RAW_BUTTON, RAW_CONTROL, validate_record
from deskcorder.storage.reader import read_session
from deskcorder.storage.spool import Spool
from tests.core.helpers import T0, header, make_policy, ms
from tests.xserver import wait_for


def test_screen_change_writes_a_record_and_starts_a_chunk(tmp_path: Path) -> None:
    screens = [[0, 0, 1920, 1080]]

    def with_screens(seq: int) -> dict[str, Any]:
        return {**header(seq), "screen": [list(m) for m in screens]}

    policy = make_policy(spool={"flush_interval_s": 0.02, "min_free_mb": 0})
    spool = Spool(tmp_path / "spool", policy.spool)
    spool.ensure()
    pipeline = Pipeline(policy, spool, with_screens, session_id="s", t0_ns=T0, clock_ns=lambda: T0)
    pipeline.start()
    q = pipeline.queue
    q.put_control((RAW_BUTTON, ms(10), 1900, 1000, "left", True))
    wait_for(lambda: pipeline.written_records >= 2, 5, "the click written")
    screens = [[0, 0, 1280, 720], [1280, 0, 1024, 768]]  # resized, and a monitor plugged in
    q.put_control((RAW_CONTROL, ms(20), "screens", [tuple(m) for m in screens]))
    wait_for(lambda: len(pipeline.session.sealed) == 1, 5, "the chunk sealed")
    q.put_control((RAW_BUTTON, ms(30), 2000, 700, "left", True))
    assert pipeline.stop(5)
    session = read_session(spool.sessions_dir / "s")
    first, second = session.headers()
    assert first["screen"] == [[0, 0, 1920, 1080]]
    assert second["screen"] == screens
    records = list(session.records())
    for record in records:
        validate_record(record)
    kinds = [r["k"] for r in records]
    assert kinds == ["start", "bd", "screen", "bd", "end"]
    assert records[2]["screen"] == screens and records[2]["t"] == 20_000
    assert (records[3]["x"], records[3]["y"]) == (2000, 700)  # on the new monitor
