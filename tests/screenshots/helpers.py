"""Helpers for the screenshot tests: pattern windows and an xdotool window probe.

The X11 backend's probe replaces :class:`XdoProbe` in the agent; these tests
only need the same answers (focused window and visible windows with geometry),
read with xdotool/xprop from the real X server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from deskcorder.events import WindowInfo
from deskcorder.platform.base import Emit
from tests.xserver import XServer, wait_for

HERE = Path(__file__).parent
QUADRANTS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))


def pattern_window(
    x: XServer, title: str, geometry: str, mode: str = "pattern"
) -> subprocess.Popen[bytes]:
    """Start ``patternwin.py``; wait until the window is mapped."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "patternwin.py"), title, geometry, mode],
        env=x.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    x.procs.append(proc)
    wait_for(lambda: x.window_ids(title), 15, f"window {title!r}")
    return proc


def geometry(x: XServer, wid: str) -> tuple[int, int, int, int]:
    out = x.run("xdotool", "getwindowgeometry", "--shell", wid)
    vals = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return int(vals["X"]), int(vals["Y"]), int(vals["WIDTH"]), int(vals["HEIGHT"])


class XdoProbe:
    """A :class:`deskcorder.platform.base.WindowProbe` reading the X server via xdotool."""

    def __init__(self, x: XServer) -> None:
        self.x = x

    def start(self, emit: Emit) -> None:
        """No events: the tests drive triggers directly."""

    def stop(self, timeout: float) -> None:
        """Nothing to stop."""

    def _info(self, wid: int) -> WindowInfo:
        title = self.x.run("xdotool", "getwindowname", str(wid)).strip()
        left, top, w, h = geometry(self.x, str(wid))
        return WindowInfo(id=wid, title=title, x=left, y=top, width=w, height=h)

    def active_window(self) -> WindowInfo | None:
        out = self.x.run("xdotool", "getactivewindow", check=False).strip()
        return self._info(int(out)) if out else None

    def visible_windows(self) -> list[WindowInfo]:
        out = self.x.run("xprop", "-root", "_NET_CLIENT_LIST_STACKING")
        if "#" not in out:
            return []
        ids = [int(v.strip(), 16) for v in out.split("#", 1)[1].split(",") if v.strip()]
        return [self._info(wid) for wid in ids]


def shots_outside_exclusions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ``shot`` record, asserting none falls while an excluded window has focus
    (between an ``excl`` marker and the next ``focus``)."""
    excluded = False
    shots = []
    for rec in records:
        if rec["k"] == "excl":
            excluded = True
        elif rec["k"] == "focus":
            excluded = False
        elif rec["k"] == "shot":
            assert not excluded, "a shot was recorded while an excluded window had focus"
            shots.append(rec)
    return shots
