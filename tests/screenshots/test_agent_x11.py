"""The screenshot component inside a real agent: scripted input, a real X screen."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from deskcorder.agent import Agent
from deskcorder.events import ShotRec
from deskcorder.platform.fake import create_backend
from deskcorder.policy.load import Layer, build_policy
from deskcorder.storage.blobs import BlobStore
from deskcorder.storage.reader import list_sessions
from tests.screenshots.helpers import (
    QUADRANTS,
    XdoProbe,
    geometry,
    pattern_window,
    shots_outside_exclusions,
)
from tests.xserver import XServer

pytest.importorskip("PIL")
from PIL import Image

pytestmark = pytest.mark.x11


def test_agent_records_shots_referenced_by_manifest(
    x: XServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = pattern_window(x, "shot-agent", "400x300+100+100")
    try:
        wid = int(x.activate("shot-agent"))
        gx, gy, gw, gh = geometry(x, str(wid))
        me = {"id": 1, "title": "shot-agent"}
        secret = {"id": 2, "title": "secret-notes"}
        steps = [
            [0.0, 7, False, True],
            [0.0, 5, me],
            [0.4, 2, gx + 10, gy + 10, "left", True],
            [0.05, 2, gx + 10, gy + 10, "left", False],
            [0.6, 5, secret],
            [0.3, 2, gx + 20, gy + 20, "left", True],
            [0.05, 2, gx + 20, gy + 20, "left", False],
            [0.4, 5, me],
            [0.4, 2, gx + 30, gy + 30, "left", True],
            [0.05, 2, gx + 30, gy + 30, "left", False],
        ]
        script = tmp_path / "script.jsonl"
        script.write_text("".join(json.dumps(s) + "\n" for s in steps))
        backend = create_backend(script=str(script))
        backend.windows = XdoProbe(x)
        loaded = build_policy([Layer("test", {
            "capture": {"screenshots": True},
            "screenshots": {"min_spacing_s": 0, "after_typing_s": 0, "max_width": 3840},
            "exclusions": {"titles": ["^secret-"]},
        })])  # fmt: skip
        monkeypatch.setenv("DISPLAY", x.display)
        agent = Agent(loaded, tmp_path / "spool", backend, duration=4.0)
        result: list[int] = []
        runner = threading.Thread(target=lambda: result.append(agent.run()), name="agent")
        runner.start()
        runner.join(30)
        assert not runner.is_alive() and result == [0]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    (session,) = list_sessions(tmp_path / "spool")
    records = list(session.records())
    shots = [r for r in records if r["k"] == "shot"]
    assert shots, [r["k"] for r in records]
    manifests = session.manifests()
    referenced = {sha for m in manifests for sha in m.blobs}
    store = BlobStore(tmp_path / "spool" / "blobs")
    for rec in shots_outside_exclusions(records):
        ShotRec.model_validate(rec)
        assert rec["sha256"] in referenced and store.has(rec["sha256"])
        assert rec["win"] == wid and rec["mon"] == [0, 0, 3840, 1080]  # mss: one screen
        img = Image.open(io.BytesIO(store.read(rec["sha256"]))).convert("RGB")
        r, g, b = img.getpixel((gx + gw // 4, gy + gh // 4))
        assert abs(r - QUADRANTS[0][0]) + g + b < 60
    reasons = {r["reason"] for r in shots}
    assert "click" in reasons or "focus" in reasons
    assert agent.status()["screenshots"]["shots"] >= len(shots)
