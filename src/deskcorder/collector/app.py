"""The collector's HTTP API (Starlette). docs/collector-openapi.yaml is its contract.

Every route but ``/healthz`` needs a bearer token: the org enroll secret for
``/v1/enroll``, a device token for device routes, the admin token for
``/v1/admin/*`` and ``/metrics``.

The chunk PUT, nearly all of a collector's traffic, is answered by a plain
ASGI handler in front of Starlette (``CollectorApp``): Starlette's middleware,
routing, request and response objects cost about 70 µs of the event loop's
time per request, a tenth of what the loop can give a PUT
(docs/performance.md). Every other route goes through Starlette.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .base import Body, Limits, Rejected
from .store import Store
from .validate import (
    LINE_SCANNER,
    parse_seq,
    valid_device,
    valid_session,
    valid_sha,
    valid_user,
)

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.bytes_received = 0
        self.chunks_stored = 0
        self.chunks_duplicate = 0
        self.blobs_stored = 0

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[(route, status)] += 1

    def render(self, store: Store) -> str:
        lines = [
            "# HELP deskcorder_collector_info How this collector runs (line_scanner: c or python).",
            "# TYPE deskcorder_collector_info gauge",
            f'deskcorder_collector_info{{line_scanner="{LINE_SCANNER}"}} 1',
            "# HELP deskcorder_collector_requests_total HTTP requests by route and status.",
            "# TYPE deskcorder_collector_requests_total counter",
        ]
        with self._lock:
            for (route, status), n in sorted(self.requests.items()):
                lines.append(
                    f'deskcorder_collector_requests_total{{route="{route}",status="{status}"}} {n}'
                )
            scalars = {
                "bytes_received_total": self.bytes_received,
                "chunks_stored_total": self.chunks_stored,
                "chunks_duplicate_total": self.chunks_duplicate,
                "blobs_stored_total": self.blobs_stored,
            }
        for name, value in scalars.items():
            lines.append(f"# TYPE deskcorder_collector_{name} counter")
            lines.append(f"deskcorder_collector_{name} {value}")
        for table, n in store.counts().items():
            lines.append(f"# TYPE deskcorder_collector_{table} gauge")
            lines.append(f"deskcorder_collector_{table} {n}")
        return "\n".join(lines) + "\n"


def _bearer(request: Request) -> str | None:
    return _bearer_token(request.headers.get("authorization", ""))


def _bearer_token(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Collector:
    def __init__(
        self,
        store: Store,
        *,
        admin_token: str | None = None,
        enroll_secret: str | None = None,
    ) -> None:
        self.store = store
        self.limits: Limits = store.limits
        self.admin_token = admin_token or None
        self.enroll_secret = enroll_secret or None
        self.metrics = Metrics()

    # -- helpers -----------------------------------------------------------------------
    def _device(self, request: Request) -> str | None:
        return self._device_for(request.headers.get("authorization", ""))

    def _device_for(self, authorization: str) -> str | None:
        token = _bearer_token(authorization)
        return self.store.device_for_token(token) if token else None

    def _is_admin(self, request: Request) -> bool:
        token = _bearer(request)
        return bool(token and self.admin_token and _same(token, self.admin_token))

    async def _receive(self, request: Request, limit: int) -> tuple[Body, str]:
        """Read the body, bounded by ``limit``; returns it and its sha256."""
        body = await self._receive_body(request, limit)
        try:
            sha = await anyio.to_thread.run_sync(body.sha256)
        except BaseException:
            body.discard()
            raise
        return body, sha

    async def _receive_body(self, request: Request, limit: int) -> Body:
        """Read the body, bounded by ``limit`` (not hashed: that is done in a worker thread)."""
        return await self._read_body(request.stream(), request.headers.get("content-length"), limit)

    async def _read_body(
        self, pieces: AsyncIterator[bytes], length: str | None, limit: int
    ) -> Body:
        """Collect ``pieces`` into a ``Body``, refusing more than ``limit`` bytes (413)."""
        if length is not None:
            if not length.isdigit():
                raise Rejected(400, "bad Content-Length")
            if int(length) > limit:
                raise Rejected(413, f"body larger than {limit} bytes")
        body = self.store.new_body()
        try:
            async for piece in pieces:
                if body.size + len(piece) > limit:
                    raise Rejected(413, f"body larger than {limit} bytes")
                body.write(piece)
        except BaseException:
            body.discard()
            raise
        self.metrics.bytes_received += body.size
        return body

    # -- routes ------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_route(self, request: Request) -> Response:
        if not self._is_admin(request):
            return _error(401, "admin token required")
        text = self.metrics.render(self.store)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def enroll(self, request: Request) -> Response:
        token = _bearer(request)
        if not (token and self.enroll_secret and _same(token, self.enroll_secret)):
            return _error(401, "enroll secret required")
        raw = await self._json_body(request)
        device = raw.get("device") if isinstance(raw, dict) else None
        if not isinstance(device, str) or not valid_device(device):
            return _error(400, 'body must be {"device": <device pseudonym>}')
        new_token = await anyio.to_thread.run_sync(self.store.enroll, device)
        return JSONResponse({"device": device, "token": new_token}, status_code=201)

    async def _json_body(self, request: Request) -> Any:
        body = b""
        async for piece in request.stream():
            body += piece
            if len(body) > self.limits.max_json_bytes:
                raise Rejected(413, f"body larger than {self.limits.max_json_bytes} bytes")
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # deep nesting recurses
            raise Rejected(400, "body is not JSON") from exc

    def _chunk_ids(self, request: Request) -> tuple[str, int]:
        return self._chunk_ids_of(request.path_params["session"], request.path_params["seq"])

    @staticmethod
    def _chunk_ids_of(session: str, seq_text: str) -> tuple[str, int]:
        seq = parse_seq(seq_text)
        if not valid_session(session):
            raise Rejected(400, "invalid session id")
        if seq is None:
            raise Rejected(400, "invalid chunk seq (0..999999)")
        return session, seq

    async def put_chunk(
        self, scope: Scope, receive: Receive, send: Send, path: re.Match[str]
    ) -> None:
        """``PUT /v1/sessions/{session}/chunks/{seq}`` as a plain ASGI handler (see the top)."""
        try:
            status, payload = await self._put_chunk(scope, receive, path[1], path[2])
        except (Rejected, OSError) as exc:
            status, message = _failure("chunk_put", exc)
            payload = {"error": message}
        except _Disconnected:
            return  # the client is gone: nobody to answer
        self.metrics.request("chunk_put", status)
        content = _json_bytes(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _put_chunk(
        self, scope: Scope, receive: Receive, session_text: str, seq_text: str
    ) -> tuple[int, dict[str, Any]]:
        headers = _headers(scope, (b"authorization", b"x-deskcorder-sha256", b"content-length"))
        device = self._device_for(headers.get(b"authorization", ""))
        if device is None:
            return 401, {"error": "device token required (enroll first)"}
        session, seq = self._chunk_ids_of(session_text, seq_text)
        claimed = headers.get(b"x-deskcorder-sha256", "")
        if not valid_sha(claimed):
            return 400, {"error": "X-Deskcorder-SHA256 header (hex sha256 of the body) required"}
        owner = self.store.session_owner(session)
        if owner is not None and owner != device:
            return 403, {"error": f"session {session} belongs to another device"}
        body = await self._read_body(
            _body_pieces(receive), headers.get(b"content-length"), self.limits.max_chunk_bytes
        )
        # the pipeline owns the body from here (and discards it when done)
        result = await self.store.ingest.put_async(device, session, seq, claimed, body)
        if result.created:
            self.metrics.chunks_stored += 1
        else:
            self.metrics.chunks_duplicate += 1
        payload = {
            "session": session,
            "seq": seq,
            "sha256": result.sha256,
            "created": result.created,
        }
        return (201 if result.created else 200), payload

    async def get_chunk(self, request: Request) -> Response:
        device = self._device(request)
        if device is None:
            return _error(401, "device token required (enroll first)")
        session, seq = self._chunk_ids(request)
        if self.store.session_owner(session) != device:
            return _error(404, "no such chunk")
        digest = self.store.chunk_digest(session, seq)
        if digest is None:
            return _error(404, "no such chunk")
        return JSONResponse({"session": session, "seq": seq, "sha256": digest})

    def _sha(self, request: Request) -> str:
        sha = request.path_params["sha"]
        if not valid_sha(sha):
            raise Rejected(400, "invalid sha256 (64 lowercase hex digits)")
        return str(sha)

    async def blob(self, request: Request) -> Response:
        device = self._device(request)
        if device is None:
            return _error(401, "device token required (enroll first)")
        sha = self._sha(request)
        if request.method == "HEAD":
            present = self.store.has_blob(device, sha)
            return Response(status_code=200 if present else 404)
        body, got = await self._receive(request, self.limits.max_blob_bytes)
        try:
            if got != sha:
                raise Rejected(400, f"body sha256 {got} does not match the URL")
            result = await anyio.to_thread.run_sync(self.store.put_blob, device, sha, body)
        finally:
            body.discard()
        if result.created:
            self.metrics.blobs_stored += 1
        return JSONResponse(
            {"sha256": sha, "created": result.created}, status_code=201 if result.created else 200
        )

    async def consent(self, request: Request) -> Response:
        device = self._device(request)
        if device is None:
            return _error(401, "device token required (enroll first)")
        body = await self._json_body(request)
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        user = body.get("user")
        if not isinstance(user, str) or not valid_user(user):
            return _error(400, "receipt needs a valid user pseudonym")
        decided = isinstance(body.get("accepted"), bool) or body.get("action") in (
            "accept",
            "withdraw",
        )
        if not isinstance(body.get("notice_version"), str) or not decided:
            return _error(
                400,
                "receipt needs notice_version (string) and accepted (boolean) "
                "or action (accept|withdraw)",
            )
        rid, created = await anyio.to_thread.run_sync(self.store.add_receipt, device, user, body)
        return JSONResponse({"id": rid}, status_code=201 if created else 200)

    # -- admin -------------------------------------------------------------------------
    def _admin(self, request: Request) -> None:
        if not self._is_admin(request):
            raise Rejected(401, "admin token required")

    async def admin_sessions(self, request: Request) -> Response:
        self._admin(request)
        user = request.query_params.get("user")
        if user is not None and not valid_user(user):
            return _error(400, "invalid user pseudonym")
        rows = await anyio.to_thread.run_sync(self.store.sessions, user)
        return JSONResponse({"sessions": rows})

    async def admin_session(self, request: Request) -> Response:
        self._admin(request)
        session = request.path_params["session"]
        if not valid_session(session):
            return _error(400, "invalid session id")
        info = await anyio.to_thread.run_sync(self.store.session, session)
        if info is None:
            return _error(404, "no such session")
        return JSONResponse(info)

    async def admin_chunk(self, request: Request) -> Response:
        self._admin(request)
        session, seq = self._chunk_ids(request)
        if self.store.chunk_digest(session, seq) is None:
            return _error(404, "no such chunk")
        data = await anyio.to_thread.run_sync(self.store.chunk_path(session, seq).read_bytes)
        return Response(data, media_type="application/zstd")

    def _user(self, request: Request) -> str:
        user = request.path_params["user"]
        if not valid_user(user):
            raise Rejected(400, "invalid user pseudonym")
        return str(user)

    async def admin_export(self, request: Request) -> Response:
        self._admin(request)
        user = self._user(request)
        lines = await anyio.to_thread.run_sync(lambda: list(self.store.export_user(user)))
        return StreamingResponse(iter(lines), media_type="application/x-ndjson")

    async def admin_erase(self, request: Request) -> Response:
        self._admin(request)
        user = self._user(request)
        counts = await anyio.to_thread.run_sync(self.store.erase_user, user)
        return JSONResponse({"user": user, "erased": counts})

    async def admin_revoke(self, request: Request) -> Response:
        self._admin(request)
        device = request.path_params["device"]
        if not valid_device(device):
            return _error(400, "invalid device pseudonym")
        found = await anyio.to_thread.run_sync(self.store.revoke, device)
        if not found:
            return _error(404, "no such device")
        return JSONResponse({"device": device, "revoked": True})


class _Disconnected(Exception):
    """The client went away before its request body was complete."""


async def _body_pieces(receive: Receive) -> AsyncIterator[bytes]:
    """The request body from ASGI ``receive``, piece by piece."""
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        piece = message.get("body", b"")
        if piece:
            yield piece
        if not message.get("more_body", False):
            return


def _headers(scope: Scope, wanted: tuple[bytes, ...]) -> dict[bytes, str]:
    """The ``wanted`` request headers (lower-case names; the first of each wins)."""
    out: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        name = name.lower()
        if name in wanted and name not in out:
            out[name] = value.decode("latin-1")
    return out


def _json_bytes(payload: dict[str, Any]) -> bytes:
    """The body Starlette's JSONResponse would send for ``payload``."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


_CHUNK_PUT = re.compile(r"/v1/sessions/([^/]+)/chunks/([^/]+)")


class CollectorApp(Starlette):
    """The collector's ASGI app: chunk PUTs answered directly, every other request by Starlette."""

    collector: Collector
    direct_routes = (("/v1/sessions/{session}/chunks/{seq}", "PUT"),)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT":
            path = _CHUNK_PUT.fullmatch(scope["path"])
            if path is not None:
                await self.collector.put_chunk(scope, receive, send, path)
                return
        await super().__call__(scope, receive, send)


def _failure(route: str, exc: Rejected | OSError) -> tuple[int, str]:
    """The status and message a refused request, or one the storage failed, answers with."""
    if isinstance(exc, Rejected):
        return exc.status, str(exc)
    log.error("%s: storage error: %s", route, exc)
    return 503, f"storage error: {exc.strerror or exc}"


def _wrap(collector: Collector, name: str, handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except (Rejected, OSError) as exc:
            response = _error(*_failure(name, exc))
        collector.metrics.request(name, response.status_code)
        return response

    return endpoint


def create_app(
    data_dir: Path,
    *,
    admin_token: str | None = None,
    enroll_secret: str | None = None,
    limits: Limits | None = None,
) -> CollectorApp:
    store = Store(data_dir, limits)
    c = Collector(store, admin_token=admin_token, enroll_secret=enroll_secret)
    table: list[tuple[str, str, Handler, list[str]]] = [
        ("/healthz", "health", c.health, ["GET"]),
        ("/metrics", "metrics", c.metrics_route, ["GET"]),
        ("/v1/enroll", "enroll", c.enroll, ["POST"]),
        ("/v1/sessions/{session}/chunks/{seq}", "chunk_get", c.get_chunk, ["GET"]),
        ("/v1/blobs/{sha}", "blob", c.blob, ["HEAD", "PUT"]),
        ("/v1/consent", "consent", c.consent, ["POST"]),
        ("/v1/admin/sessions", "admin_sessions", c.admin_sessions, ["GET"]),
        ("/v1/admin/sessions/{session}", "admin_session", c.admin_session, ["GET"]),
        ("/v1/admin/sessions/{session}/chunks/{seq}", "admin_chunk", c.admin_chunk, ["GET"]),
        ("/v1/admin/users/{user}/export", "admin_export", c.admin_export, ["GET"]),
        ("/v1/admin/users/{user}", "admin_erase", c.admin_erase, ["DELETE"]),
        ("/v1/admin/devices/{device}/revoke", "admin_revoke", c.admin_revoke, ["POST"]),
    ]
    routes = [
        Route(path, _wrap(c, name, handler), methods=methods, name=name)
        for path, name, handler, methods in table
    ]
    app = CollectorApp(routes=routes)  # PUT /v1/sessions/{session}/chunks/{seq}: see CollectorApp
    app.collector = c
    return app
