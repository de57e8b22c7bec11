"""A same-user-only request/reply channel between the CLI and the running agent.

POSIX: a Unix socket ``<runtime dir>/control.sock``; the runtime directory is
created with mode 0700 and must be owned by the user, and the socket itself is
chmod 0600, so only the same user can connect. Windows: a named pipe through
``multiprocessing.connection`` with an auth key kept in a file only the user
can read. Messages are one JSON object per line (never pickle).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deskcorder.errors import AgentNotRunning, DeskcorderError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_MESSAGE = 1 << 20


def runtime_dir() -> Path:
    """Per-user runtime folder for the lock and the control socket (mode 0700)."""
    override = os.environ.get("DESKCORDER_RUNTIME_DIR")
    if override:
        path = Path(override)
    else:
        import platformdirs

        base = Path(platformdirs.user_runtime_dir("deskcorder", appauthor=False))
        if sys.platform.startswith("linux") and not base.parent.is_dir():
            uid = os.getuid()
            base = Path(tempfile.gettempdir()) / f"deskcorder-{uid}"
        path = base
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if sys.platform != "win32":
        st = path.stat()
        if st.st_uid != os.getuid():
            raise DeskcorderError(f"{path}: runtime folder is owned by another user; refusing")
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def socket_path() -> Path:
    return runtime_dir() / "control.sock"


class ControlServer:
    """Serves requests on its own named thread; each request is handled by ``handlers[cmd]``."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe() if os.name == "posix" else (-1, -1)
        self.path: Path | None = None

    def start(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - Windows named pipe
            self._thread = threading.Thread(
                target=self._serve_pipe, name="deskcorder-control", daemon=True
            )
            self._thread.start()
            return
        path = socket_path()
        if path.exists():
            path.unlink()  # stale: we hold the single-instance lock, so nobody serves it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(8)
        self._sock = sock
        self.path = path
        self._thread = threading.Thread(target=self._serve, name="deskcorder-control", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        handler = self.handlers.get(str(cmd))
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        try:
            reply = handler(request)
        except (ValueError, PermissionError, DeskcorderError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control handler %s failed", cmd)
            return {"ok": False, "error": f"internal error: {exc}"}
        return {"ok": True, **reply}

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            ready, _, _ = select.select([self._sock.fileno(), self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    data = _recv_line(conn)
                    request = json.loads(data)
                    if not isinstance(request, dict):
                        raise ValueError("request is not a JSON object")
                    reply = self.handle(request)
                except (OSError, ValueError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply, default=str).encode() + b"\n")

    def _serve_pipe(self) -> None:  # pragma: no cover - Windows only
        from multiprocessing.connection import Listener

        key = secrets.token_bytes(32)
        key_file = runtime_dir() / "control.key"
        key_file.write_bytes(key)
        address = rf"\\.\pipe\deskcorder-{os.getlogin()}"
        with Listener(address, family="AF_PIPE", authkey=key) as listener:
            while True:
                with listener.accept() as conn:
                    request = json.loads(conn.recv_bytes(MAX_MESSAGE))
                    if request.get("cmd") == "__stop__":
                        conn.send_bytes(b"{}")
                        return
                    conn.send_bytes(json.dumps(self.handle(request), default=str).encode())


def _recv_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        piece = conn.recv(65536)
        if not piece:
            break
        buf += piece
        if len(buf) > MAX_MESSAGE:
            raise ValueError("message too large")
    return buf.split(b"\n", 1)[0]


def request(cmd: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
    """Send one request to the running agent and return its reply (raises AgentNotRunning)."""
    message = json.dumps({"cmd": cmd, **fields}).encode() + b"\n"
    if sys.platform == "win32":  # pragma: no cover - Windows only
        from multiprocessing.connection import Client

        try:
            key = (runtime_dir() / "control.key").read_bytes()
            with Client(
                rf"\\.\pipe\deskcorder-{os.getlogin()}", family="AF_PIPE", authkey=key
            ) as conn:
                conn.send_bytes(message.strip())
                reply: dict[str, Any] = json.loads(conn.recv_bytes(MAX_MESSAGE))
                return reply
        except OSError as exc:
            raise AgentNotRunning(f"no running deskcorder agent ({exc})") from exc
    path = socket_path()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(message)
        data = _recv_line(sock)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise AgentNotRunning(f"no running deskcorder agent for this user ({path})") from exc
    except OSError as exc:
        raise AgentNotRunning(f"cannot talk to the agent at {path}: {exc}") from exc
    finally:
        sock.close()
    try:
        result: dict[str, Any] = json.loads(data)
    except ValueError as exc:
        raise AgentNotRunning(f"the agent at {path} sent an unreadable reply") from exc
    return result
