"""The X11 backend's parts against a real X server (no agent), plus pure helpers."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deskcorder.errors import EnvironmentUnsupported
from deskcorder.events import (
    RAW_BUTTON,
    RAW_FOCUS,
    RAW_KEY,
    RAW_MARK,
    RAW_MOVE,
    RAW_SCROLL,
    RAW_TITLE,
)
from deskcorder.platform import select_backend
from deskcorder.platform.linux.input import (
    X11Input,
    button_name,
    require_x11,
    wayland_session,
)
from deskcorder.platform.linux.window import X11WindowProbe, decode_text, proc_info
from deskcorder.platform.pynput_input import key_identity
from tests.xserver import XServer, wait_for, xserver

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the X11 backend runs on Linux"
)


@pytest.fixture(scope="module")
def bare() -> Iterator[XServer]:
    """An X server without a window manager."""
    with xserver(wm=False) as x:
        yield x


@pytest.fixture(autouse=True)
def _restore_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """X11Input sets $DISPLAY for pynput; undo that after each test."""
    monkeypatch.setenv("DISPLAY", os.environ.get("DISPLAY", ""))


@pytest.fixture(scope="module")
def wm() -> Iterator[XServer]:
    with xserver() as x:
        yield x


# -- pure helpers ------------------------------------------------------------------


def test_button_names() -> None:
    assert [button_name(b) for b in (1, 2, 3, 8, 9, 12)] == [
        "left", "middle", "right", "x1", "x2", "button12",
    ]  # fmt: skip


def test_key_identity_of_pynput_like_keys() -> None:
    class Value:
        vk = 65505

    class Shift:
        name = "shift"
        value = Value()

    class Code:
        char = "W"
        vk = 87

    assert key_identity(Shift()) == (None, "shift", 65505)
    assert key_identity(Code()) == ("W", None, 87)
    assert key_identity(None) == (None, None, None)


def test_wayland_is_refused_with_a_plain_message() -> None:
    assert wayland_session({"XDG_SESSION_TYPE": "wayland"})
    assert wayland_session({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"})
    assert not wayland_session({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"})
    with pytest.raises(EnvironmentUnsupported, match=r"Wayland session.*impossible"):
        require_x11({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"})
    with pytest.raises(EnvironmentUnsupported, match="DISPLAY is not set"):
        require_x11({})
    assert require_x11({"DISPLAY": ":7"}) == ":7"


def test_decode_text_prefers_utf8_even_for_string_properties() -> None:
    assert decode_text("ünï ✓".encode()) == "ünï ✓"
    assert decode_text(b"caf\xe9") == "café"  # real Latin-1 STRING
    assert decode_text(b"title\0") == "title"
    assert decode_text(None) is None


def test_proc_info_reads_name_and_exe_from_proc() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        # the kernel renames the child at exec, just after vfork lets the parent go on
        me = proc_info(os.getpid())[0]
        wait_for(lambda: proc_info(sleeper.pid)[0] != me, 5, "sleep to exec")
        name, exe = proc_info(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait(5)
    assert name == "sleep"
    assert exe is not None and os.path.realpath(exe) == os.path.realpath(
        shutil.which("sleep") or ""
    )
    assert proc_info(2**22 + 12345) == (None, None)


def test_select_backend_x11_does_no_os_work() -> None:
    backend = select_backend("x11", display=":999")  # no such display: nothing is opened
    assert backend.name == "x11"
    assert isinstance(backend.input, X11Input)


# -- input ---------------------------------------------------------------------------


@pytest.mark.x11
def test_input_emits_raw_events_and_stops_fast_without_further_input(bare: XServer) -> None:
    got: list[tuple[Any, ...]] = []
    source = X11Input(bare.display)
    source.start(got.append, mouse=True, keyboard=True)
    try:
        bare.xdotool("mousemove", "11", "22", "click", "2", "click", "9", "click", "6")
        bare.xdotool("key", "shift+w", "Return")
        wait_for(lambda: len(got) >= 12, 5, "12 raw events")
    finally:
        start = time.monotonic()
        source.stop(2.0)
        took = time.monotonic() - start
    assert took < 1.0
    assert all(isinstance(e[1], int) for e in got)
    assert [e[:1] + e[2:] for e in got] == [
        (RAW_MOVE, 11, 22),
        (RAW_BUTTON, 11, 22, "middle", True),
        (RAW_BUTTON, 11, 22, "middle", False),
        (RAW_BUTTON, 11, 22, "x2", True),
        (RAW_BUTTON, 11, 22, "x2", False),
        (RAW_SCROLL, 11, 22, -1, 0),
        (RAW_KEY, True, None, "shift", 0xFFE1),
        (RAW_KEY, True, "W", None, 0x57),
        (RAW_KEY, False, None, "shift", 0xFFE1),
        (RAW_KEY, False, "W", None, 0x57),  # released after shift: same identity as press
        (RAW_KEY, True, None, "enter", 0xFF0D),
        (RAW_KEY, False, None, "enter", 0xFF0D),
    ]
    times = [e[1] for e in got]
    assert times == sorted(times)


@pytest.mark.x11
def test_input_only_mouse_when_keyboard_is_off(bare: XServer) -> None:
    got: list[tuple[Any, ...]] = []
    source = X11Input(bare.display)
    source.start(got.append, mouse=True, keyboard=False)
    try:
        bare.xdotool("key", "a")
        bare.xdotool("mousemove", "5", "6")
        wait_for(lambda: got, 5, "the move")
    finally:
        source.stop(2.0)
    assert [e[0] for e in got] == [RAW_MOVE]


# python-xlib leaks its socket when a connection attempt fails (not our code)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_input_on_unreachable_display_is_a_reported_error() -> None:
    with pytest.raises(EnvironmentUnsupported, match="cannot connect to X display :987"):
        X11Input(":987").start(lambda e: None, mouse=True, keyboard=True)


@pytest.mark.x11
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_listener_that_fails_to_start_says_why(
    bare: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start error carries the listener's own failure (it was only logged at debug)."""
    monkeypatch.setenv("DISPLAY", bare.display)  # pynput needs it at import
    import pynput._util.xorg as pynput_xorg
    import Xlib.error

    real = pynput_xorg.Xlib.display.Display

    def refuse_listeners(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("deskcorder-x11-"):
            raise Xlib.error.DisplayConnectionError(bare.display, "refused by the test")
        return real(*args, **kwargs)  # start()'s own RECORD check

    monkeypatch.setattr(pynput_xorg.Xlib.display, "Display", refuse_listeners)
    with pytest.raises(EnvironmentUnsupported, match=r"the listener failed: .*refused by the test"):
        X11Input(bare.display).start(lambda e: None, mouse=True, keyboard=False)


# -- window probe --------------------------------------------------------------------


@pytest.mark.x11
def test_no_window_manager_means_one_unknown_focus(bare: XServer) -> None:
    bare.tk_window("probe-bare", x=10, y=10, width=200, height=100)
    got: list[tuple[Any, ...]] = []
    probe = X11WindowProbe(bare.display)
    probe.start(got.append)
    try:
        assert probe.active_window() is None
        visible = probe.visible_windows()
        # without EWMH, top-level windows come from the tree: the Tk window is there
        titles = [w.title for w in visible]
        assert "probe-bare" in titles
    finally:
        probe.stop(2.0)
    assert [e[0] for e in got] == [RAW_FOCUS]
    assert got[0][2] is None


@pytest.mark.x11
def test_focus_and_title_changes_are_emitted(wm: XServer) -> None:
    one = wm.tk_window("probe-one", x=0, y=0, width=300, height=200)
    two = wm.tk_window("probe-two", x=400, y=0, width=300, height=200)
    wm.activate("probe-one")
    got: list[tuple[Any, ...]] = []
    probe = X11WindowProbe(wm.display)
    probe.start(got.append)
    try:
        wait_for(lambda: got, 5, "initial focus")
        wm.activate("probe-two")
        wait_for(lambda: len(got) >= 2, 5, "focus change")
        assert two.stdin is not None
        two.stdin.write("probe-two ✓ renamed\n".encode())
        two.stdin.flush()
        wait_for(lambda: any(e[0] == RAW_TITLE for e in got), 5, "title change")
        active = probe.active_window()
        visible = probe.visible_windows()
    finally:
        start = time.monotonic()
        probe.stop(2.0)
        assert time.monotonic() - start < 0.5
    first, second, third = got[:3]
    assert first[0] == RAW_FOCUS and first[2].title == "probe-one"
    assert first[2].pid == one.pid and first[2].app == "Tk"
    assert first[2].width == 300 and first[2].height == 200
    assert second[0] == RAW_FOCUS and second[2].title == "probe-two"
    assert second[2].pid == two.pid
    assert third == (RAW_TITLE, third[1], second[2].id, "probe-two ✓ renamed")
    assert active is not None and active.title == "probe-two ✓ renamed"
    assert active.pid == two.pid
    # stacking order: bottom to top, the active window last
    assert [w.title for w in visible][-2:] == ["probe-one", "probe-two ✓ renamed"]
    assert visible[-1].x is not None and visible[-1].x >= 399
    # masks cover the decorations: the visible rectangle encloses the client area
    client, outer = active, visible[-1]
    assert client.x is not None and client.y is not None and outer.y is not None
    assert outer.x <= client.x and outer.y < client.y  # openbox's title bar is on top
    assert outer.width is not None and client.width is not None
    assert outer.height is not None and client.height is not None
    assert outer.x + outer.width >= client.x + client.width
    assert outer.y + outer.height >= client.y + client.height


# -- doctor, layout, screens -----------------------------------------------------------


def checks_by_name(display: str, **env: str) -> dict[str, Any]:
    from deskcorder.platform.linux.doctor import doctor_checks

    return {c.name: c for c in doctor_checks(display, env={"DISPLAY": display, **env})}


@pytest.mark.x11
def test_doctor_with_window_manager(wm: XServer) -> None:
    checks = checks_by_name(wm.display)
    assert checks["display"].ok and checks["record-extension"].ok
    assert checks["xres-extension"].ok and checks["window-manager"].ok
    assert "wayland" not in checks
    assert not checks["lock-detection"].required


@pytest.mark.x11
def test_doctor_without_window_manager_warns(bare: XServer) -> None:
    checks = checks_by_name(bare.display)
    assert checks["display"].ok
    assert not checks["window-manager"].ok and not checks["window-manager"].required


# python-xlib leaks its socket when a connection attempt fails (not our code)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_doctor_refuses_wayland_and_unreachable_display() -> None:
    from deskcorder.platform.linux.doctor import doctor_checks

    checks = doctor_checks(":987", env={"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":987"})
    by = {c.name: c for c in checks}
    assert not by["wayland"].ok and by["wayland"].required
    assert "XWayland" in by["wayland"].detail
    assert not by["display"].ok


@pytest.mark.x11
def test_layout_and_screens(wm: XServer) -> None:
    backend = select_backend("x11", display=wm.display)
    assert backend.screens() == [(0, 0, 1920, 1080)]
    layout = backend.keyboard_layout()
    assert layout is None or layout.startswith("us")


@pytest.mark.x11
# python-xlib leaks the socket of a failed connection attempt (in stop) to the GC
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_losing_the_x_server_is_one_gap_record_not_a_crash() -> None:
    got: list[tuple[Any, ...]] = []
    with xserver(wm=False) as x:
        source = X11Input(x.display)
        source.start(got.append, mouse=True, keyboard=True)
        x.xdotool("mousemove", "1", "2")
        wait_for(lambda: got, 5, "a move")
        x.procs[0].kill()  # the X server dies under the running hooks
        wait_for(lambda: any(e[0] == RAW_MARK for e in got), 5, "the gap record")
        source.stop(1.0)
        del source
        gc.collect()  # python-xlib's failed reconnect attempt leaves a socket to the GC
    marks = [e for e in got if e[0] == RAW_MARK]
    assert [m[2:] for m in marks] == [("gap", {"cause": "input_hook_lost"})]


@pytest.mark.x11
def test_window_of_a_remote_client_has_no_local_pid(wm: XServer) -> None:
    wm.tk_window("probe-remote", x=0, y=300, width=200, height=100)
    wid = wm.activate("probe-remote")
    probe = X11WindowProbe(wm.display)
    try:
        local = probe.active_window()
        wm.run("xprop", "-id", wid, "-f", "WM_CLIENT_MACHINE", "8s", "-set",
               "WM_CLIENT_MACHINE", "elsewhere.example")  # fmt: skip
        remote = probe.active_window()
    finally:
        probe.stop(1.0)
    assert local is not None and local.pid is not None and local.process
    assert remote is not None and remote.title == "probe-remote"
    assert remote.pid is None and remote.process is None and remote.exe is None
