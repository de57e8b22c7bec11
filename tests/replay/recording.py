"""A session recorded by the real agent under Xvfb, for the replay page tests.

xdotool clicks into an editor window, types, saves with ctrl+s, switches to a
second window and clicks there; the user pauses and resumes; the second
window's title becomes hostile markup (``HOSTILE_TITLE``) and gets one more
click. Screenshots are on (1920x1080 screen, stored at 1280x720), keystrokes
``redacted`` (the default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deskcorder import read_session
from tests.e2e.agent import AgentProcess
from tests.xserver import wait_for, xserver

HOSTILE_TITLE = "<script>alert(1)</script>"
EDITOR = "Notes - Editor"
BROWSER = "Docs - Browser"
CLICKS = ((200, 200), (900, 250), (1000, 300))  # screen coordinates, in this order

POLICY = """\
[capture]
screenshots = true

[spool]
flush_interval_s = 0.2

[screenshots]
on_focus = true
after_typing_s = 0
min_spacing_s = 0
"""


# what the recording holds, step by step: (label, window title shown)
EXPECTED = [
    ("session started", ""),
    (f"window: {EDITOR} (Tk)", EDITOR),
    ("left click", EDITOR),
    ("typing (5 keys)", EDITOR),
    ("ctrl+s", EDITOR),
    (f"window: {BROWSER} (Tk)", BROWSER),
    ("left click", BROWSER),
    ("paused (user)", BROWSER),
    ("recording resumed", BROWSER),
    (f"window: {BROWSER} (Tk)", BROWSER),
    (f"title: {HOSTILE_TITLE}", HOSTILE_TITLE),
    ("left click", HOSTILE_TITLE),
    ("session ended (sigterm)", HOSTILE_TITLE),
]


@dataclass(frozen=True)
class Recording:
    spool: Path
    session: str
    records: list[dict[str, Any]]


def record_session(tmp: Path) -> Recording:
    with xserver() as x:
        x.tk_window(EDITOR, x=40, y=40, width=600, height=400)
        browser = x.tk_window(BROWSER, x=700, y=40, width=600, height=400, color="#dde8ff")
        x.activate(EDITOR)
        with AgentProcess(x, tmp, POLICY) as agent:
            agent.wait_ready()
            agent.wait_record({"k": "focus", "win.title": EDITOR})
            (x1, y1), (x2, y2), (x3, y3) = CLICKS
            x.xdotool("mousemove", str(x1), str(y1), "click", "1")
            agent.wait_record({"k": "shot", "reason": "click"}, timeout=20)
            x.xdotool("type", "--delay", "40", "hello")
            x.xdotool("key", "ctrl+s")
            agent.wait_record({"k": "kd", "key": "s"})
            x.activate(BROWSER)
            agent.wait_record({"k": "focus", "win.title": BROWSER})
            x.xdotool("mousemove", str(x2), str(y2), "click", "1")
            wait_for(lambda: _count(agent, "bu") >= 2, 10, "the second click")
            agent.cli("pause", "--minutes", "5")
            agent.wait_record({"k": "pause", "src": "user"})
            x.xdotool("mousemove", "1100", "350", "click", "1")  # not recorded: paused
            agent.cli("resume")
            agent.wait_record({"k": "resume"})
            assert browser.stdin is not None
            browser.stdin.write(HOSTILE_TITLE.encode() + b"\n")
            browser.stdin.flush()
            agent.wait_record({"k": "title", "title": HOSTILE_TITLE})
            x.xdotool("mousemove", str(x3), str(y3), "click", "1")
            wait_for(lambda: _count(agent, "shot") >= 4, 20, "the last click's screenshot")
            agent.terminate()
            assert agent.proc.returncode == 0, agent.output()
    session = next((agent.spool / "sessions").iterdir())
    return Recording(agent.spool, session.name, list(read_session(session).records()))


def _count(agent: AgentProcess, kind: str) -> int:
    return sum(1 for rec in agent.records() if rec["k"] == kind)
