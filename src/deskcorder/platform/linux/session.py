"""Screen lock and session activity from systemd-logind over D-Bus.

Uses the ``gdbus`` command line tool (libglib2.0-bin, present on every desktop
that has logind) instead of a D-Bus library: reads are ``gdbus call``, change
notifications come from one long-lived ``gdbus monitor`` process whose output
lines wake a thread (no polling). Where there is no system bus, no logind or no
gdbus, :meth:`LogindSessionProbe.available` is False and nothing is emitted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable

from deskcorder.events import RAW_SESSION
from deskcorder.platform import clock
from deskcorder.platform.base import Emit

log = logging.getLogger(__name__)

LOGIN1 = "org.freedesktop.login1"
SESSION_IFACE = "org.freedesktop.login1.Session"

Runner = Callable[[list[str], float], "tuple[int, str]"]


def run_command(args: list[str], timeout: float) -> tuple[int, str]:
    """Run a short command; (returncode, stdout). Never raises."""
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, str(exc)
    return out.returncode, out.stdout


def parse_gdbus_bool(text: str) -> bool | None:
    """``(<true>,)`` -> True; anything else unparsable -> None."""
    m = re.search(r"<(true|false)>", text)
    return None if m is None else m.group(1) == "true"


def parse_gdbus_object_path(text: str) -> str | None:
    """``(objectpath '/org/freedesktop/login1/session/_32',)`` -> the path."""
    m = re.search(r"'(/org/freedesktop/login1/session/[^']+)'", text)
    return None if m is None else m.group(1)


class LogindSessionProbe:
    """SessionStateProbe for logind's ``LockedHint`` and ``Active``."""

    def __init__(self, run: Runner = run_command, gdbus: str | None = None) -> None:
        self._run = run
        self._gdbus = gdbus
        self._path: str | None = None
        self._resolved = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._monitor: subprocess.Popen[str] | None = None
        self._last: tuple[bool | None, bool | None] | None = None

    # -- discovery -----------------------------------------------------------

    def _tool(self) -> str | None:
        if self._gdbus is None:
            self._gdbus = shutil.which("gdbus") or ""
        return self._gdbus or None

    def _call(self, path: str, method: str, *args: str) -> tuple[int, str]:
        tool = self._tool()
        if tool is None:
            return 127, ""
        return self._run(
            [
                tool,
                "call",
                "--system",
                "--dest",
                LOGIN1,
                "--object-path",
                path,
                "--method",
                method,
                *args,
            ],
            3.0,
        )

    def session_path(self) -> str | None:
        """Object path of our logind session, or None when it cannot be found."""
        if self._resolved:
            return self._path
        self._resolved = True
        candidates: list[str] = []
        sid = os.environ.get("XDG_SESSION_ID")
        if sid:
            rc, out = self._call("/org/freedesktop/login1", f"{LOGIN1}.Manager.GetSession", sid)
            path = parse_gdbus_object_path(out) if rc == 0 else None
            if path:
                candidates.append(path)
        candidates.append("/org/freedesktop/login1/session/auto")
        rc, out = self._call(
            "/org/freedesktop/login1/user/self",
            "org.freedesktop.DBus.Properties.Get",
            f"{LOGIN1}.User",
            "Display",
        )
        path = parse_gdbus_object_path(out) if rc == 0 else None
        if path:
            candidates.append(path)
        for path in candidates:
            if self._get(path, "LockedHint") is not None:
                self._path = path
                break
        return self._path

    def _get(self, path: str, prop: str) -> bool | None:
        rc, out = self._call(path, "org.freedesktop.DBus.Properties.Get", SESSION_IFACE, prop)
        return parse_gdbus_bool(out) if rc == 0 else None

    def state(self) -> tuple[bool | None, bool | None]:
        """(locked, active) now; None for what cannot be read."""
        path = self.session_path()
        if path is None:
            return (None, None)
        return (self._get(path, "LockedHint"), self._get(path, "Active"))

    # -- SessionStateProbe ---------------------------------------------------

    def available(self) -> bool:
        return self.session_path() is not None

    def start(self, emit: Emit) -> None:
        self._stopping.clear()
        self._last = None
        if not self.available():
            log.info("screen lock state is unknowable here (no logind session over D-Bus)")
            return
        self._emit_if_changed(emit)
        self._thread = threading.Thread(
            target=self._watch, args=(emit,), name="deskcorder-logind", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        monitor = self._monitor
        if monitor is not None and monitor.poll() is None:
            monitor.terminate()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if monitor is not None:
            try:
                monitor.wait(max(0.1, timeout))
            except subprocess.TimeoutExpired:
                monitor.kill()
                monitor.wait(1)
            if monitor.stdout is not None:
                monitor.stdout.close()

    # -- internals -----------------------------------------------------------

    def _emit_if_changed(self, emit: Emit) -> None:
        state = self.state()
        if self._last is not None:  # a failed read keeps the last known value
            state = (
                self._last[0] if state[0] is None else state[0],
                self._last[1] if state[1] is None else state[1],
            )
        if state != self._last:
            self._last = state
            emit((RAW_SESSION, clock.now_ns(), state[0], state[1]))

    def _watch(self, emit: Emit) -> None:
        tool, path = self._tool(), self._path
        backoff = 1.0
        while not self._stopping.is_set() and tool and path:
            try:
                self._monitor = subprocess.Popen(
                    [tool, "monitor", "--system", "--dest", LOGIN1, "--object-path", path],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            except OSError:
                log.warning("cannot run gdbus monitor; lock changes will not be seen")
                return
            assert self._monitor.stdout is not None
            for line in self._monitor.stdout:
                if self._stopping.is_set():
                    break
                if "PropertiesChanged" in line or "Lock" in line or "Unlock" in line:
                    self._emit_if_changed(emit)
                    backoff = 1.0
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, 60.0)
            self._emit_if_changed(emit)  # catch up after a monitor restart
