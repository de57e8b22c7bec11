"""Global mouse and keyboard capture through pynput's public listeners.

Used by the Windows and macOS backends (X11 has its own, leaner hooks in
``platform/linux/input.py``). Callbacks timestamp, copy scalars, ``emit`` and
return. A key release carries the identity recorded at its press (keyed by the
virtual key code), so press and release match even when Shift went up first.
pynput is imported in :meth:`PynputInput.start`; this module imports anywhere.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from deskcorder.errors import EnvironmentUnsupported
from deskcorder.events import RAW_BUTTON, RAW_KEY, RAW_MOVE, RAW_SCROLL
from deskcorder.platform import clock
from deskcorder.platform.base import Emit

log = logging.getLogger(__name__)

KeyIdentity = tuple[str | None, str | None, int | None]  # (char, name, vk)


def key_identity(key: Any) -> KeyIdentity:
    """(char, name, vk) of a pynput ``Key`` or ``KeyCode`` (or None)."""
    if key is None:
        return (None, None, None)
    value = getattr(key, "value", None)
    if value is not None and hasattr(key, "name"):  # a pynput Key enum member
        return (None, str(key.name), getattr(value, "vk", None))
    return (getattr(key, "char", None), None, getattr(key, "vk", None))


def button_label(button: Any) -> str:
    name = getattr(button, "name", None)
    if isinstance(name, str) and name and name != "unknown":
        return name
    value = getattr(button, "value", None)
    return f"button{value}" if value is not None else "unknown"


class PynputInput:
    """InputSource over pynput's mouse and keyboard listeners."""

    def __init__(self) -> None:
        self._listeners: list[Any] = []

    def start(self, emit: Emit, *, mouse: bool, keyboard: bool) -> None:
        try:
            from pynput import keyboard as pkeyboard
            from pynput import mouse as pmouse
        except Exception as exc:
            raise EnvironmentUnsupported(f"cannot load pynput for input capture: {exc}") from exc
        monotonic_ns = clock.now_ns  # the session clock (counts sleep)
        down: dict[object, KeyIdentity] = {}

        def on_move(x: float, y: float, injected: bool = False) -> None:
            emit((RAW_MOVE, monotonic_ns(), int(x), int(y)))

        def on_click(
            x: float, y: float, button: Any, pressed: bool, injected: bool = False
        ) -> None:
            emit((RAW_BUTTON, monotonic_ns(), int(x), int(y), button_label(button), pressed))

        def on_scroll(x: float, y: float, dx: float, dy: float, injected: bool = False) -> None:
            emit((RAW_SCROLL, monotonic_ns(), int(x), int(y), int(dx), int(dy)))

        def on_press(key: Any, injected: bool = False) -> None:
            t = monotonic_ns()
            ident = key_identity(key)
            down[ident[2] if ident[2] is not None else ident] = ident
            emit((RAW_KEY, t, True, ident[0], ident[1], ident[2]))

        def on_release(key: Any, injected: bool = False) -> None:
            t = monotonic_ns()
            ident = key_identity(key)
            pressed = down.pop(ident[2] if ident[2] is not None else ident, None)
            if pressed is not None:
                ident = pressed
            emit((RAW_KEY, t, False, ident[0], ident[1], ident[2]))

        try:
            if mouse:
                self._listeners.append(
                    pmouse.Listener(on_move=on_move, on_click=on_click, on_scroll=on_scroll)
                )
            if keyboard:
                self._listeners.append(pkeyboard.Listener(on_press=on_press, on_release=on_release))
            for listener in self._listeners:
                listener.daemon = True
                listener.start()
            for listener in self._listeners:
                listener.wait()
                if not listener.is_alive():
                    raise EnvironmentUnsupported("an input hook could not be installed")
        except EnvironmentUnsupported:
            self.stop(1.0)
            raise
        except Exception as exc:
            self.stop(1.0)
            raise EnvironmentUnsupported(f"cannot install input hooks: {exc}") from exc

    def stop(self, timeout: float) -> None:
        listeners, self._listeners = self._listeners, []
        if not listeners:
            return
        deadline = time.monotonic() + timeout
        stopper = threading.Thread(
            target=_stop_all, args=(listeners,), name="deskcorder-input-stop", daemon=True
        )
        stopper.start()
        stopper.join(max(0.0, deadline - time.monotonic()))
        for listener in listeners:
            threading.Thread.join(listener, max(0.0, deadline - time.monotonic()))
        if any(listener.is_alive() for listener in listeners):
            log.warning("input listeners still running after %.1fs", timeout)


def _stop_all(listeners: list[Any]) -> None:
    for listener in listeners:
        try:
            listener.stop()
        except Exception:
            log.debug("pynput stop failed", exc_info=True)
