"""The screen changes while recording (RandR on Xvfb): resized, then a second monitor.

After each change a ``screen`` record appears, the next chunk's header has the
new geometry, clicks keep their coordinates and screenshots use the new monitors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder import read_session
from tests.e2e.agent import AgentProcess
from tests.xserver import XServer, wait_for, xserver

pytestmark = [pytest.mark.x11, pytest.mark.slow]

WINDOW = "deskcorder-screens"
POLICY = """\
[capture]
mouse_move_hz = 0
screenshots = true

[screenshots]
on_focus = false
after_typing_s = 0
min_spacing_s = 0

[spool]
flush_interval_s = 0.2
min_free_mb = 0
"""


@pytest.fixture(scope="module")
def x() -> Iterator[XServer]:
    with xserver() as server:  # its own server: the test changes its screen
        server.tk_window(WINDOW, x=40, y=40, width=500, height=400)
        yield server


def resize(x: XServer, width: int, height: int) -> None:
    """What a display settings tool does: a new mode on the output, then switch to it."""
    name = f"{width}x{height}"
    h_timing = [width, width + 64, width + 192, width + 384]
    v_timing = [height, height + 3, height + 8, height + 28]
    x.run("xrandr", "--newmode", name, "74.50", *map(str, h_timing + v_timing))
    x.run("xrandr", "--addmode", "screen", name)
    x.run("xrandr", "--output", "screen", "--mode", name)


def screens_of_headers(agent: AgentProcess) -> list[Any]:
    directory = agent.session_dir()
    if directory is None:
        return []
    try:
        return [h["screen"] for h in read_session(directory).headers()]
    except Exception:
        return []  # a chunk being sealed right now


def click_and_shoot(x: XServer, agent: AgentProcess, px: int, py: int) -> dict[str, Any]:
    """Click at (px, py); the ``bd`` record there and the screenshot it triggered."""
    x.xdotool("mousemove", str(px), str(py))
    x.xdotool("click", "1")
    bd = agent.wait_record({"k": "bd", "x": px, "y": py})

    def shot() -> dict[str, Any] | None:
        later = [r for r in agent.records() if r["k"] == "shot" and r["t"] >= bd["t"]]
        return later[0] if later else None

    found = wait_for(shot, 10, "the screenshot of the click")
    assert isinstance(found, dict)
    return found


def test_resize_and_a_new_monitor_while_recording(x: XServer, tmp_path: Path) -> None:
    with AgentProcess(x, tmp_path, POLICY) as agent:
        agent.wait_ready()
        x.activate(WINDOW)
        first = click_and_shoot(x, agent, 300, 300)
        assert first["mon"] == [0, 0, 1920, 1080]

        resize(x, 1280, 720)
        agent.wait_record({"k": "screen", "screen": [[0, 0, 1280, 720]]})
        shot = click_and_shoot(x, agent, 400, 350)  # opens the next chunk
        assert shot["mon"] == [0, 0, 1280, 720] and shot["w"] == 1280
        assert screens_of_headers(agent)[-1] == [[0, 0, 1280, 720]]

        # a second monitor to the right of the first. Xvfb has one output: it grows to
        # cover both, and RandR 1.5 monitors describe the two (as for a tiled display)
        resize(x, 1920, 720)
        x.run("xrandr", "--setmonitor", "left", "1280/340x720/190+0+0", "screen")
        x.run("xrandr", "--setmonitor", "right", "640/170x720/190+1280+0", "none")
        both = [[0, 0, 1280, 720], [1280, 0, 640, 720]]

        def reported() -> bool:
            recs = [r for r in agent.records() if r["k"] == "screen"]
            return bool(recs) and sorted(recs[-1]["screen"]) == both

        wait_for(reported, 10, "the second monitor reported")
        x.xdotool("windowmove", "--sync", x.window_ids(WINDOW)[0], "1300", "60")
        x.activate(WINDOW)  # a screenshot needs a known focused window
        shot = click_and_shoot(x, agent, 1500, 200)  # in the window, on the new monitor
        assert shot["mon"] == [1280, 0, 640, 720] and shot["w"] == 640
        assert sorted(screens_of_headers(agent)[-1]) == both
        agent.terminate()
        assert agent.proc.returncode == 0, agent.output()
    session = read_session(next((agent.spool / "sessions").iterdir()))
    headers = session.headers()
    assert headers[0]["screen"] == [[0, 0, 1920, 1080]]
    assert sorted(headers[-1]["screen"]) == both
