"""Global mouse and keyboard capture on X11 through pynput's RECORD listeners.

The hooks subclass pynput's X11 listeners and replace ``_handle_message`` (the
method pynput calls with each parsed X event on its listener thread): they
timestamp, copy scalars into a raw-event tuple, ``emit`` it and return. That
skips pynput's per-event object building for moves and clicks, and gives us
the X keycode so a key release carries the same identity as its press (X
reports the release of ``W`` as ``w`` when Shift went up first).

pynput and Xlib are imported inside :meth:`X11Input.start` (pynput needs a
display at import time); this module imports on every OS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from array import array
from typing import Any

from deskcorder.errors import EnvironmentUnsupported
from deskcorder.events import RAW_BUTTON, RAW_KEY, RAW_MARK, RAW_MOVE, RAW_SCROLL
from deskcorder.platform import clock
from deskcorder.platform.base import Emit
from deskcorder.platform.pynput_input import KeyIdentity, key_identity

log = logging.getLogger(__name__)

# X core button numbers -> record names; 4..7 are scroll "buttons".
BUTTON_NAMES = {1: "left", 2: "middle", 3: "right", 8: "x1", 9: "x2"}
# button -> (dx, dy); dy > 0 is up, dx > 0 is right (same as pynput on every OS)
SCROLL_BUTTONS = {4: (0, 1), 5: (0, -1), 6: (-1, 0), 7: (1, 0)}

START_TIMEOUT_S = 5.0
KEY_CACHE_MAX = 4096  # (keycode, modifier state) pairs whose key identity is memoised
# Benchmarks: when set, hook durations (int64 ns, native order) are written at stop to
# this file (mouse) and to the same name + ".keys" (keyboard). Read once in start();
# the hooks themselves never look at it.
TIMING_ENV = "DESKCORDER_HOOK_TIMING"


def button_name(detail: int) -> str:
    return BUTTON_NAMES.get(detail) or f"button{detail}"


def wayland_session(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or bool(env.get("WAYLAND_DISPLAY"))


def require_x11(env: dict[str, str] | None = None) -> str:
    """The DISPLAY to use, or raise :class:`EnvironmentUnsupported`."""
    env = dict(os.environ) if env is None else env
    if wayland_session(env):
        raise EnvironmentUnsupported(
            "this is a Wayland session: global input capture is impossible there "
            "(only XWayland windows would be seen); log in to an X11 session to record"
        )
    display = env.get("DISPLAY", "")
    if not display:
        raise EnvironmentUnsupported("no X display: DISPLAY is not set")
    return display


def _timed(cls: type[Any], sink: array[int]) -> type[Any]:
    """A subclass whose hook also appends its own duration (ns) to ``sink`` (benchmarks)."""
    inner = cls._handle_message
    clock = time.perf_counter_ns

    def _handle_message(self: Any, display: Any, event: Any, injected: bool) -> None:
        t0 = clock()
        inner(self, display, event, injected)
        sink.append(clock() - t0)

    return type(cls.__name__, (cls,), {"_handle_message": _handle_message})


def check_record(display: str) -> None:
    """Raise :class:`EnvironmentUnsupported` unless ``display`` is reachable and has RECORD."""
    try:
        from Xlib import display as xdisplay

        conn = xdisplay.Display(display)
    except Exception as exc:
        raise EnvironmentUnsupported(f"cannot connect to X display {display}: {exc}") from exc
    try:
        if not conn.has_extension("RECORD"):
            raise EnvironmentUnsupported(
                f"X display {display} lacks the RECORD extension: input cannot be captured"
            )
    finally:
        conn.close()


def _make_listener_classes(emit: Emit) -> tuple[type[Any], type[Any]]:
    """Build the two listener classes bound to ``emit`` (imports pynput)."""
    from pynput.keyboard._xorg import Listener as KeyboardListener
    from pynput.mouse._xorg import Listener as MouseListener

    live = _live_mixin(emit)
    return _mouse_hook(emit, live, MouseListener), _keyboard_hook(emit, live, KeyboardListener)


def _live_mixin(emit: Emit) -> type[Any]:
    """What both hooks share: going live on StartOfData, and one gap when they die."""
    monotonic_ns = clock.now_ns  # the session clock (counts sleep)
    lost: list[bool] = []  # one gap record when the hooks die on their own

    class LiveMixin:
        """Sets ``live`` when the X server's first RECORD reply (StartOfData) arrives.

        pynput marks a listener ready *before* it enables the RECORD context;
        waiting for StartOfData means no event after ``start()`` can be missed.
        """

        live: threading.Event
        stopping = False  # set by X11Input.stop before it ends the RECORD stream
        error: BaseException | None = None  # why the listener ended, if it failed
        ended = False  # _run has returned (``live`` is set then too, to wake start())

        def _run(self) -> None:
            try:
                super()._run()  # type: ignore[misc]
            except Exception as exc:  # the X connection broke (server gone, logout)
                self.error = exc
                log.debug("RECORD listener ended with an error", exc_info=True)
                for name in ("_display_record", "_display_stop"):
                    conn = getattr(self, name, None)
                    sock = getattr(getattr(conn, "display", None), "socket", None)
                    if sock is not None:
                        sock.close()  # Xlib leaves a broken connection's socket open
            if not self.stopping and not lost:
                lost.append(True)
                emit((RAW_MARK, monotonic_ns(), "gap", {"cause": "input_hook_lost"}))
            self.ended = True
            self.live.set()  # a start() still waiting learns at once that it failed

        def _handler(self, events: Any) -> Any:
            if not self.live.is_set():
                self.live.set()
            return super()._handler(events)  # type: ignore[misc]

    return LiveMixin


def _mouse_hook(emit: Emit, live: type[Any], listener: type[Any]) -> type[Any]:
    """The mouse listener: one tuple per move, click or scroll step, nothing else."""
    from Xlib import X

    button_press = X.ButtonPress
    button_release = X.ButtonRelease
    scroll_buttons = SCROLL_BUTTONS
    monotonic_ns = clock.now_ns  # the session clock (counts sleep)

    class MouseHook(live, listener):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.live = threading.Event()

        def _handle_message(self, display: Any, event: Any, injected: bool) -> None:
            t = monotonic_ns()
            etype = event.type
            if etype == button_press:
                scroll = scroll_buttons.get(event.detail)
                if scroll is not None:
                    emit((RAW_SCROLL, t, event.root_x, event.root_y, scroll[0], scroll[1]))
                else:
                    emit(
                        (RAW_BUTTON, t, event.root_x, event.root_y, button_name(event.detail), True)
                    )
            elif etype == button_release:
                if event.detail not in scroll_buttons:
                    emit(
                        (
                            RAW_BUTTON,
                            t,
                            event.root_x,
                            event.root_y,
                            button_name(event.detail),
                            False,
                        )
                    )
            else:
                emit((RAW_MOVE, t, event.root_x, event.root_y))

    return MouseHook


def _keyboard_hook(emit: Emit, live: type[Any], listener: type[Any]) -> type[Any]:
    """The keyboard listener: key identity memoised per (keycode, modifiers)."""
    from pynput._util.xorg import numlock_mask, shift_to_index
    from Xlib import X

    key_press = X.KeyPress
    monotonic_ns = clock.now_ns  # the session clock (counts sleep)

    class KeyboardHook(live, listener):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.live = threading.Event()
            self._down: dict[int, KeyIdentity] = {}  # keycode -> identity at its press
            self._cache: dict[tuple[int, int], KeyIdentity] = {}

        def _initialize(self, display: Any) -> None:
            super()._initialize(display)
            # pynput looks up (and caches) modifier masks with an X round trip on the
            # first key event; do it now, on the listener thread, before any hook runs
            shift_to_index(display, 0)
            numlock_mask(display)

        def _identity(self, display: Any, event: Any) -> KeyIdentity:
            """pynput's keycode+state -> key translation, memoised (it costs ~25 us)."""
            cache_key = (event.detail, event.state)
            ident = self._cache.get(cache_key)
            if ident is None:
                try:
                    key = self._event_to_key(display, event)
                except Exception:  # an unmappable keycode is still a key event
                    key = None
                ident = key_identity(key)
                if len(self._cache) >= KEY_CACHE_MAX:
                    self._cache.clear()
                self._cache[cache_key] = ident
            return ident

        def _handle_message(self, display: Any, event: Any, injected: bool) -> None:
            t = monotonic_ns()
            keycode = event.detail
            if event.type == key_press:
                ident = self._identity(display, event)
                self._down[keycode] = ident
            else:
                down = self._down.pop(keycode, None)
                ident = down if down is not None else self._identity(display, event)
            emit((RAW_KEY, t, event.type == key_press, ident[0], ident[1], ident[2]))

    return KeyboardHook


def _not_live(listener: Any) -> str:
    """Why a RECORD listener did not go live (for the start error)."""
    if listener.error is not None:
        return f"the listener failed: {listener.error!r}"
    if listener.ended:
        return "the listener ended"
    return f"no reply in {START_TIMEOUT_S:g} s"


class X11Input:
    """InputSource for X11. ``stop(timeout)`` returns within ``timeout`` seconds."""

    def __init__(self, display: str | None = None) -> None:
        self._display = display
        self._listeners: list[Any] = []
        self._timing: tuple[str, array[int], array[int]] | None = None

    def start(self, emit: Emit, *, mouse: bool, keyboard: bool) -> None:
        display = self._display or require_x11()
        check_record(display)
        # pynput's listeners open their connections with Xlib's default: $DISPLAY
        os.environ["DISPLAY"] = display
        try:
            mouse_cls, keyboard_cls = _make_listener_classes(emit)
            timing_file = os.environ.get(TIMING_ENV)
            if timing_file:  # benchmark only: decided once here, never in the hook
                self._timing = (timing_file, array("q"), array("q"))
                mouse_cls = _timed(mouse_cls, self._timing[1])
                keyboard_cls = _timed(keyboard_cls, self._timing[2])
        except ImportError as exc:
            raise EnvironmentUnsupported(f"cannot use X input capture: {exc}") from exc
        try:
            if mouse:
                self._listeners.append(mouse_cls())
            if keyboard:
                self._listeners.append(keyboard_cls())
            for listener in self._listeners:
                listener.daemon = True
                listener.name = f"deskcorder-x11-{type(listener).__name__}"
                listener.start()
            for listener in self._listeners:
                if not listener.live.wait(START_TIMEOUT_S) or listener.ended:
                    raise EnvironmentUnsupported(
                        f"the X server did not start the RECORD stream ({_not_live(listener)})"
                    )
        except EnvironmentUnsupported:
            self.stop(1.0)
            raise
        except Exception as exc:
            self.stop(1.0)
            raise EnvironmentUnsupported(f"cannot start X input capture: {exc}") from exc
        log.debug("X11 input listeners started (mouse=%s keyboard=%s)", mouse, keyboard)

    def stop(self, timeout: float) -> None:
        """Stop the listeners without waiting for another input event.

        pynput's own ``stop()`` only takes effect when the next event arrives
        (its RECORD context is disabled on the blocked connection). We also
        disable each context from a fresh connection, which ends the RECORD
        stream at once, and run the pynput stops on a daemon thread with a
        bounded join, so this returns within ``timeout`` whatever happens.
        """
        listeners, self._listeners = self._listeners, []
        if not listeners:
            return
        for listener in listeners:
            listener.stopping = True
        deadline = time.monotonic() + timeout
        stopper = threading.Thread(
            target=_stop_listeners,
            args=(listeners, self._display),
            name="deskcorder-x11-input-stop",
            daemon=True,
        )
        stopper.start()
        stopper.join(max(0.0, deadline - time.monotonic()))
        for listener in listeners:
            # Thread.join: pynput's join() also waits on its exception queue.
            threading.Thread.join(listener, max(0.0, deadline - time.monotonic()))
        alive = [listener.name for listener in listeners if listener.is_alive()]
        if alive:
            log.warning("X11 input listeners still running after %.1fs: %s", timeout, alive)
        if self._timing is not None:
            path, mouse_ns, key_ns = self._timing
            self._timing = None
            with open(path, "wb") as fh:
                mouse_ns.tofile(fh)
            with open(path + ".keys", "wb") as fh:
                key_ns.tofile(fh)


def _stop_listeners(listeners: list[Any], display_name: str | None) -> None:
    from Xlib import display as xdisplay

    try:
        conn = xdisplay.Display(display_name)
    except Exception:
        conn = None
        log.debug("cannot open a display to disable RECORD contexts", exc_info=True)
    for listener in listeners:
        context = getattr(listener, "_context", None)
        if conn is not None and context is not None:
            try:
                conn.record_disable_context(context)
                conn.sync()
            except Exception:  # the context may already be gone
                log.debug("record_disable_context failed", exc_info=True)
    if conn is not None:
        conn.close()
    for listener in listeners:
        try:
            listener.stop()
        except Exception:
            log.debug("pynput stop failed", exc_info=True)
