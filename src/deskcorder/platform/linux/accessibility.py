"""AT-SPI on Linux: the focused element (password field?) and the element under a click.

The agent's side of :mod:`deskcorder.platform.linux.atspi_helper`: that helper
process makes every libatspi call; this module starts it, sends it requests and
waits for each answer at most :data:`CALL_LIMIT_S` (then the answer is unknown).
A helper that answers no request for :data:`STUCK_S` is killed and started again
(after a back-off); one that exits is started again on the next request. The
agent process itself never loads libatspi.

Needs the accessibility bus (at-spi2-core) on the session bus and PyGObject with
the Atspi typelib (Debian: python3-gi, gir1.2-atspi-2.0); applications must
expose accessibility (GTK 3 and Qt do when the bus runs; Chromium and Electron
with ``--force-renderer-accessibility``; Firefox with ``GNOME_ACCESSIBILITY=1``;
Java with the ATK wrapper). ``doctor`` says which of these hold
(:func:`doctor_checks`).

Importable on every OS; the OS calls are small functions that tests replace.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from deskcorder.events import WindowInfo
from deskcorder.platform.base import Accessibility, Check, Element, Found

log = logging.getLogger(__name__)

CALL_LIMIT_S = 0.3  # longest wait for one answer (the helper's own call timeout is 0.25 s)
STUCK_S = 3.0  # a helper that answered no request for this long is killed
RESTART_BACKOFF_S = (1.0, 60.0)
HELPER_MODULE = "deskcorder.platform.linux.atspi_helper"

# how to make applications expose accessibility (doctor; docs/privacy.md)
ENABLE_HINTS = (
    "GTK 3: on by default (older setups: GTK_MODULES=gail:atk-bridge); "
    "Qt 5/6: QT_LINUX_ACCESSIBILITY_ALWAYS_ON=1; "
    "Chromium/Chrome: --force-renderer-accessibility; "
    "Electron apps: --force-renderer-accessibility or ACCESSIBILITY_ENABLED=1; "
    "Firefox/Thunderbird: GNOME_ACCESSIBILITY=1; "
    "Java: install libatk-wrapper-java and set "
    "assistive_technologies=org.GNOME.Accessibility.AtkWrapper in accessibility.properties; "
    "desktop-wide: gsettings set org.gnome.desktop.interface toolkit-accessibility true"
)


def session_bus_available(env: dict[str, str] | None = None) -> bool:
    """Is there a D-Bus session bus to ask (without autolaunching one)?"""
    env = dict(os.environ) if env is None else env
    if env.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime = env.get("XDG_RUNTIME_DIR")
    return runtime is not None and Path(runtime, "bus").exists()


def _gi_atspi_installed() -> str | None:
    """None when PyGObject with the Atspi typelib can be loaded, else why not."""
    try:
        import gi  # type: ignore[import-not-found,unused-ignore]

        gi.require_version("Atspi", "2.0")
        gi.require_version("Gio", "2.0")
    except (ImportError, ValueError) as exc:
        return str(exc)
    return None


def _session_call(name: str, path: str, iface: str, method: str) -> Any:
    """Call a session bus method (1 s timeout) and return its first result."""
    from gi.repository import Gio  # type: ignore[import-not-found,unused-ignore]

    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    reply = bus.call_sync(name, path, iface, method, None, None, Gio.DBusCallFlags.NONE, 1000)
    return reply.unpack()[0]


def _a11y_bus_address() -> str | None:
    try:
        address = _session_call("org.a11y.Bus", "/org/a11y/bus", "org.a11y.Bus", "GetAddress")
    except Exception:
        return None
    return str(address) or None


def _a11y_status() -> dict[str, bool]:
    """org.a11y.Status IsEnabled / ScreenReaderEnabled (empty when unreadable)."""
    try:
        from gi.repository import GLib  # type: ignore[import-not-found,unused-ignore]

        out = {}
        for prop in ("IsEnabled", "ScreenReaderEnabled"):
            value = _session_get("org.a11y.Bus", "/org/a11y/bus", "org.a11y.Status", prop, GLib)
            out[prop] = bool(value)
        return out
    except Exception:
        return {}


def _session_get(name: str, path: str, iface: str, prop: str, glib: Any) -> Any:
    from gi.repository import Gio  # type: ignore[import-not-found,unused-ignore]

    bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    reply = bus.call_sync(
        name,
        path,
        "org.freedesktop.DBus.Properties",
        "Get",
        glib.Variant("(ss)", (iface, prop)),
        None,
        Gio.DBusCallFlags.NONE,
        1000,
    )
    return reply.unpack()[0]


def _toolkit_accessibility_setting() -> bool | None:
    """gsettings org.gnome.desktop.interface toolkit-accessibility (None: no schema)."""
    try:
        from gi.repository import Gio  # type: ignore[import-not-found,unused-ignore]

        source = Gio.SettingsSchemaSource.get_default()
        schema = "org.gnome.desktop.interface"
        if source is None or source.lookup(schema, True) is None:
            return None
        return bool(Gio.Settings.new(schema).get_boolean("toolkit-accessibility"))
    except Exception:
        return None


def _why_unavailable(env: dict[str, str] | None = None) -> str | None:
    """None when the accessibility bus can be used, else why not (one line)."""
    missing = _gi_atspi_installed()
    if missing is not None:
        return (
            f"PyGObject with the Atspi typelib is not installed ({missing}): "
            "apt install python3-gi gir1.2-atspi-2.0"
        )
    if not session_bus_available(env):
        return "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS unset)"
    if _a11y_bus_address() is None:
        return "the accessibility bus is not running (at-spi2-core: at-spi-bus-launcher)"
    return None


class AtspiAccessibility:
    """``Accessibility`` for Linux: requests to the helper process, answers within limits."""

    poll_s: float | None = None  # the helper reports focus changes

    def __init__(
        self,
        command: list[str] | None = None,
        *,
        call_limit_s: float = CALL_LIMIT_S,
        stuck_s: float = STUCK_S,
        backoff_s: tuple[float, float] = RESTART_BACKOFF_S,
    ) -> None:
        self.command = command or [sys.executable, "-m", HELPER_MODULE]
        self.call_limit_s = call_limit_s
        self.stuck_s = stuck_s
        self.backoff_s = backoff_s
        self._changed: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._pending: dict[int, list[Any]] = {}  # id -> [Event, reply]
        self._unanswered_since: float | None = None  # oldest request sent since the last reply
        self._restart_at = 0.0
        self._backoff = backoff_s[0]
        self._stopped = False
        self.restarts = 0
        self.timeouts = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, changed: Callable[[], None]) -> None:
        self._changed = changed
        with self._lock:
            self._spawn()

    def stop(self, timeout: float) -> None:
        with self._lock:
            self._stopped = True
            proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc, timeout)

    def _spawn(self) -> None:
        """Start the helper (caller holds the lock)."""
        try:
            proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # libatspi's warnings go to the agent's log
                close_fds=True,
            )
        except OSError as exc:
            log.warning("cannot start the AT-SPI helper: %s", exc)
            self._schedule_restart()
            return
        self._proc = proc
        self._unanswered_since = None
        assert proc.stdout is not None
        threading.Thread(
            target=self._read, args=(proc, proc.stdout), name="deskcorder-atspi", daemon=True
        ).start()

    def _schedule_restart(self) -> None:
        self._restart_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_s[1])

    def _read(self, proc: subprocess.Popen[bytes], stdout: IO[bytes]) -> None:
        for raw in stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if "ev" in msg:
                self._changed()
            elif "id" in msg:
                with self._lock:
                    self._unanswered_since = None  # it answers (in order): not stuck
                    slot = self._pending.pop(msg["id"], None)
                if slot is not None:
                    slot[1] = msg
                    slot[0].set()
            elif "ready" in msg:
                self._backoff = self.backoff_s[0]
                self._changed()  # ask again: it may know the focused element now
            elif "fatal" in msg:
                log.warning("AT-SPI helper: %s", msg["fatal"])
        proc.wait()
        with self._lock:
            if self._proc is proc:  # it died on its own: start another one later
                self._proc = None
                if not self._stopped:
                    log.warning("the AT-SPI helper exited (%s)", proc.returncode)
                    self._schedule_restart()
            for slot in self._pending.values():
                slot[0].set()
            self._pending.clear()
            for stream in (proc.stdin, stdout):  # the process is gone: so are its pipes
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()

    # -- requests ---------------------------------------------------------------------------
    def _request(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """Send one request; its reply, or None after CALL_LIMIT_S (or without a helper)."""
        now = time.monotonic()
        event = threading.Event()
        slot: list[Any] = [event, None]
        with self._lock:
            if self._stopped:
                return None
            proc = self._proc
            if proc is None:
                if now < self._restart_at:
                    return None
                self._spawn()
                proc = self._proc
                if proc is None:
                    return None
            self._next_id += 1
            rid = self._next_id
            self._pending[rid] = slot
            if self._unanswered_since is None:
                self._unanswered_since = now
            line = json.dumps({**msg, "id": rid, "deadline": now + self.call_limit_s}) + "\n"
            try:
                assert proc.stdin is not None
                proc.stdin.write(line.encode())
                proc.stdin.flush()
            except (OSError, ValueError):
                self._pending.pop(rid, None)
                return None
        if not event.wait(self.call_limit_s):
            self.timeouts += 1
            with self._lock:
                self._pending.pop(rid, None)
                since = self._unanswered_since
                if self._proc is proc and since is not None and now - since > self.stuck_s:
                    log.warning("the AT-SPI helper stopped answering: restarting it")
                    self.restarts += 1
                    self._proc = None
                    self._schedule_restart()
                    threading.Thread(target=_end, args=(proc, 1.0), daemon=True).start()
            return None
        reply: dict[str, Any] | None = slot[1]
        return reply

    def focused(self, window: WindowInfo | None, detail: bool) -> Element | None:
        if window is None or not window.pid:
            return None
        reply = self._request({"op": "focused", "pid": window.pid, "detail": detail})
        return _element(reply)

    def element_at(self, x: int, y: int, window: WindowInfo) -> Element | None:
        if not window.pid or not _inside(x, y, window):
            return None
        return _element(self._request({"op": "at", "pid": window.pid, "x": x, "y": y}))

    def status(self) -> dict[str, object]:
        return {"helper": self._proc.pid if self._proc else None, "restarts": self.restarts}


def _inside(x: int, y: int, win: WindowInfo) -> bool:
    """Is the point inside the window (when its geometry is known)?"""
    if win.width is None or win.height is None:
        return True
    left, top = win.x or 0, win.y or 0
    return left <= x < left + win.width and top <= y < top + win.height


def _element(reply: dict[str, Any] | None) -> Element | None:
    """The helper's element (a dict) as an Element; None for no element or a bad reply."""
    if reply is None:
        return None
    data = reply.get("el")
    if not isinstance(data, dict):
        return None
    try:
        rect = data.get("rect")
        return Element(
            role=str(data["role"]),
            name=str(data["name"]) if data.get("name") else None,
            rect=(int(rect[0]), int(rect[1]), int(rect[2]), int(rect[3])) if rect else None,
            path=tuple(str(r) for r in data.get("path") or ()),
            password=bool(data.get("password")),
            unverified=bool(data.get("unverified")),
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _end(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Close the helper's stdin (it exits), kill it if it does not within ``timeout``."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(max(0.05, timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def find_accessibility() -> Found[Accessibility]:
    """``Backend.accessibility`` of the X11 backend."""
    why = _why_unavailable()
    if why is not None:
        return Found(f"AT-SPI unavailable: {why}")
    return Found("AT-SPI (accessibility bus)", AtspiAccessibility())


def doctor_checks(env: dict[str, str] | None = None) -> list[Check]:
    """The accessibility lines of ``deskcorder doctor`` (warnings, never failures)."""
    why = _why_unavailable(env)
    if why is not None:
        return [
            Check(
                "accessibility bus",
                False,
                f"{why}; keystrokes = full records key kinds only and no elements are recorded",
                required=False,
            )
        ]
    checks = [Check("accessibility bus", True, "AT-SPI accessibility bus reachable", False)]
    status = _a11y_status()
    setting = _toolkit_accessibility_setting()
    enabled = bool(status.get("IsEnabled") or status.get("ScreenReaderEnabled") or setting)
    if enabled:
        detail = "toolkit accessibility is on (org.a11y.Status IsEnabled or gsettings)"
    else:
        detail = (
            "toolkit accessibility is off: GTK apps are still accessible, others may not be "
            "(their typed text is then recorded as key kinds only)"
        )
    checks.append(
        Check("toolkit accessibility", enabled, f"{detail}. To enable: {ENABLE_HINTS}", False)
    )
    return checks
