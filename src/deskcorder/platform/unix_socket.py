"""The control channel on POSIX: a Unix socket only the same user can open (mode 0600)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from pathlib import Path

from deskcorder.errors import AgentNotRunning
from deskcorder.platform.base import MAX_MESSAGE, ChannelServer


class UnixSocketEndpoint:
    """Serves one request line per connection on its own thread; a pipe wakes it to stop."""

    def __init__(self, path: Path, server: ChannelServer) -> None:
        self.path = path
        self.server = server
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()

    def start(self) -> None:
        path = self.path
        if path.exists():
            path.unlink()  # stale: we hold the single-instance lock, so nobody serves it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # type: ignore[attr-defined,unused-ignore]
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="deskcorder-control", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
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
                    line = recv_line(conn)
                except (OSError, ValueError) as exc:  # cut off, or too large
                    reply = self.server.refuse(str(exc))
                else:
                    reply = self.server.serve(line)
                with contextlib.suppress(OSError):
                    conn.sendall(reply + b"\n")


def recv_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf:
        piece = conn.recv(65536)
        if not piece:
            break
        buf += piece
        if len(buf) > MAX_MESSAGE:
            raise ValueError("message too large")
    return buf.split(b"\n", 1)[0]


def call(path: Path, message: bytes, timeout: float) -> bytes:
    """One request line to the agent at ``path``; its reply line."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # type: ignore[attr-defined,unused-ignore]
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        sock.sendall(message + b"\n")
        return recv_line(sock)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise AgentNotRunning(f"no running deskcorder agent for this user ({path})") from exc
    except OSError as exc:
        raise AgentNotRunning(f"cannot talk to the agent at {path}: {exc}") from exc
    finally:
        sock.close()
