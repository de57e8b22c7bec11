"""Secure input: is the user typing into a password field right now?

One probe per OS, each behind small functions that tests replace and that
import on every OS (the OS libraries are loaded only when a probe starts):

* Linux: AT-SPI. A listener on ``object:state-changed:focused`` remembers
  whether the focused accessible has the role ``password text``. Needs the
  accessibility bus (at-spi2-core) and PyGObject with the Atspi typelib
  (gir1.2-atspi-2.0); applications must expose accessibility (GTK and Qt do
  when the bus runs; Chromium/Electron with ``--force-renderer-accessibility``).
* macOS: ``IsSecureEventInputEnabled()`` (Carbon), which every secure text
  field and terminal "Secure Keyboard Entry" turn on.
* Windows: UI Automation ``IsPassword`` of the focused element (via
  ``comtypes`` when installed) and, for classic Win32 edit controls, the
  ``ES_PASSWORD`` style of the focused window (plain ctypes).

:class:`SecureInputMonitor` polls (or listens) on its own thread and keeps the
latest answer, so the pipeline only reads a cached value. ``current()``
returns True (password field), False (not), or None (unknown: treated as
secure by the key filter only after the probe has failed; a probe that never
existed means "no probe", see :func:`available_probe`). Where no probe is
available, ``keystrokes = "full"`` degrades to ``"redacted"`` and
``deskcorder doctor`` says so.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Probe = Callable[[], bool | None]


# ---------------------------------------------------------------------------
# macOS
# ---------------------------------------------------------------------------


def _mac_secure_event_input() -> bool | None:
    carbon = ctypes.cdll.LoadLibrary(
        "/System/Library/Frameworks/Carbon.framework/Carbon"
    )  # cached by ctypes
    fn = carbon.IsSecureEventInputEnabled
    fn.restype = ctypes.c_bool
    return bool(fn())


# ---------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------

_ES_PASSWORD = 0x0020
_GWL_STYLE = -16


def _win_focused_hwnd() -> int | None:
    class GUITHREADINFO(ctypes.Structure):
        _fields_ = [
            ("cbSize", ctypes.c_uint32),
            ("flags", ctypes.c_uint32),
            ("hwndActive", ctypes.c_void_p),
            ("hwndFocus", ctypes.c_void_p),
            ("hwndCapture", ctypes.c_void_p),
            ("hwndMenuOwner", ctypes.c_void_p),
            ("hwndMoveSize", ctypes.c_void_p),
            ("hwndCaret", ctypes.c_void_p),
            ("rcCaret", ctypes.c_long * 4),
        ]

    user32: Any = ctypes.windll.user32  # type: ignore[attr-defined,unused-ignore]
    info = GUITHREADINFO()
    info.cbSize = ctypes.sizeof(GUITHREADINFO)
    if not user32.GetGUIThreadInfo(0, ctypes.byref(info)):
        return None
    return int(info.hwndFocus) if info.hwndFocus else None


def _win_es_password(hwnd: int) -> bool:
    user32: Any = ctypes.windll.user32  # type: ignore[attr-defined,unused-ignore]
    return bool(user32.GetWindowLongW(hwnd, _GWL_STYLE) & _ES_PASSWORD)


def _win_uia_is_password() -> bool | None:
    try:
        import comtypes.client  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    import comtypes  # type: ignore[import-not-found,unused-ignore]

    comtypes.CoInitialize()  # per thread (monitor and pipeline threads both ask)
    comtypes.client.GetModule("UIAutomationCore.dll")
    from comtypes.gen import UIAutomationClient as uia  # type: ignore[import-not-found,unused-ignore]

    automation = comtypes.client.CreateObject(uia.CUIAutomation, interface=uia.IUIAutomation)
    element = automation.GetFocusedElement()
    return bool(element.CurrentIsPassword) if element is not None else None


def _win_secure_input() -> bool | None:
    hwnd = _win_focused_hwnd()
    if hwnd is not None and _win_es_password(hwnd):
        return True
    return _win_uia_is_password()


# ---------------------------------------------------------------------------
# Linux (AT-SPI)
# ---------------------------------------------------------------------------


def _atspi_module() -> Any:
    """The ``Atspi`` GObject module, or None when PyGObject/typelib is missing."""
    try:
        import gi  # type: ignore[import-not-found,unused-ignore]

        gi.require_version("Atspi", "2.0")
        from gi.repository import Atspi  # type: ignore[import-not-found,unused-ignore]
    except (ImportError, ValueError):
        return None
    return Atspi


def _atspi_bus_running(atspi: Any) -> bool:
    try:
        desktop = atspi.get_desktop(0)
        return desktop is not None and desktop.get_child_count() >= 0
    except Exception:
        return False


class _AtspiListener:
    """Runs the AT-SPI main loop on its own thread; remembers the focused role."""

    def __init__(self, atspi: Any) -> None:
        self.atspi = atspi
        self.secure: bool | None = False
        self._thread: threading.Thread | None = None

    def _on_event(self, event: Any) -> None:
        try:
            if event.detail1:
                role = event.source.get_role()
                self.secure = role == self.atspi.Role.PASSWORD_TEXT
        except Exception:
            self.secure = None

    def start(self) -> None:
        listener = self.atspi.EventListener.new(self._on_event)
        listener.register("object:state-changed:focused")
        self._listener = listener
        self._thread = threading.Thread(
            target=self.atspi.event_main, name="deskcorder-atspi", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        try:
            self.atspi.event_quit()
        except Exception:
            log.debug("atspi event_quit failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)


# ---------------------------------------------------------------------------
# selection and the cached monitor
# ---------------------------------------------------------------------------


def available_probe(platform: str | None = None) -> tuple[str, Probe | None]:
    """(description, poll function) for this OS; the function is None when there is none.

    For Linux the poll function reads the AT-SPI listener's cached answer.
    """
    platform = platform or sys.platform
    if platform == "darwin":
        return "macOS secure event input", _mac_secure_event_input
    if platform.startswith("win"):
        return "Windows UI Automation IsPassword / ES_PASSWORD", _win_secure_input
    atspi = _atspi_module()
    if atspi is None:
        return "AT-SPI unavailable (PyGObject with Atspi typelib not installed)", None
    if not _atspi_bus_running(atspi):
        return "AT-SPI unavailable (accessibility bus not running)", None
    listener = _AtspiListener(atspi)
    return "AT-SPI password-text role", _listener_probe(listener)


def _listener_probe(listener: _AtspiListener) -> Probe:
    started = False

    def probe() -> bool | None:
        nonlocal started
        if not started:
            started = True
            listener.start()
        return listener.secure

    return probe


class SecureInputMonitor:
    """Polls ``probe`` every ``interval`` seconds on its own thread; ``current()`` is cheap.

    A probe that raises makes ``current()`` return None (the key filter treats
    that as secure: fail closed).
    """

    def __init__(self, probe: Probe, interval: float = 0.1) -> None:
        self.probe = probe
        self.interval = interval
        self._value: bool | None = None  # unknown until the first poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def poll(self) -> bool | None:
        try:
            value = self.probe()
        except Exception:
            self.failures += 1
            value = None
        self._value = value
        return value

    def current(self) -> bool | None:
        return self._value

    def start(self) -> None:
        self.poll()
        self._thread = threading.Thread(
            target=self._run, name="deskcorder-secure-input", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def effective_keystrokes(mode: str, have_probe: bool) -> str:
    """``full`` needs a secure-input probe; without one it degrades to ``redacted``."""
    if mode == "full" and not have_probe:
        return "redacted"
    return mode
