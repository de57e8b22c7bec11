"""``deskcorder run --backend x11`` with screenshots on: real clicks, real window probe."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deskcorder import read_session
from deskcorder.storage.blobs import BlobStore
from tests.e2e.agent import AgentProcess
from tests.screenshots.helpers import QUADRANTS, geometry, pattern_window, shots_outside_exclusions
from tests.xserver import XServer, wait_for

pytest.importorskip("PIL")
from PIL import Image

pytestmark = pytest.mark.x11

POLICY = """\
[capture]
screenshots = true
mouse_move_hz = 0

[spool]
flush_interval_s = 0.2

[exclusions]
titles = ["^secret-"]

[screenshots]
on_focus = false
after_typing_s = 0
min_spacing_s = 0
max_width = 3840
quality = 90
"""


def test_clicks_record_shots_with_excluded_window_black(x: XServer, tmp_path: Path) -> None:
    main = pattern_window(x, "shot-e2e", "500x400+100+100")
    secret = pattern_window(x, "secret-e2e", "400x300+900+200")
    try:
        x.activate("shot-e2e")
        mx, my, mw, mh = geometry(x, x.window_ids("shot-e2e")[0])
        sx, sy, sw, sh = geometry(x, x.window_ids("secret-e2e")[0])
        with AgentProcess(x, tmp_path, POLICY) as agent:
            agent.wait_ready()
            agent.wait_record({"k": "focus", "win.title": "shot-e2e"})
            x.xdotool("mousemove", str(mx + 20), str(my + 20), "click", "1")
            first = agent.wait_record({"k": "shot", "reason": "click"}, timeout=20)
            # focus the excluded window and click in it: no screenshot
            x.activate("secret-e2e")
            agent.wait_record({"k": "excl"})
            x.xdotool("mousemove", str(sx + 20), str(sy + 20), "click", "1")
            # back to the recorded window: screenshots again, the secret one masked
            x.activate("shot-e2e")
            agent.wait_record({"k": "focus", "win.title": "shot-e2e"})
            x.xdotool("mousemove", str(mx + 40), str(my + 40), "click", "1")
            wait_for(lambda: sum(r["k"] == "shot" for r in agent.records()) >= 2, 20, "shot 2")
            agent.terminate()
            assert agent.proc.returncode == 0, agent.output()
    finally:
        for proc in (secret, main):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
    session = read_session(next((agent.spool / "sessions").iterdir()))
    records = list(session.records())
    referenced = {sha for m in session.manifests() for sha in m.blobs}
    store = BlobStore(agent.spool / "blobs")
    shots = shots_outside_exclusions(records)
    assert first in shots and len(shots) >= 2
    for rec in shots:
        assert rec["sha256"] in referenced
        assert rec["mon"] == [0, 0, 3840, 1080] and rec["w"] == 3840
        img = Image.open(io.BytesIO(store.read(rec["sha256"]))).convert("RGB")
        # the recorded window's quadrants are there ...
        r, g, b = img.getpixel((mx + mw // 4, my + mh // 4))
        assert abs(r - QUADRANTS[0][0]) + g + b < 60, (r, g, b)
        # ... and the excluded window is black in every stored image
        inside = img.crop((sx + 2, sy + 2, sx + sw - 2, sy + sh - 2))
        assert all(hi <= 12 for _, hi in inside.getextrema()), inside.getextrema()
    # nothing else was stored: every blob on disk belongs to a recorded shot
    assert set(store) == {rec["sha256"] for rec in shots}
