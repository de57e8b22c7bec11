"""The Windows backend: pynput low-level hooks, WinEvent window context, WTS lock state.

All Win32 calls go through :class:`deskcorder.platform.windows.win32.Win32`,
created on first use; tests pass a fake ``api`` factory. Importable on any OS.
"""

from __future__ import annotations

import logging
import ntpath
import threading
from collections.abc import Callable
from typing import Any

from deskcorder.events import RAW_FOCUS, RAW_SESSION, RAW_TITLE, WindowInfo
from deskcorder.platform import clock
from deskcorder.platform.base import Backend, Check, Emit
from deskcorder.platform.power import battery
from deskcorder.platform.pynput_input import PynputInput
from deskcorder.platform.screens import mss_screens
from deskcorder.platform.windows import win32
from deskcorder.platform.windows.accessibility import find_accessibility
from deskcorder.platform.windows.network import CostProbe

log = logging.getLogger(__name__)

ApiFactory = Callable[[], Any]

# WTS_* session change codes -> (locked, active); None = unchanged
SESSION_CODES: dict[int, tuple[bool | None, bool | None]] = {
    0x1: (None, True),  # console connect
    0x2: (None, False),  # console disconnect
    0x3: (None, True),  # remote connect
    0x4: (None, False),  # remote disconnect
    win32.WTS_SESSION_LOCK: (True, None),
    win32.WTS_SESSION_UNLOCK: (False, None),
}


def window_info(api: Any, hwnd: int) -> WindowInfo:
    pid = api.pid(hwnd)
    exe = api.exe(pid) if pid else None
    process = ntpath.basename(exe) if exe else None
    app = ntpath.splitext(process)[0] if process else api.class_name(hwnd) or None
    rect = api.rect(hwnd)
    x = y = w = h = None
    if rect is not None:
        x, y, w, h = rect
    return WindowInfo(
        id=hwnd,
        title=api.title(hwnd),
        app=app,
        pid=pid,
        process=process,
        exe=exe,
        x=x,
        y=y,
        width=w,
        height=h,
    )


class _ApiHolder:
    def __init__(self, factory: ApiFactory) -> None:
        self._factory = factory
        self._api: Any = None
        self._lock = threading.Lock()

    def api(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = self._factory()
            return self._api


class WindowsWindowProbe(_ApiHolder):
    """Foreground window via WinEvents (EVENT_SYSTEM_FOREGROUND, EVENT_OBJECT_NAMECHANGE)."""

    def __init__(self, api: ApiFactory = win32.load) -> None:
        super().__init__(api)
        self._thread: threading.Thread | None = None
        self._tid: int | None = None
        self._ready = threading.Event()
        self._current: WindowInfo | None = None

    def start(self, emit: Emit) -> None:
        api = self.api()
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._run, args=(api, emit), name="deskcorder-win-windows", daemon=True
        )
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self, timeout: float) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._tid is not None:
            self.api().quit(self._tid)
        thread.join(timeout)

    def active_window(self) -> WindowInfo | None:
        api = self.api()
        hwnd = api.foreground()
        return window_info(api, hwnd) if hwnd else None

    def visible_windows(self) -> list[WindowInfo]:
        api = self.api()
        return [window_info(api, hwnd) for hwnd in reversed(api.top_level_windows())]

    def _run(self, api: Any, emit: Emit) -> None:
        self._tid = api.thread_id()

        def focus(hwnd: int) -> None:
            if not hwnd:
                if self._current is not None:
                    self._current = None
                    emit((RAW_FOCUS, clock.now_ns(), None))
                return
            if self._current is not None and self._current.id == hwnd:
                return
            self._current = window_info(api, hwnd)
            emit((RAW_FOCUS, clock.now_ns(), self._current))

        def on_event(event: int, hwnd: int, obj: int) -> None:
            try:
                if event == win32.EVENT_SYSTEM_FOREGROUND:
                    focus(hwnd)
                elif event == win32.EVENT_OBJECT_NAMECHANGE and obj == win32.OBJID_WINDOW:
                    cur = self._current
                    if cur is not None and hwnd == cur.id:
                        title = api.title(hwnd)
                        if title != cur.title:
                            self._current = WindowInfo(
                                id=cur.id,
                                title=title,
                                app=cur.app,
                                pid=cur.pid,
                                process=cur.process,
                                exe=cur.exe,
                                x=cur.x,
                                y=cur.y,
                                width=cur.width,
                                height=cur.height,
                            )
                            emit((RAW_TITLE, clock.now_ns(), hwnd, title))
            except Exception:
                log.exception("window event handling failed")

        try:
            hwnd = api.foreground()
            if hwnd:
                focus(hwnd)
            else:
                emit((RAW_FOCUS, clock.now_ns(), None))
        finally:
            self._ready.set()
        api.run_win_events(on_event)


class WtsSessionProbe(_ApiHolder):
    """Lock/unlock from WTS session notifications; initial state from the input desktop."""

    def __init__(self, api: ApiFactory = win32.load) -> None:
        super().__init__(api)
        self._thread: threading.Thread | None = None
        self._tid: int | None = None

    def available(self) -> bool:
        try:
            self.api()
        except Exception:
            return False
        return True

    def start(self, emit: Emit) -> None:
        if not self.available():
            return
        api = self.api()
        emit((RAW_SESSION, clock.now_ns(), api.input_desktop_locked(), None))
        started = threading.Event()

        def on_change(code: int) -> None:
            change = SESSION_CODES.get(code)
            if change is not None:
                emit((RAW_SESSION, clock.now_ns(), change[0], change[1]))

        def run() -> None:
            self._tid = api.thread_id()
            started.set()
            if not api.run_session_events(on_change):
                log.warning("WTS session notifications unavailable; lock changes not seen")

        self._thread = threading.Thread(target=run, name="deskcorder-win-session", daemon=True)
        self._thread.start()
        started.wait(5.0)

    def stop(self, timeout: float) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._tid is not None:
            self.api().quit(self._tid)
        thread.join(timeout)


def doctor_checks(api: ApiFactory = win32.load) -> list[Check]:
    try:
        win = api()
    except Exception as exc:
        return [Check("windows", False, str(exc))]
    checks = [
        Check(
            "interactive-session",
            win.input_hook_ok(),
            "running in an interactive desktop session"
            if win.input_hook_ok()
            else "no interactive window station: run deskcorder in the user's session, "
            "not as a service",
        ),
        Check(
            "foreground-window",
            bool(win.foreground()),
            "foreground window readable" if win.foreground() else "no foreground window now",
            required=False,
        ),
        Check(
            "elevated-windows",
            True,
            "input to elevated (administrator) windows is invisible to a non-elevated agent "
            "(UIPI); those events are not recorded",
            required=False,
        ),
        Check("lock-detection", True, "WTS session notifications (lock/unlock)", required=False),
    ]
    return checks


def create_backend(**options: Any) -> Backend:
    return Backend(
        name="windows",
        input=PynputInput(),
        windows=WindowsWindowProbe(),
        session=WtsSessionProbe(),
        doctor=doctor_checks,
        accessibility=find_accessibility,
        screens=mss_screens,
        power=battery,
        network=CostProbe(),
    )
