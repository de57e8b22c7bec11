"""A small asyncio TCP proxy that injects faults, one plan entry per client connection.

Faults (``plan`` is consumed per accepted connection; when empty: ``pass``):

* ``pass``                forward both ways
* ``latency:S``           forward, delaying every piece by S seconds
* ``reset``               read some request bytes, then reset the connection (RST)
* ``stall``               read the request, never answer (the client must time out)
                          (every connection carries one request: faults are per request)
* ``truncate:N``          forward the request, send only N bytes of the reply, close
* ``drop_reply``          forward the request, wait for the reply to start (the server
                          has stored it), then close without sending any of it
* ``status:CODE[:RA]``    read the whole request and answer CODE itself, with
                          ``Retry-After: RA`` when given (``RA`` may be ``date+N``)

Runs its own event loop in a named thread; ``close()`` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import deque
from email.utils import formatdate


class LoopbackProxy:
    """A TCP server on a free loopback port, served by its own event loop in a named
    thread; subclasses answer each client connection in ``_handle``."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{name} did not start")
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        self._loop.run_until_complete(self._server.wait_closed())
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class FaultProxy(LoopbackProxy):
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.plan: deque[str] = deque()
        self.log: list[tuple[float, str]] = []  # (monotonic time, fault) per connection
        super().__init__("fault-proxy", host)

    def faults_seen(self) -> list[str]:
        return [fault for _, fault in self.log]

    # -- connection handling -------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection (``Connection: close``), so that faults are per request."""
        fault = self.plan.popleft() if self.plan else "pass"
        self.log.append((time.monotonic(), fault))
        kind, _, arg = fault.partition(":")
        try:
            if kind == "reset":
                await reader.read(100)
                _reset(writer)
                return
            method, request = await _read_message(reader, None)
            if kind == "stall":
                await reader.read()  # until the client gives up
                return
            if kind == "status":
                code, _, retry_after = arg.partition(":")
                writer.write(_canned(int(code), retry_after))
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            try:
                up_writer.write(request)
                await up_writer.drain()
                _, response = await _read_message(up_reader, method)
            finally:
                up_writer.close()
            if kind == "latency":
                await asyncio.sleep(float(arg))
            if kind == "truncate":
                response = response[: int(arg)]
            if kind != "drop_reply":  # drop_reply: the server stored it, the client never hears
                writer.write(response)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def _read_message(
    reader: asyncio.StreamReader, request_method: bytes | None
) -> tuple[bytes, bytes]:
    """Read one HTTP/1.1 request (``request_method`` None) or response; returns (method, bytes).

    Bodies are framed by Content-Length (all this project's clients and the collector's
    replies use it); the message is rewritten with ``Connection: close``.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    length = 0
    kept = [lines[0]]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        if key != b"connection":
            kept.append(line)
    kept.append(b"Connection: close")
    method = lines[0].split(b" ", 1)[0]
    if request_method == b"HEAD":
        length = 0
    body = await reader.readexactly(length) if length else b""
    return method, b"\r\n".join(kept) + b"\r\n\r\n" + body


def _canned(code: int, retry_after: str) -> bytes:
    lines = [f"HTTP/1.1 {code} Injected", "Content-Type: application/json"]
    if retry_after.startswith("date+"):
        when = time.time() + float(retry_after[5:])
        lines.append(f"Retry-After: {formatdate(when, usegmt=True)}")
    elif retry_after:
        lines.append(f"Retry-After: {retry_after}")
    body = b'{"error": "injected by the fault proxy"}'
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + body


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
