"""End to end under Xvfb: xdotool drives two windows, the real agent records with
pre-action frames, ``deskcorder dataset build`` exports, and every exported action
and every click's observation is checked against what the test did and saw."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.capture.screenshots import MssGrabber, to_image
from tests.e2e.agent import DESKCORDER, AgentProcess
from tests.xserver import XServer, wait_for, xserver

pytest.importorskip("PIL")
from PIL import Image, ImageChops, ImageDraw

pytestmark = [pytest.mark.x11, pytest.mark.slow]

HERE = Path(__file__).parent
ALPHA, BETA = "dataset-alpha", "dataset-beta"
SCREEN = (0, 0, 1920, 1080)
POLICY = """\
[capture]
screenshots = true
mouse_move_hz = 0

[screenshots]
pre_action = true
pre_action_hz = 20
format = "png"          # lossless: observations compare pixel for pixel
max_width = 1920
scope = "all_monitors"
min_spacing_s = 0
on_focus = false
after_typing_s = 0

[spool]
flush_interval_s = 0.2
"""


def click_window(x: XServer, title: str, geometry: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "clickwin.py"), title, geometry],
        env=x.env,
        stdin=subprocess.PIPE,
    )
    x.procs.append(proc)
    wait_for(lambda: x.window_ids(title), 15, f"window {title!r}")
    return proc


def origin(x: XServer, title: str) -> tuple[int, int]:
    out = x.xdotool("getwindowgeometry", "--shell", x.window_ids(title)[0])
    geo = dict(line.split("=", 1) for line in out.split())
    return int(geo["X"]), int(geo["Y"])


@pytest.fixture(scope="module")
def desk() -> Iterator[XServer]:
    with xserver() as x:
        click_window(x, ALPHA, "600x400+40+40")
        click_window(x, BETA, "600x400+700+40")
        yield x


class Session:
    """The agent, and the test's own view of the screen."""

    def __init__(self, x: XServer, agent: AgentProcess) -> None:
        self.x = x
        self.agent = agent
        self.grabber = MssGrabber(x.display)
        self.before: list[tuple[Image.Image, tuple[int, int]]] = []

    def screen(self) -> Image.Image:
        return to_image(self.grabber.grab(SCREEN), [], SCREEN)

    def ring_grabs(self) -> int:
        from deskcorder.control import request

        return int(request("status")["screenshots"]["ring_grabs"])

    def prepare(self, px: int, py: int) -> None:
        """Let the screen settle and the ring run, move onto the target, take our shot."""
        shot = [self.screen()]

        def settled() -> bool:
            now = self.screen()
            same = ImageChops.difference(now, shot[0]).getbbox() is None
            shot[0] = now
            return same

        wait_for(settled, 10, "a settled screen")
        start = self.ring_grabs()
        wiggle = [0]

        def ring_ran() -> bool:  # keep the pointer moving near the target: the ring runs
            wiggle[0] += 1
            self.x.xdotool("mousemove", str(px + 20 + wiggle[0] % 2 * 6), str(py + 20))
            return self.ring_grabs() >= start + 2

        wait_for(ring_ran, 10, "two ring frames")
        self.x.xdotool("mousemove", str(px), str(py))
        self.before.append((self.screen(), (px, py)))

    def click(self, px: int, py: int, *args: str) -> None:
        self.prepare(px, py)
        self.x.xdotool("click", *args, "1")


def same_outside_cursor(a: Image.Image, b: Image.Image, at: tuple[int, int]) -> bool:
    """Pixels equal everywhere but a 32 px box around the pointer."""
    a, b = a.copy(), b.copy()
    box = (at[0] - 16, at[1] - 16, at[0] + 16, at[1] + 16)
    for img in (a, b):
        ImageDraw.Draw(img).rectangle(box, fill=(0, 0, 0))
    return ImageChops.difference(a, b).getbbox() is None


def test_recorded_session_exports_exact_actions_and_pre_action_observations(
    desk: XServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = desk
    x.activate(ALPHA)
    ax, ay = origin(x, ALPHA)
    bx, by = origin(x, BETA)
    p1, p2, p3 = (ax + 100, ay + 150), (ax + 250, ay + 200), (ax + 100, ay + 300)
    p4, p5, pe = (ax + 200, ay + 310), (ax + 300, ay + 320), (ax + 100, ay + 12)
    q1, qe = (bx + 150, by + 150), (bx + 100, by + 12)

    with AgentProcess(x, tmp_path, POLICY) as agent:
        monkeypatch.setenv("DESKCORDER_RUNTIME_DIR", str(agent.runtime))
        agent.wait_ready()
        agent.wait_record({"k": "focus", "win.title": ALPHA})
        s = Session(x, agent)
        s.click(*p1)
        s.click(*p2, "--repeat", "2", "--delay", "40")
        s.prepare(*p3)
        x.xdotool("mousedown", "1")
        x.xdotool("mousemove", str(p4[0]), str(p4[1]))
        x.xdotool("mousemove", str(p5[0]), str(p5[1]))
        x.xdotool("mouseup", "1")
        x.xdotool("click", "--repeat", "3", "--delay", "60", "5")
        s.click(*pe)
        x.xdotool("type", "--delay", "30", "hello 42")
        x.xdotool("key", "ctrl+s")
        x.activate(BETA)
        agent.wait_record({"k": "focus", "win.title": BETA})
        s.click(*q1)
        s.click(*qe)
        x.xdotool("type", "--delay", "30", "ok")
        x.xdotool("key", "ctrl+s")
        wait_for(
            lambda: sum(r["k"] == "ku" and r.get("key") == "s" for r in agent.records()) >= 2,
            10,
            "the second ctrl+s released",
        )
        assert agent.terminate() < 5 and agent.proc.returncode == 0, agent.output()
        s.grabber.close()

    out = tmp_path / "dataset"
    built = subprocess.run(
        [*DESKCORDER, "dataset", "build", "--from", str(agent.spool), "--out", str(out),
         "--format", "jsonl"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    rows: list[dict[str, Any]] = [
        json.loads(line)
        for f in sorted(out.glob("data/*/*.jsonl"))
        for line in f.read_text().splitlines()
    ]

    def brief(r: dict[str, Any]) -> tuple[Any, ...]:
        where = (r["x"], r["y"]) if r["x"] is not None else None
        extra = {
            "drag": (r["end_x"], r["end_y"]),
            "scroll": (r["dx"], r["dy"]),
            "type": r["text"],
            "hotkey": tuple(r["keys"]),
        }.get(r["kind"])
        return (r["kind"], r["window_title"], where, extra)

    assert [brief(r) for r in rows] == [
        ("click", ALPHA, p1, None),
        ("double_click", ALPHA, p2, None),
        ("drag", ALPHA, p3, p5),
        ("scroll", ALPHA, p5, (0, -3)),
        ("click", ALPHA, pe, None),
        ("type", ALPHA, None, "LLLLL DD"),
        ("hotkey", ALPHA, None, ("ctrl", "s")),
        ("click", BETA, q1, None),
        ("click", BETA, qe, None),
        ("type", BETA, None, "LL"),
        ("hotkey", BETA, None, ("ctrl", "s")),
    ]
    assert len({r["episode_id"] for r in rows}) == 1
    assert rows[0]["code"] == f"pyautogui.click(x={p1[0]}, y={p1[1]})"

    # every press's observation is the screen as the test saw it just before the press
    pressed = [r for r in rows if r["kind"] in ("click", "double_click", "drag")]
    assert len(pressed) == len(s.before) == 6
    for row, (mine, at) in zip(pressed, s.before, strict=True):
        assert row["observation_exact"] is True, row
        with Image.open(out / row["observation"]) as obs:
            assert obs.size == (1920, 1080)
            assert same_outside_cursor(obs.convert("RGB"), mine, at), row["kind"]
    # ... and not the screen after it: a click on a canvas changes its colour (the click
    # shot is the after image; a drag's may come only after the scroll began)
    for row in (pressed[0], pressed[1], pressed[4]):
        assert row["after"] and row["after_sha256"] != row["observation_sha256"], row["kind"]
