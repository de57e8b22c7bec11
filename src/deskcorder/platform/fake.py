"""A scripted backend for tests, demos and benchmarks.

It plays a script of raw events in (scaled) real time through the same
``emit`` the real hooks use, so everything after the source is the real
pipeline. The built-in ``demo`` script works in three windows: an editor, a
browser whose title changes, and a password manager that policy excludes.

Options (keyword arguments of :func:`create_backend`, or environment
variables for ``deskcorder run --backend fake``):

* ``speed`` / ``DESKCORDER_FAKE_SPEED``: time scale (2.0 = twice as fast).
* ``script`` / ``DESKCORDER_FAKE_SCRIPT``: ``demo`` or a path to a JSON Lines
  script whose lines are ``[delay_seconds, tag, ...fields]`` (tags as in
  ``deskcorder.events`` RAW_*; a focus line is ``[d, 5, {window fields}]``;
  ``[d, "secure", true]`` says the focused field is now a password field, which
  the backend's accessibility then reports; ``[d, "secure", null]`` says no
  field can be identified (an application without accessibility);
  ``[d, "element", {"role": ..., "name": ...}]`` is the element under clicks from
  then on, ``null`` none).
* ``repeat`` / ``DESKCORDER_FAKE_REPEAT``: play the script this many times.
* ``DESKCORDER_FAKE_HOST``: a JSON file with the battery, whether the network is
  metered and the monitors (:class:`FakeHostState`), read on every ask.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deskcorder.events import (
    RAW_BUTTON,
    RAW_FOCUS,
    RAW_KEY,
    RAW_MOVE,
    RAW_SCROLL,
    RAW_SESSION,
    RAW_TITLE,
    WindowInfo,
)
from deskcorder.platform import clock
from deskcorder.platform.base import Backend, Battery, Check, Element, Emit, Found

Step = tuple[float, tuple[Any, ...]]  # (delay seconds before, raw event without the time)

EDITOR = WindowInfo(
    id=0x1A00001,
    title="notes.txt - Editor",
    app="Editor",
    pid=4242,
    process="editor",
    exe="/usr/bin/editor",
    x=0,
    y=0,
    width=960,
    height=1080,
)
BROWSER = WindowInfo(
    id=0x1C00003,
    title="Docs - Chromium",
    app="Chromium",
    pid=4343,
    process="chromium",
    exe="/usr/lib/chromium/chromium",
    x=960,
    y=0,
    width=960,
    height=1080,
)
VAULT = WindowInfo(
    id=0x1E00005,
    title="Passwords.kdbx - KeePassXC",
    app="KeePassXC",
    pid=4444,
    process="keepassxc",
    exe="/usr/bin/keepassxc",
    x=200,
    y=200,
    width=800,
    height=600,
)


def _path(x0: int, y0: int, x1: int, y1: int, n: int, dt: float = 0.008) -> list[Step]:
    steps: list[Step] = []
    for i in range(1, n + 1):
        f = (1 - math.cos(math.pi * i / n)) / 2  # ease in-out like a hand
        wobble = math.sin(i / 3.0) * 3
        steps.append(
            (dt, (RAW_MOVE, round(x0 + (x1 - x0) * f), round(y0 + (y1 - y0) * f + wobble)))
        )
    return steps


def _click(x: int, y: int, button: str = "left") -> list[Step]:
    return [(0.05, (RAW_BUTTON, x, y, button, True)), (0.08, (RAW_BUTTON, x, y, button, False))]


def _type(text: str) -> list[Step]:
    steps: list[Step] = []
    for ch in text:
        name = "space" if ch == " " else None
        char = None if ch == " " else ch
        shifted = ch.isupper() or ch in '!@#$%^&*()_+{}|:"<>?~'
        vk = 32 if ch == " " else ord(ch)
        if shifted:
            steps.append((0.03, (RAW_KEY, True, None, "shift", 0xFFE1)))
        steps.append((0.06, (RAW_KEY, True, char, name, vk)))
        steps.append((0.05, (RAW_KEY, False, char, name, vk)))
        if shifted:
            steps.append((0.02, (RAW_KEY, False, None, "shift", 0xFFE1)))
    return steps


def _combo(mod: str, mod_vk: int, ch: str) -> list[Step]:
    return [
        (0.1, (RAW_KEY, True, None, mod, mod_vk)),
        (0.05, (RAW_KEY, True, ch, None, ord(ch))),
        (0.05, (RAW_KEY, False, ch, None, ord(ch))),
        (0.05, (RAW_KEY, False, None, mod, mod_vk)),
    ]


def demo_script() -> list[Step]:
    """About 6 seconds of work across three windows."""
    s: list[Step] = [(0.0, (RAW_SESSION, False, True)), (0.0, (RAW_FOCUS, EDITOR))]
    s += _path(300, 700, 420, 300, 90)
    s += _click(420, 300)
    s += _type("Meeting notes: ship v2 on Friday.")
    s += [
        (0.1, (RAW_KEY, True, None, "enter", 0xFF0D)),
        (0.05, (RAW_KEY, False, None, "enter", 0xFF0D)),
    ]
    s += _combo("ctrl_l", 0xFFE3, "s")
    s += _path(420, 300, 1400, 500, 120)
    s += [(0.05, (RAW_FOCUS, BROWSER))]
    s += _click(1400, 500)
    s += [(0.1, (RAW_SCROLL, 1400, 500, 0, -1)) for _ in range(6)]
    s += [(0.1, (RAW_SCROLL, 1400, 500, 0, 1)) for _ in range(2)]
    s += [(0.2, (RAW_TITLE, BROWSER.id, "Release checklist - Chromium"))]
    s += _path(1400, 500, 1500, 620, 60)
    s += _click(1500, 620, "right")
    s += _combo("ctrl_l", 0xFFE3, "c")
    s += [(0.1, (RAW_FOCUS, VAULT))]
    s += _path(500, 400, 600, 450, 40)
    s += _type("hunter2-secret")  # excluded window: must never reach disk
    s += [(0.1, (RAW_FOCUS, EDITOR))]
    s += _path(600, 450, 380, 330, 80)
    s += _click(380, 330)
    s += _type("Done")
    return s


def load_script(spec: str) -> list[Step]:
    if spec == "demo":
        return demo_script()
    steps: list[Step] = []
    for line in Path(spec).read_text().splitlines():
        if not line.strip():
            continue
        delay, tag, *fields = json.loads(line)
        if tag == "secure":
            steps.append((float(delay), ("secure", None if fields[0] is None else bool(fields[0]))))
            continue
        if tag == "element":
            steps.append((float(delay), ("element", Element(**fields[0]) if fields[0] else None)))
            continue
        if tag == RAW_FOCUS and fields and isinstance(fields[0], dict):
            fields = [WindowInfo(**fields[0])]
        steps.append((float(delay), (tag, *fields)))
    return steps


class ScriptPlayer:
    """Plays the script on one thread; the three backend parts share it."""

    def __init__(self, script: list[Step], speed: float, repeat: int) -> None:
        self.script = script
        self.speed = speed
        self.repeat = repeat
        self._emit: Emit | None = None
        self._stop = threading.Event()
        self.done = threading.Event()
        self._thread: threading.Thread | None = None
        self.window: WindowInfo | None = None
        self.want_mouse = True
        self.want_keys = True
        self.secure: bool | None = False  # the focused field is a password field (None: unknown)
        self.element: Element | None = None  # the element under clicks
        self.on_change: Callable[[], None] = lambda: None

    def start(self, emit: Emit) -> None:
        if self._thread is not None:
            return
        self._emit = emit
        self._thread = threading.Thread(target=self._play, name="deskcorder-fake", daemon=True)
        self._thread.start()

    def _play(self) -> None:
        assert self._emit is not None
        emit = self._emit
        due = time.monotonic()
        for _ in range(self.repeat):
            for delay, raw in self.script:
                due += delay / self.speed
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    self.done.set()
                    return
                tag = raw[0]
                if tag == "secure":
                    self.secure = raw[1]
                    self.on_change()
                    continue
                if tag == "element":
                    self.element = raw[1]
                    continue
                if tag == RAW_FOCUS:
                    self.window = raw[1]
                if tag in (RAW_MOVE, RAW_BUTTON, RAW_SCROLL) and not self.want_mouse:
                    continue
                if tag == RAW_KEY and not self.want_keys:
                    continue
                emit((tag, clock.now_ns(), *raw[1:]))
        self.done.set()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class FakeInput:
    def __init__(self, player: ScriptPlayer) -> None:
        self.player = player

    def start(self, emit: Emit, *, mouse: bool, keyboard: bool) -> None:
        self.player.want_mouse = mouse
        self.player.want_keys = keyboard
        self.player.start(emit)

    def stop(self, timeout: float) -> None:
        self.player.stop(timeout)


class FakeWindows:
    def __init__(self, player: ScriptPlayer) -> None:
        self.player = player

    def start(self, emit: Emit) -> None:
        """Window events are part of the script."""

    def stop(self, timeout: float) -> None:
        """Nothing to stop: the script player owns the thread."""

    def active_window(self) -> WindowInfo | None:
        return self.player.window

    def visible_windows(self) -> list[WindowInfo]:
        return [self.player.window] if self.player.window else []


class FakeAccessibility:
    """The scripted focused field (``secure``) and element under clicks (``element``)."""

    poll_s: float | None = None

    def __init__(self, player: ScriptPlayer) -> None:
        self.player = player

    def start(self, changed: Callable[[], None]) -> None:
        self.player.on_change = changed

    def stop(self, timeout: float) -> None:
        self.player.on_change = lambda: None

    def focused(self, window: WindowInfo | None, detail: bool) -> Element | None:
        secure = self.player.secure
        if window is None or secure is None:
            return None
        role = "password text" if secure else "text"
        return Element(role, "Password" if secure else "Text", password=secure)

    def element_at(self, x: int, y: int, window: WindowInfo) -> Element | None:
        return self.player.element


class FakeSession:
    def start(self, emit: Emit) -> None:
        """Session state is part of the script."""

    def stop(self, timeout: float) -> None:
        """Nothing to stop."""

    def available(self) -> bool:
        return True


class FakeHostState:
    """Battery, network and monitors read from a JSON file on every ask (tests change it).

    ``{"battery": {"percent": 15, "plugged": false} | null, "metered": true | false | null,
    "screens": [[left, top, width, height], ...]}``; a missing file or key: a desktop on an
    unmetered network with one 1920x1080 monitor.
    """

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def power(self) -> Battery | None:
        b = self._read().get("battery")
        if not isinstance(b, dict):
            return None
        return Battery(percent=b.get("percent"), plugged=b.get("plugged"))

    def network(self) -> bool | None:
        value = self._read().get("metered")
        return value if isinstance(value, bool) else None

    def screens(self) -> list[tuple[int, int, int, int]]:
        mons = self._read().get("screens") or [[0, 0, 1920, 1080]]
        return [(int(m[0]), int(m[1]), int(m[2]), int(m[3])) for m in mons]


def create_backend(
    speed: float | None = None, script: str | None = None, repeat: int | None = None
) -> Backend:
    speed = speed if speed is not None else float(os.environ.get("DESKCORDER_FAKE_SPEED", "1"))
    script = script or os.environ.get("DESKCORDER_FAKE_SCRIPT", "demo")
    repeat = repeat if repeat is not None else int(os.environ.get("DESKCORDER_FAKE_REPEAT", "1"))
    player = ScriptPlayer(load_script(script), speed, repeat)
    host = FakeHostState(os.environ.get("DESKCORDER_FAKE_HOST"))

    def doctor() -> list[Check]:
        return [Check("backend", True, "fake backend: scripted input, no OS hooks")]

    return Backend(
        name="fake",
        input=FakeInput(player),
        windows=FakeWindows(player),
        session=FakeSession(),
        keyboard_layout=lambda: "us",
        screens=host.screens,
        doctor=doctor,
        accessibility=lambda: Found("fake backend accessibility", FakeAccessibility(player)),
        extras={"player": player, "host": host},
        power=host.power,
        network=host.network,
    )
