"""A small round-robin HTTP load balancer for tests: one request per connection.

Each client connection carries one request (the reply says ``Connection:
close``), sent to the next upstream in turn. An upstream that refuses the
connection is skipped for that request (the next one is tried), as a load
balancer does for a dead instance; one that dies while it holds a request
leaves that client without an answer (the client retries). Runs its own
event loop in a named thread; ``close()`` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter

from tests.upload.faultproxy import LoopbackProxy, _read_message


class RoundRobinProxy(LoopbackProxy):
    def __init__(self, upstream_ports: list[int], host: str = "127.0.0.1") -> None:
        self.upstreams = [(host, port) for port in upstream_ports]
        self.served: Counter[int] = Counter()  # upstream port -> requests answered
        self._next = itertools.cycle(range(len(self.upstreams)))
        super().__init__("rr-proxy", host)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
        for _ in self.upstreams:
            host, port = self.upstreams[next(self._next)]
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection(host, port)
                return reader, writer, port
        raise ConnectionRefusedError("no upstream is up")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, request = await _read_message(reader, None)
            up_reader, up_writer, port = await self._connect()
            try:
                up_writer.write(request)  # sent with "Connection: close": the reply ends at EOF
                await up_writer.drain()
                response = await up_reader.read()  # whatever its framing (chunked exports too)
            finally:
                up_writer.close()
            if not response:
                return  # the instance died holding the request: no answer
            self.served[port] += 1
            writer.write(response)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a dead upstream, or a client gone: no answer, the client retries
        finally:
            with contextlib.suppress(Exception):
                writer.close()
