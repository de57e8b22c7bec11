"""The control channel on Windows: a named pipe with an auth key only the user can read.

``multiprocessing.connection`` over ``\\\\.\\pipe\\deskcorder-<user>``; the key
(32 random bytes) is written to ``<runtime dir>/control.key`` when the agent
starts. Messages are the same JSON lines as on POSIX, never pickle. The
functions that touch the pipe are small so tests can replace them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from multiprocessing import AuthenticationError
from pathlib import Path
from typing import Any

from deskcorder.errors import AgentNotRunning
from deskcorder.platform.base import MAX_MESSAGE, ChannelServer

log = logging.getLogger(__name__)

STOP = b'{"cmd": "__stop__"}'  # sent by stop() to end the accept loop


def pipe_address() -> str:
    return rf"\\.\pipe\deskcorder-{os.getlogin()}"


def _listener(address: str, key: bytes) -> Any:
    from multiprocessing.connection import Listener

    return Listener(address, family="AF_PIPE", authkey=key)


def _client(address: str, key: bytes) -> Any:
    from multiprocessing.connection import Client

    return Client(address, family="AF_PIPE", authkey=key)


class PipeEndpoint:
    """Serves one request per connection on its own thread until stopped."""

    def __init__(self, runtime: Path, server: ChannelServer) -> None:
        self.key_file = runtime / "control.key"
        self.server = server
        self._thread: threading.Thread | None = None
        self._key = b""
        self._address = ""

    def start(self) -> None:
        self._key = secrets.token_bytes(32)
        self.key_file.write_bytes(self._key)
        self._address = pipe_address()
        listener = _listener(self._address, self._key)  # listening before start returns
        self._thread = threading.Thread(
            target=self._run, args=(listener,), name="deskcorder-control", daemon=True
        )
        self._thread.start()

    def _run(self, listener: Any) -> None:
        with listener:
            while True:
                try:
                    conn = listener.accept()  # checks the key (AuthenticationError)
                except Exception as exc:  # a client without the key, or one that went away
                    log.warning("control pipe: refused a connection: %s", exc)
                    continue
                with conn:
                    try:
                        line = conn.recv_bytes(MAX_MESSAGE)
                    except (OSError, EOFError) as exc:
                        with contextlib.suppress(OSError):
                            conn.send_bytes(self.server.refuse(str(exc)))
                        continue
                    if line == STOP:
                        conn.send_bytes(b"{}")
                        return
                    with contextlib.suppress(OSError):
                        conn.send_bytes(self.server.serve(line))

    def stop(self, timeout: float) -> None:
        if self._thread is None:
            return
        try:
            with _client(self._address, self._key) as conn:
                conn.send_bytes(STOP)
                conn.recv_bytes(MAX_MESSAGE)
        except OSError:
            pass  # the loop has ended already
        self._thread.join(timeout)


def call(runtime: Path, message: bytes, timeout: float) -> bytes:
    """One request to the agent; its reply (raises AgentNotRunning)."""
    try:
        key = (runtime / "control.key").read_bytes()
        with _client(pipe_address(), key) as conn:
            conn.send_bytes(message)
            reply: bytes = conn.recv_bytes(MAX_MESSAGE)
            return reply
    except OSError as exc:
        raise AgentNotRunning(f"no running deskcorder agent ({exc})") from exc
    except (AuthenticationError, EOFError) as exc:  # a key from another start, or cut off
        raise AgentNotRunning(f"cannot talk to the agent: {exc}") from exc


__all__ = ["PipeEndpoint", "call"]
