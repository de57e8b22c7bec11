"""The macOS backend: pynput event taps, frontmost app + CGWindow context, lock state.

macOS offers no cheap notification for "the frontmost window's title changed"
without Accessibility observers, so window context and lock state are sampled
by one thread at a short interval (``poll_s``, default 0.25 s), cheap calls
only. All OS calls go through :class:`deskcorder.platform.macos.api.MacAPI`;
tests pass a fake ``api`` factory. Importable on any OS.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from deskcorder.events import RAW_FOCUS, RAW_SESSION, RAW_TITLE, WindowInfo
from deskcorder.platform import clock
from deskcorder.platform.base import Backend, Check, Emit
from deskcorder.platform.macos import api as macapi
from deskcorder.platform.macos.accessibility import find_accessibility
from deskcorder.platform.macos.network import PathProbe
from deskcorder.platform.power import battery
from deskcorder.platform.pynput_input import PynputInput
from deskcorder.platform.screens import mss_screens

log = logging.getLogger(__name__)

ApiFactory = Callable[[], Any]


def _info(app: dict[str, Any], win: dict[str, Any] | None) -> WindowInfo:
    rect = win["rect"] if win else None
    exe = app.get("exe")
    return WindowInfo(
        id=int(win["id"]) if win else -int(app["pid"]),  # no window: one id per app
        title=(str(win["title"]) if win and win.get("title") is not None else None),
        app=app.get("bundle") or app.get("name"),
        pid=app.get("pid"),
        process=os.path.basename(exe) if exe else app.get("name"),
        exe=exe,
        x=rect[0] if rect else None,
        y=rect[1] if rect else None,
        width=rect[2] if rect else None,
        height=rect[3] if rect else None,
    )


def front_window(api: Any) -> WindowInfo | None:
    app = api.frontmost_app()
    if app is None:
        return None
    mine = [w for w in api.windows() if w["pid"] == app["pid"]]
    return _info(app, mine[0] if mine else None)


class _Poller:
    def __init__(self, api: ApiFactory, poll_s: float, name: str) -> None:
        self._factory = api
        self._api: Any = None
        self._poll_s = poll_s
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def api(self) -> Any:
        if self._api is None:
            self._api = self._factory()
        return self._api

    def _start(self, emit: Emit) -> None:
        self._stop.clear()
        self._tick(emit)
        self._thread = threading.Thread(
            target=self._loop, args=(emit,), name=self._name, daemon=True
        )
        self._thread.start()

    def _loop(self, emit: Emit) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._tick(emit)
            except Exception:
                log.exception("%s: sampling failed", self._name)

    def _tick(self, emit: Emit) -> None:
        raise NotImplementedError

    def stop(self, timeout: float) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)


class MacWindowProbe(_Poller):
    def __init__(self, api: ApiFactory = macapi.load, poll_s: float = 0.25) -> None:
        super().__init__(api, poll_s, "deskcorder-mac-windows")
        self._current: WindowInfo | None = None
        self._sent = False

    def start(self, emit: Emit) -> None:
        self.api()
        self._current = None
        self._sent = False
        self._start(emit)

    def _tick(self, emit: Emit) -> None:
        now = front_window(self.api())
        cur = self._current
        if now is None:
            if cur is not None or not self._sent:
                emit((RAW_FOCUS, clock.now_ns(), None))
        elif cur is None or cur.id != now.id or cur.pid != now.pid:
            emit((RAW_FOCUS, clock.now_ns(), now))
        elif now.title != cur.title and now.title is not None:
            emit((RAW_TITLE, clock.now_ns(), now.id, now.title))
        self._current = now
        self._sent = True

    def active_window(self) -> WindowInfo | None:
        return front_window(self.api())

    def visible_windows(self) -> list[WindowInfo]:
        api = self.api()
        out = []
        for win in reversed(api.windows()):  # CGWindowList is front to back
            out.append(
                WindowInfo(
                    id=win["id"],
                    title=win.get("title"),
                    app=win.get("owner"),
                    pid=win["pid"],
                    x=win["rect"][0],
                    y=win["rect"][1],
                    width=win["rect"][2],
                    height=win["rect"][3],
                )
            )
        return out


class MacSessionProbe(_Poller):
    def __init__(self, api: ApiFactory = macapi.load, poll_s: float = 1.0) -> None:
        super().__init__(api, poll_s, "deskcorder-mac-session")
        self._last: tuple[bool | None, bool | None] | None = None

    def available(self) -> bool:
        try:
            return bool(self.api().session() != (None, None))
        except Exception:
            return False

    def start(self, emit: Emit) -> None:
        if not self.available():
            return
        self._last = None
        self._start(emit)

    def _tick(self, emit: Emit) -> None:
        state = self.api().session()
        if state != self._last:
            self._last = state
            emit((RAW_SESSION, clock.now_ns(), state[0], state[1]))


def doctor_checks(api: ApiFactory = macapi.load) -> list[Check]:
    try:
        mac = api()
    except Exception as exc:
        return [Check("macos", False, str(exc))]
    checks: list[Check] = []
    ax = mac.accessibility_trusted()
    checks.append(
        Check(
            "accessibility",
            ax,
            "Accessibility permission granted"
            if ax
            else "grant Accessibility to this program in System Settings > Privacy & "
            "Security > Accessibility (needed for keyboard capture)",
        )
    )
    im = mac.input_monitoring_allowed()
    checks.append(
        Check(
            "input-monitoring",
            im is not False,
            "Input Monitoring permission granted"
            if im
            else (
                "Input Monitoring status unknown"
                if im is None
                else "grant Input Monitoring in System Settings > Privacy & Security > "
                "Input Monitoring, then restart deskcorder"
            ),
        )
    )
    sr = mac.screen_recording_allowed()
    checks.append(
        Check(
            "screen-recording",
            sr is not False,
            "Screen Recording permission granted (window titles, screenshots)"
            if sr
            else (
                "Screen Recording status unknown"
                if sr is None
                else "no Screen Recording permission: window titles and screenshots are "
                "unavailable; grant it in System Settings > Privacy & Security"
            ),
            required=False,
        )
    )
    lock = mac.session() != (None, None)
    checks.append(
        Check(
            "lock-detection",
            lock,
            "screen lock read from CGSessionCopyCurrentDictionary"
            if lock
            else "screen lock state unknowable (no window server session)",
            required=False,
        )
    )
    return checks


def create_backend(**options: Any) -> Backend:
    return Backend(
        name="macos",
        input=PynputInput(),
        windows=MacWindowProbe(),
        session=MacSessionProbe(),
        doctor=doctor_checks,
        accessibility=find_accessibility,
        screens=mss_screens,
        power=battery,
        network=PathProbe(),
    )
