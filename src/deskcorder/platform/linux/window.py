"""Window context on X11 (python-xlib): focused window, its title, app and process.

A thread of its own holds one X connection, selects PropertyChange events on
the root window (``_NET_ACTIVE_WINDOW``) and on the active window (its title),
and blocks in ``select()`` on that connection plus a stop pipe: no polling.
``active_window()`` and ``visible_windows()`` may be called from any thread;
they use a second connection behind a lock.

Xlib is imported lazily; this module imports on every OS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import socket
import threading
import time
from typing import Any

from deskcorder.events import RAW_FOCUS, RAW_TITLE, WindowInfo
from deskcorder.platform import clock
from deskcorder.platform.base import Emit

log = logging.getLogger(__name__)

NONE_SETTLE_S = 0.15  # how long "no active window" must last before it is reported


def decode_text(value: Any) -> str | None:
    """Decode an X text property. STRING is often UTF-8 in practice: try that first."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    data = bytes(value).rstrip(b"\0")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def proc_info(pid: int, proc_root: str = "/proc") -> tuple[str | None, str | None]:
    """(process name, executable path) of ``pid`` from /proc; None where unknown."""
    name: str | None = None
    exe: str | None = None
    try:
        with open(f"{proc_root}/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            name = fh.read().strip() or None
    except OSError:
        pass
    with contextlib.suppress(OSError):
        exe = os.readlink(f"{proc_root}/{pid}/exe")
    return name, exe


class _X:
    """Atoms and helpers on one X connection (not thread-safe; one per thread)."""

    def __init__(self, display_name: str | None) -> None:
        from Xlib import X, Xatom, display

        self.X = X
        self.Xatom = Xatom
        self.d = display.Display(display_name)
        self.d.set_error_handler(lambda *args: None)  # windows vanish; that is normal
        self.root = self.d.screen().root
        atom = self.d.intern_atom
        self.NET_ACTIVE_WINDOW = atom("_NET_ACTIVE_WINDOW")
        self.NET_WM_NAME = atom("_NET_WM_NAME")
        self.NET_WM_PID = atom("_NET_WM_PID")
        self.NET_SUPPORTED = atom("_NET_SUPPORTED")
        self.NET_CLIENT_LIST_STACKING = atom("_NET_CLIENT_LIST_STACKING")
        self.NET_CLIENT_LIST = atom("_NET_CLIENT_LIST")
        self.NET_FRAME_EXTENTS = atom("_NET_FRAME_EXTENTS")
        self.UTF8_STRING = atom("UTF8_STRING")
        self.WM_NAME = Xatom.WM_NAME
        self.WM_CLASS = Xatom.WM_CLASS
        self.has_xres = self.d.has_extension("X-Resource")
        self._res_ok: bool | None = None

    def close(self) -> None:
        try:
            self.d.close()
        except Exception:
            log.debug("closing X connection failed", exc_info=True)

    def window(self, wid: int) -> Any:
        return self.d.create_resource_object("window", wid)

    def prop(self, win: Any, atom: int, type_: int | None = None) -> Any:
        try:
            value = win.get_full_property(
                atom, type_ if type_ is not None else self.X.AnyPropertyType
            )
        except Exception:  # BadWindow etc.
            return None
        return None if value is None else value.value

    def supports_active_window(self) -> bool:
        supported = self.prop(self.root, self.NET_SUPPORTED)
        return supported is not None and self.NET_ACTIVE_WINDOW in list(supported)

    def active_id(self) -> int | None:
        value = self.prop(self.root, self.NET_ACTIVE_WINDOW)
        if value is None or len(value) == 0:
            return None
        wid = int(value[0])
        return wid or None

    def title(self, win: Any) -> str | None:
        title = decode_text(self.prop(win, self.NET_WM_NAME, self.UTF8_STRING))
        if title is None:
            title = decode_text(self.prop(win, self.WM_NAME))
        return title

    def app(self, win: Any) -> str | None:
        raw = self.prop(win, self.WM_CLASS)
        if raw is None:
            return None
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        parts = [p for p in data.split(b"\0") if p]
        return decode_text(parts[-1]) if parts else None  # the class; parts[0] is the instance

    def pid(self, win: Any) -> int | None:
        """The window's process on this machine (None for remote clients, e.g. ssh -X)."""
        machine = decode_text(self.prop(win, self.Xatom.WM_CLIENT_MACHINE))
        if machine and machine != socket.gethostname():
            return None  # its _NET_WM_PID is a pid on another host
        value = self.prop(win, self.NET_WM_PID)
        if value is not None and len(value) > 0 and int(value[0]) > 0:
            return int(value[0])
        return self.xres_pid(win.id)

    def xres_pid(self, wid: int) -> int | None:
        if not self.has_xres:
            return None
        try:
            from Xlib.ext import res

            reply = self.d.res_query_client_ids([{"client": wid, "mask": res.LocalClientPIDMask}])
        except Exception:
            return None
        for ident in reply.ids:
            if ident.spec.mask & res.LocalClientPIDMask and ident.value:
                return int(ident.value[0])
        return None

    def geometry(self, win: Any) -> tuple[int, int, int, int] | None:
        try:
            geo = win.get_geometry()
            pos = win.translate_coords(self.root, 0, 0)
        except Exception:
            return None
        return (-int(pos.x), -int(pos.y), int(geo.width), int(geo.height))

    def info(self, wid: int, *, with_geometry: bool = True) -> WindowInfo:
        win = self.window(wid)
        pid = self.pid(win)
        process, exe = proc_info(pid) if pid else (None, None)
        geo = self.geometry(win) if with_geometry else None
        x = y = w = h = None
        if geo is not None:
            x, y, w, h = geo
        return WindowInfo(
            id=wid,
            title=self.title(win),
            app=self.app(win),
            pid=pid,
            process=process,
            exe=exe,
            x=x,
            y=y,
            width=w,
            height=h,
        )

    def visible(self) -> list[WindowInfo]:
        """Mapped top-level windows, bottom to top (so topmost last).

        Their rectangles include the window manager's decorations
        (``_NET_FRAME_EXTENTS``), so a mask over one also hides its title bar.
        """
        ids: list[int] = []
        stacking = self.prop(self.root, self.NET_CLIENT_LIST_STACKING)
        if stacking is not None and len(stacking) > 0:
            ids = [int(w) for w in stacking]
        else:
            try:
                ids = [int(w.id) for w in self.root.query_tree().children]
            except Exception:
                ids = []
        out: list[WindowInfo] = []
        for wid in ids:
            try:
                attrs = self.window(wid).get_attributes()
            except Exception:
                continue
            if attrs.map_state != self.X.IsViewable:
                continue
            info = self.info(wid)
            extents = self.prop(self.window(wid), self.NET_FRAME_EXTENTS)
            if extents is not None and len(extents) == 4 and info.width is not None:
                left, right, top, bottom = (int(v) for v in extents)
                info = dataclasses.replace(
                    info,
                    x=(info.x or 0) - left,
                    y=(info.y or 0) - top,
                    width=info.width + left + right,
                    height=(info.height or 0) + top + bottom,
                )
            out.append(info)
        return out


class X11WindowProbe:
    """WindowProbe for X11 through EWMH properties."""

    def __init__(self, display: str | None = None) -> None:
        self._display = display
        self._thread: threading.Thread | None = None
        self._stop_r = -1
        self._stop_w = -1
        self._query: _X | None = None
        self._query_lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- WindowProbe ---------------------------------------------------------

    def start(self, emit: Emit) -> None:
        from deskcorder.platform.linux.input import require_x11

        self._display = self._display or require_x11()
        conn = _X(self._display)  # raises if the display is unreachable
        self._stop_r, self._stop_w = os.pipe()
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._run, args=(conn, emit), name="deskcorder-x11-windows", daemon=True
        )
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self, timeout: float) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._stop_w, b"x")
            thread.join(timeout)
            if thread.is_alive():
                log.warning("window probe thread still running after %.1fs", timeout)
            else:
                for fd in (self._stop_r, self._stop_w):
                    os.close(fd)
            self._stop_r = self._stop_w = -1
        with self._query_lock:
            if self._query is not None:
                self._query.close()
                self._query = None

    def active_window(self) -> WindowInfo | None:
        with self._query_lock:
            conn = self._query_conn()
            if conn is None:
                return None
            wid = conn.active_id()
            return conn.info(wid) if wid else None

    def visible_windows(self) -> list[WindowInfo]:
        with self._query_lock:
            conn = self._query_conn()
            return [] if conn is None else conn.visible()

    # -- internals -----------------------------------------------------------

    def _query_conn(self) -> _X | None:
        if self._query is None:
            try:
                self._query = _X(self._display)
            except Exception:
                log.warning("cannot open X display %r for window queries", self._display)
                return None
        return self._query

    def _run(self, x: _X, emit: Emit) -> None:
        try:
            self._loop(x, emit)
        except Exception:  # the X server went away, most likely
            log.exception("window probe stopped")
            emit((RAW_FOCUS, clock.now_ns(), None))
        finally:
            self._ready.set()
            x.close()

    def _loop(self, x: _X, emit: Emit) -> None:
        X = x.X
        x.root.change_attributes(event_mask=X.PropertyChangeMask)
        watched: Any = None  # the active window whose title we follow
        current: WindowInfo | None = None
        unknown_sent = False

        none_due: float | None = None  # when a pending "no active window" becomes real

        def refresh_focus(settle: bool = True) -> None:
            nonlocal watched, current, unknown_sent, none_due
            wid = x.active_id() if x.supports_active_window() else None
            if wid is None:
                if current is not None and settle:
                    # window managers clear _NET_ACTIVE_WINDOW for a moment while
                    # switching; only a lasting "none" is reported
                    if none_due is None:
                        none_due = time.monotonic() + NONE_SETTLE_S
                    return
                none_due = None
                if current is not None or not unknown_sent:
                    emit((RAW_FOCUS, clock.now_ns(), None))
                    unknown_sent = True
                current = None
                return
            none_due = None
            if current is not None and current.id == wid:
                return
            if watched is not None and watched.id != wid:
                watched.change_attributes(event_mask=X.NoEventMask)
            watched = x.window(wid)
            watched.change_attributes(event_mask=X.PropertyChangeMask)
            current = x.info(wid)
            unknown_sent = False
            emit((RAW_FOCUS, clock.now_ns(), current))

        def refresh_title() -> None:
            nonlocal current
            if current is None or watched is None:
                return
            title = x.title(watched)
            if title is not None and title != current.title:
                current = WindowInfo(
                    id=current.id,
                    title=title,
                    app=current.app,
                    pid=current.pid,
                    process=current.process,
                    exe=current.exe,
                    x=current.x,
                    y=current.y,
                    width=current.width,
                    height=current.height,
                )
                emit((RAW_TITLE, clock.now_ns(), current.id, title))

        refresh_focus()
        self._ready.set()
        fd = x.d.fileno()
        title_atoms = (x.NET_WM_NAME, x.WM_NAME)
        root_atoms = (x.NET_ACTIVE_WINDOW, x.NET_SUPPORTED)
        while True:
            if x.d.pending_events() == 0:
                wait = None if none_due is None else max(0.0, none_due - time.monotonic())
                readable, _, _ = select.select([fd, self._stop_r], [], [], wait)
                if self._stop_r in readable:
                    return
                if not readable:  # the settle time of a "no active window" passed
                    refresh_focus(settle=False)
                    continue
            focus_changed = title_changed = False
            while x.d.pending_events():
                ev = x.d.next_event()
                if ev.type != X.PropertyNotify:
                    continue
                if ev.window.id == x.root.id:
                    if ev.atom in root_atoms:
                        focus_changed = True
                elif watched is not None and ev.window.id == watched.id and ev.atom in title_atoms:
                    title_changed = True
            if focus_changed:
                refresh_focus()
            if title_changed:
                refresh_title()
