"""Windows and macOS backends' logic with their OS-call classes replaced by fakes.

The real calls run in CI on windows and macos runners only as far as importing
and creating the backends; these tests pin the event logic everywhere.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

import pytest

from deskcorder.errors import EnvironmentUnsupported
from deskcorder.events import RAW_FOCUS, RAW_SESSION, RAW_TITLE
from deskcorder.platform import select_backend
from deskcorder.platform.macos import MacSessionProbe, MacWindowProbe
from deskcorder.platform.macos import doctor_checks as mac_doctor
from deskcorder.platform.windows import WindowsWindowProbe, WtsSessionProbe, win32
from deskcorder.platform.windows import doctor_checks as win_doctor
from tests.xserver import wait_for


class FakeWin32:
    def __init__(self) -> None:
        self.fg = 0x10
        self.titles = {0x10: "Inbox - Outlook", 0x20: "main.py - Code"}
        self.pids = {0x10: 100, 0x20: 200}
        self.exes = {100: r"C:\Program Files\Outlook\OUTLOOK.EXE", 200: r"C:\VS\Code.exe"}
        self.events: queue.Queue[tuple[int, int, int] | None] = queue.Queue()
        self.quits: list[int] = []

    def foreground(self) -> int:
        return self.fg

    def title(self, hwnd: int) -> str:
        return self.titles[hwnd]

    def class_name(self, hwnd: int) -> str:
        return "Wnd"

    def pid(self, hwnd: int) -> int | None:
        return self.pids.get(hwnd)

    def exe(self, pid: int) -> str | None:
        return self.exes.get(pid)

    def rect(self, hwnd: int) -> tuple[int, int, int, int]:
        return (hwnd, 0, 800, 600)

    def top_level_windows(self) -> list[int]:
        return [0x20, 0x10]  # topmost first

    def thread_id(self) -> int:
        return threading.get_ident()

    def quit(self, tid: int) -> None:
        self.quits.append(tid)
        self.events.put(None)

    def run_win_events(self, callback: Any) -> None:
        while (item := self.events.get()) is not None:
            callback(*item)

    def input_desktop_locked(self) -> bool:
        return False

    def run_session_events(self, callback: Any) -> bool:
        while (item := self.events.get()) is not None:
            callback(item[0])
        return True

    def input_hook_ok(self) -> bool:
        return True


def test_windows_probe_focus_and_title_events() -> None:
    fake = FakeWin32()
    got: list[tuple[Any, ...]] = []
    probe = WindowsWindowProbe(api=lambda: fake)
    probe.start(got.append)
    try:
        fake.fg = 0x20
        fake.events.put((win32.EVENT_SYSTEM_FOREGROUND, 0x20, 0))
        wait_for(lambda: len(got) >= 2, 5, "focus change")
        fake.titles[0x20] = "other.py - Code"
        fake.events.put((win32.EVENT_OBJECT_NAMECHANGE, 0x20, 5))  # not the window: ignored
        fake.events.put((win32.EVENT_OBJECT_NAMECHANGE, 0x10, 0))  # not focused: ignored
        fake.events.put((win32.EVENT_OBJECT_NAMECHANGE, 0x20, win32.OBJID_WINDOW))
        wait_for(lambda: len(got) >= 3, 5, "three events")
    finally:
        probe.stop(1.0)
    assert fake.quits
    assert [e[0] for e in got] == [RAW_FOCUS, RAW_FOCUS, RAW_TITLE]
    first = got[0][2]
    assert (first.title, first.app, first.process, first.pid) == (
        "Inbox - Outlook", "OUTLOOK", "OUTLOOK.EXE", 100,
    )  # fmt: skip
    assert first.exe == r"C:\Program Files\Outlook\OUTLOOK.EXE"
    assert got[1][2].title == "main.py - Code" and got[1][2].app == "Code"
    assert got[2][2:] == (0x20, "other.py - Code")
    assert [w.id for w in probe.visible_windows()] == [0x10, 0x20]  # topmost last
    active = probe.active_window()
    assert active is not None and active.id == 0x20


def test_windows_session_probe_maps_wts_codes() -> None:
    fake = FakeWin32()
    got: list[tuple[Any, ...]] = []
    probe = WtsSessionProbe(api=lambda: fake)
    assert probe.available()
    probe.start(got.append)
    try:
        for code in (win32.WTS_SESSION_LOCK, 0x5, win32.WTS_SESSION_UNLOCK, 0x2):
            fake.events.put((code, 0, 0))
        wait_for(lambda: len(got) >= 4, 5, "four session events")
    finally:
        probe.stop(1.0)
    assert [e[0] for e in got] == [RAW_SESSION] * 4
    assert [e[2:] for e in got] == [(False, None), (True, None), (False, None), (None, False)]


def test_windows_doctor_and_unavailability_off_windows() -> None:
    checks = {c.name: c for c in win_doctor(api=FakeWin32)}
    assert checks["interactive-session"].ok and checks["interactive-session"].required
    if sys.platform != "win32":
        with pytest.raises(EnvironmentUnsupported, match="only runs on Windows"):
            win32.load()
        assert not WtsSessionProbe().available()
        assert [c.ok for c in win_doctor()] == [False]


class FakeMac:
    def __init__(self) -> None:
        self.front: dict[str, Any] | None = {
            "pid": 7, "name": "Safari", "bundle": "com.apple.Safari",
            "exe": "/Applications/Safari.app/Contents/MacOS/Safari",
        }  # fmt: skip
        self.wins = [
            {"id": 70, "pid": 7, "owner": "Safari", "title": "Docs", "rect": (0, 25, 900, 700)},
            {"id": 80, "pid": 8, "owner": "Mail", "title": "Inbox", "rect": (50, 50, 700, 500)},
        ]
        self.state: tuple[bool | None, bool | None] = (False, True)

    def frontmost_app(self) -> dict[str, Any] | None:
        return self.front

    def windows(self) -> list[dict[str, Any]]:
        return self.wins

    def session(self) -> tuple[bool | None, bool | None]:
        return self.state

    def accessibility_trusted(self) -> bool:
        return False

    def input_monitoring_allowed(self) -> bool | None:
        return True

    def screen_recording_allowed(self) -> bool | None:
        return None

    def secure_input_enabled(self) -> bool | None:
        return True


def test_macos_probe_samples_focus_and_title() -> None:
    fake = FakeMac()
    got: list[tuple[Any, ...]] = []
    probe = MacWindowProbe(api=lambda: fake, poll_s=0.01)
    probe.start(got.append)
    try:
        wait_for(lambda: got, 5, "initial focus")
        fake.wins[0] = {**fake.wins[0], "title": "Docs 2"}
        wait_for(lambda: len(got) >= 2, 5, "title change")
        fake.front = {"pid": 8, "name": "Mail", "bundle": "com.apple.mail", "exe": None}
        wait_for(lambda: len(got) >= 3, 5, "focus change")
    finally:
        probe.stop(1.0)
    assert [e[0] for e in got[:3]] == [RAW_FOCUS, RAW_TITLE, RAW_FOCUS]
    first = got[0][2]
    assert (first.id, first.title, first.app, first.process, first.pid) == (
        70, "Docs", "com.apple.Safari", "Safari", 7,
    )  # fmt: skip
    assert got[1][2:] == (70, "Docs 2")
    assert got[2][2].id == 80 and got[2][2].app == "com.apple.mail"
    assert [w.id for w in probe.visible_windows()] == [80, 70]


def test_macos_session_probe_and_doctor() -> None:
    fake = FakeMac()
    got: list[tuple[Any, ...]] = []
    probe = MacSessionProbe(api=lambda: fake, poll_s=0.01)
    assert probe.available()
    probe.start(got.append)
    try:
        fake.state = (True, True)
        wait_for(lambda: len(got) >= 2, 5, "lock")
    finally:
        probe.stop(1.0)
    assert [e[2:] for e in got[:2]] == [(False, True), (True, True)]
    checks = {c.name: c for c in mac_doctor(api=FakeMac)}
    assert not checks["accessibility"].ok and "System Settings" in checks["accessibility"].detail
    assert checks["input-monitoring"].ok
    assert checks["screen-recording"].ok and not checks["screen-recording"].required


@pytest.mark.parametrize("name", ["windows", "macos"])
def test_backends_create_anywhere_without_os_work(name: str) -> None:
    backend = select_backend(name)
    assert backend.name == name
