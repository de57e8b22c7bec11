"""Secure input on Linux: AT-SPI says whether the focused accessible is a password field.

A listener on ``object:state-changed:focused`` remembers whether the focused
accessible has the role ``password text``. Needs the accessibility bus
(at-spi2-core) and PyGObject with the Atspi typelib (gir1.2-atspi-2.0);
applications must expose accessibility (GTK and Qt do when the bus runs;
Chromium/Electron with ``--force-renderer-accessibility``).

PyGObject is imported only by :func:`find_probe` (never at import time); the
small functions below are what tests replace.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from deskcorder.platform.base import Found, SecureProbe

log = logging.getLogger(__name__)


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


def _listener_probe(listener: _AtspiListener) -> SecureProbe:
    """The probe reads the listener's cached answer; the first call starts it."""
    started = False

    def probe() -> bool | None:
        nonlocal started
        if not started:
            started = True
            listener.start()
        return listener.secure

    return probe


def find_probe() -> Found[SecureProbe]:
    """``Backend.secure_input`` of the X11 backend."""
    atspi = _atspi_module()
    if atspi is None:
        return Found("AT-SPI unavailable (PyGObject with Atspi typelib not installed)")
    if not _atspi_bus_running(atspi):
        return Found("AT-SPI unavailable (accessibility bus not running)")
    return Found("AT-SPI password-text role", _listener_probe(_AtspiListener(atspi)))
