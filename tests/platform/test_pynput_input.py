"""The Windows/macOS input source (pynput's public listeners), run for real on X11."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deskcorder.events import RAW_BUTTON, RAW_KEY, RAW_MOVE, RAW_SCROLL
from deskcorder.platform.pynput_input import PynputInput, button_label
from tests.xserver import XServer, wait_for, xserver

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="exercised under Xvfb")


@pytest.fixture(scope="module")
def bare() -> Iterator[XServer]:
    with xserver(wm=False) as x:
        yield x


def test_button_label() -> None:
    class Left:
        name = "left"
        value = 1

    class Unknown:
        name = "unknown"
        value = 0

    assert button_label(Left()) == "left"
    assert button_label(Unknown()) == "button0"


@pytest.mark.x11
def test_public_listener_callbacks_emit_raw_events(
    bare: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", bare.display)
    got: list[tuple[Any, ...]] = []
    source = PynputInput()
    source.start(got.append, mouse=True, keyboard=True)
    try:
        # pynput marks its X listeners ready slightly before RECORD is enabled
        wait_for(lambda: bare.xdotool("mousemove", "3", "4") == "" and got, 5, "the first move")
        got.clear()
        bare.xdotool("mousemove", "30", "40", "click", "3", "click", "5")
        bare.xdotool("key", "shift+w")
        wait_for(lambda: len(got) >= 8, 5, "8 raw events")
    finally:
        listeners = list(source._listeners)
        start = time.monotonic()
        source.stop(0.5)  # bounded even though pynput's X11 stop waits for one more event
        took = time.monotonic() - start
        bare.xdotool("mousemove", "1", "1", "key", "Escape")  # lets pynput's X11 threads end
        wait_for(lambda: not any(t.is_alive() for t in listeners), 5, "listeners ended")
    assert took < 1.0
    assert [e[:1] + e[2:] for e in got] == [
        (RAW_MOVE, 30, 40),
        (RAW_BUTTON, 30, 40, "right", True),
        (RAW_BUTTON, 30, 40, "right", False),
        (RAW_SCROLL, 30, 40, 0, -1),
        (RAW_KEY, True, None, "shift", 0xFFE1),
        (RAW_KEY, True, "W", None, 0x57),
        (RAW_KEY, False, None, "shift", 0xFFE1),
        # X11 keysyms differ by shift level, so this path cannot pair them there (the X11
        # backend has its own hooks); on Windows/macOS vk is the physical key and pairs
        (RAW_KEY, False, "w", None, 0x77),
    ]
    assert os.environ["DISPLAY"] == bare.display
