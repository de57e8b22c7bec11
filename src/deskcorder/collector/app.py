"""The collector's HTTP API (Starlette). docs/collector-openapi.yaml is its contract.

Every route but ``/healthz`` and ``/v1/auth/*`` needs a bearer token: the org
enroll secret (plus the device key's signature) for ``/v1/enroll``, a
short-lived device token for device routes, an admin token (the file's, or a
named one) for ``/v1/admin/*`` and ``/metrics``. ``/v1/auth/challenge`` and
``/v1/auth/token`` are how an enrolled device proves it holds its key
(docs/security.md); they and ``/v1/enroll`` are rate-limited per client
address, device writes per device.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from deskcorder.devicekey import b64decode, device_id, signed_message, verify

from .base import Body, DeviceAuth, Enrollment, Limits, Rejected, revoked_error
from .identities import Challenges, RateLimiter, derive, person_of, retry_after
from .metrics import Metrics
from .store import Store
from .validate import (
    parse_seq,
    valid_device,
    valid_session,
    valid_sha,
    valid_user,
)

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

TOKEN_TTL_S = 1.0  # how long a fleet instance trusts a token look-up (see _device_for)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _rejected(exc: Rejected) -> JSONResponse:
    return JSONResponse(exc.payload(), status_code=exc.status, headers=exc.headers or None)


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PERSON_RE = re.compile(r"^p-[0-9a-f]{32}$")
ROOT_ADMIN = "admin:root"


@dataclass(frozen=True)
class Security:
    """The collector's identity settings (``collector serve`` options)."""

    pseudonym_key: bytes | None = None  # None: pseudonymous enrollments are refused
    allow_named: bool = False  # accept agents whose policy says identity.mode = "named"
    token_ttl_s: float = 3600.0
    enroll_per_minute: float = 60.0  # per client address, for /v1/enroll and /v1/auth/*
    writes_per_s: float = 50.0  # per device, for chunk and blob PUTs, receipts, erasure
    write_burst: float = 500.0


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
        security: Security | None = None,
    ) -> None:
        self.store = store
        self.limits: Limits = store.limits
        self.admin_token = admin_token or None
        self.enroll_secret = enroll_secret or None
        self.security = security or Security()
        self.metrics = Metrics()
        self._tokens: dict[str, tuple[DeviceAuth, float]] = {}  # fleet: token -> (auth, until)
        # what a request may fail with and still get an answer (4xx, or 503 for storage)
        self.failures: tuple[type[BaseException], ...] = (Rejected, OSError, *store.index_errors)
        self.challenges = Challenges(store.challenge_key())
        per_minute = self.security.enroll_per_minute
        self.enroll_limit = RateLimiter(per_minute / 60.0, per_minute)
        self.write_limit = RateLimiter(self.security.writes_per_s, self.security.write_burst)

    # -- helpers -----------------------------------------------------------------------
    async def _device(self, request: Request) -> DeviceAuth | None:
        """The device of the request's token, checked in the index now (no cache)."""
        token = _bearer(request)
        if not token:
            return None
        return await self._lookup(self.store.auth, token)  # type: ignore[no-any-return]

    async def _device_for(self, authorization: str) -> DeviceAuth | None:
        """The same for the chunk PUT: may answer from a token cache. The local index keeps
        its own (see LocalIndex.auth); a networked one (fleet) is asked in a worker thread
        and its answers are kept here for at most ``TOKEN_TTL_S``. A revocation is caught
        either way: the commit of every chunk batch checks the device in the index."""
        token = _bearer_token(authorization)
        if not token:
            return None
        if not self.store.index.blocking_lookups:
            return self.store.auth(token, cached=True)
        now = time.monotonic()
        hit = self._tokens.get(token)
        if hit is not None and hit[1] > now and hit[0].expires > time.time():
            return hit[0]
        found = await anyio.to_thread.run_sync(self.store.auth, token)
        if found is not None:
            if len(self._tokens) > 100_000:
                self._tokens.clear()
            self._tokens[token] = (found, now + TOKEN_TTL_S)
        return found

    async def _lookup(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, an index or object look-up: inline when it answers from memory or
        a local file (local backend), in a worker thread when it waits on the network."""
        if self.store.index.blocking_lookups:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    def _is_admin(self, request: Request) -> bool:
        return self._admin_actor(request) is not None

    def _admin_actor(self, request: Request) -> str | None:
        token = _bearer(request)
        if not token:
            return None
        if self.admin_token and _same(token, self.admin_token):
            return ROOT_ADMIN
        return self.store.admin_actor(token)

    def _limit(self, limiter: RateLimiter, key: str) -> None:
        wait = limiter.take(key)
        if wait > 0:
            raise Rejected(
                429, "too many requests; retry later", "rate_limited",
                {"Retry-After": retry_after(wait)},
            )  # fmt: skip

    def _limit_client(self, request: Request) -> None:
        client = request.client.host if request.client else "?"
        self._limit(self.enroll_limit, client)

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
        """The process is up (reveals nothing; no token)."""
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """The index and the objects answer (load balancers route only to a ready instance)."""
        failed = await anyio.to_thread.run_sync(self.store.ready)
        if failed is not None:
            return JSONResponse({"status": "not ready", "failed": failed}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_route(self, request: Request) -> Response:
        if not self._is_admin(request):
            return _error(401, "admin token required")
        text = await self._lookup(self.metrics.render, self.store)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # -- enrollment and proof of possession -------------------------------------------
    async def challenge(self, request: Request) -> Response:
        """``POST /v1/auth/challenge``: a nonce to sign (valid for two minutes)."""
        self._limit_client(request)
        return JSONResponse(
            {"challenge": self.challenges.issue(), "expires_in": self.challenges.ttl_s}
        )

    def _signed(self, raw: Any, purpose: str, public_key: bytes) -> tuple[str, int]:
        """Check a body's challenge and signature; returns (device, challenge issue time)."""
        challenge = raw.get("challenge")
        issued = self.challenges.check(challenge) if isinstance(challenge, str) else None
        if issued is None:
            raise Rejected(401, "challenge missing, unknown or expired", "bad_challenge")
        try:
            signature = b64decode(raw.get("signature"))
        except ValueError as exc:
            raise Rejected(400, "signature must be base64url") from exc
        device = device_id(public_key)
        claims = raw.get("claims") if purpose == "enroll" else None
        if not verify(public_key, signature, signed_message(purpose, device, challenge, claims)):
            raise Rejected(401, "signature does not verify with the device key", "bad_signature")
        return device, issued

    def _identities(self, claims: Any) -> tuple[str, str, str, str]:
        """(mode, user, machine, person) from an enrollment's claims; the login and
        machine id are used here and not kept."""
        if not isinstance(claims, dict):
            raise Rejected(400, "claims must be an object {mode, login, machine_id}")
        mode, login, mid = claims.get("mode"), claims.get("login"), claims.get("machine_id")
        if mode not in ("pseudonymous", "named"):
            raise Rejected(400, "claims.mode must be pseudonymous or named")
        for name, value in (("login", login), ("machine_id", mid)):
            if not isinstance(value, str) or not 0 < len(value) <= 256:
                raise Rejected(400, f"claims.{name} must be a string of 1-256 characters")
        assert isinstance(login, str) and isinstance(mid, str)
        key = self.security.pseudonym_key
        person = person_of(key, login) if key is not None else ""
        if mode == "named":
            host = claims.get("hostname")
            if not self.security.allow_named:
                raise Rejected(
                    403, "this collector does not accept named identities (--allow-named)",
                    "named_refused",
                )  # fmt: skip
            if not valid_user(login) or not isinstance(host, str) or not valid_device(host):
                raise Rejected(400, "named mode needs a valid login and claims.hostname")
            return mode, login, host, person
        if key is None:
            raise Rejected(
                503, "this collector has no pseudonym key (--pseudonym-key-file)", "no_key"
            )
        ids = derive(key, login, mid)
        return mode, ids.user, ids.machine, ids.person

    async def enroll(self, request: Request) -> Response:
        """``POST /v1/enroll``: the enroll secret, the public key and its signature."""
        self._limit_client(request)
        token = _bearer(request)
        if not (token and self.enroll_secret and _same(token, self.enroll_secret)):
            return _error(401, "enroll secret required")
        raw = await self._json_body(request)
        if not isinstance(raw, dict):
            return _error(400, "body must be a JSON object")
        try:
            public_key = b64decode(raw.get("public_key"))
        except ValueError:
            public_key = b""
        if len(public_key) != 32:
            return _error(400, "public_key must be a base64url Ed25519 public key (32 bytes)")
        device, issued = self._signed(raw, "enroll", public_key)
        if raw.get("device") not in (None, device):
            return _error(400, "device is derived from public_key; it names another device")
        mode, user, machine, person = self._identities(raw.get("claims"))
        agent = raw.get("agent")
        enrollment = Enrollment(
            device=device,
            public_key=raw["public_key"],
            mode=mode,
            user=user,
            machine=machine,
            person=person,
            agent=agent[:64] if isinstance(agent, str) else "",
            challenge_issued=issued,
        )
        ttl = self.security.token_ttl_s
        new_token = await anyio.to_thread.run_sync(self.store.enroll, enrollment, ttl)
        return JSONResponse(
            self._token_reply(device, new_token, mode, user, machine), status_code=201
        )

    def _token_reply(
        self, device: str, token: str, mode: str, user: str, machine: str
    ) -> dict[str, Any]:
        return {
            "device": device,
            "token": token,
            "expires_in": self.security.token_ttl_s,
            "mode": mode,
            "user": user,
            "machine": machine,
        }

    async def _by_signature(self, raw: Any, purpose: str) -> tuple[dict[str, Any], str]:
        """A body ``{device, challenge, signature}`` signed by the device's registered key."""
        device = raw.get("device") if isinstance(raw, dict) else None
        if not isinstance(device, str) or not valid_device(device):
            raise Rejected(400, "body must be {device, challenge, signature}")
        assert isinstance(raw, dict)
        registered = await anyio.to_thread.run_sync(self.store.device, device)
        if registered is None:
            raise Rejected(401, f"device {device} is not enrolled", "not_enrolled")
        _, issued = self._signed(raw, purpose, b64decode(registered["public_key"]))
        return registered, str(issued)

    async def token(self, request: Request) -> Response:
        """``POST /v1/auth/token``: a short-lived device token for a signed challenge."""
        self._limit_client(request)
        raw = await self._json_body(request)
        registered, issued = await self._by_signature(raw, "token")
        device = registered["device"]
        if registered["revoked"] is not None:
            raise revoked_error(device)
        ttl = self.security.token_ttl_s
        new_token = await anyio.to_thread.run_sync(self.store.issue_token, device, int(issued), ttl)
        reply = self._token_reply(
            device, new_token, registered["mode"], registered["user"], registered["machine"]
        )
        return JSONResponse(reply)

    async def erasure(self, request: Request) -> Response:
        """``POST /v1/erasure``: the device's user withdrew consent; erase what it uploaded.

        Authenticated by a challenge signed with the device's key (purpose
        ``erase``), not a token: a revoked device has none, and a withdrawal is
        honoured either way.
        """
        self._limit_client(request)
        raw = await self._json_body(request)
        if not isinstance(raw, dict) or not {"device", "challenge", "signature"} <= raw.keys():
            return _error(401, "a challenge signed by the device key is required")
        registered, issued = await self._by_signature(raw, "erase")
        device = registered["device"]
        self._limit(self.write_limit, device)
        await anyio.to_thread.run_sync(self.store.consume_challenge, device, int(issued))
        counts = await anyio.to_thread.run_sync(self.store.erase_device_data, device)
        return JSONResponse({"device": device, "erased": counts})

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
        extra: dict[str, str] = {}
        start = time.perf_counter()
        try:
            status, payload = await self._put_chunk(scope, receive, path[1], path[2])
        except self.failures as exc:
            status, message = _failure("chunk_put", exc)
            payload = {"error": message}
            if isinstance(exc, Rejected):
                payload, extra = exc.payload(), exc.headers
        except _Disconnected:
            return  # the client is gone: nobody to answer
        self.metrics.request("chunk_put", status, time.perf_counter() - start)
        content = _json_bytes(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(content)).encode()),
                    (b"content-type", b"application/json"),
                    *[(k.lower().encode(), v.encode()) for k, v in extra.items()],
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})

    async def _put_chunk(
        self, scope: Scope, receive: Receive, session_text: str, seq_text: str
    ) -> tuple[int, dict[str, Any]]:
        headers = _headers(
            scope,
            (b"authorization", b"x-deskcorder-sha256", b"content-length", b"x-deskcorder-backlog"),
        )
        auth = await self._device_for(headers.get(b"authorization", ""))
        if auth is None:
            return 401, {"error": "device token required (enroll first)"}
        device = auth.device
        self._limit(self.write_limit, device)
        session, seq = self._chunk_ids_of(session_text, seq_text)
        claimed = headers.get(b"x-deskcorder-sha256", "")
        if not valid_sha(claimed):
            return 400, {"error": "X-Deskcorder-SHA256 header (hex sha256 of the body) required"}
        # the local index knows the owner in memory: refuse before reading the body; a
        # networked one (fleet) is asked in the commit, with the rest
        owner = None if self.store.index.blocking_lookups else self.store.session_owner(session)
        if owner is not None and owner != device:
            return 403, {"error": f"session {session} belongs to another device"}
        body = await self._read_body(
            _body_pieces(receive), headers.get(b"content-length"), self.limits.max_chunk_bytes
        )
        # the pipeline owns the body from here (and discards it when done)
        result = await self.store.ingest.put_async(
            device,
            session,
            seq,
            claimed,
            body,
            user=auth.user,
            machine=auth.machine,
            backlog=_backlog(headers.get(b"x-deskcorder-backlog")),
        )
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
        auth = await self._device(request)
        if auth is None:
            return _error(401, "device token required (enroll first)")
        device = auth.device
        session, seq = self._chunk_ids(request)
        if await self._lookup(self.store.session_owner, session) != device:
            return _error(404, "no such chunk")
        digest = await self._lookup(self.store.chunk_digest, session, seq)
        if digest is None:
            return _error(404, "no such chunk")
        return JSONResponse({"session": session, "seq": seq, "sha256": digest})

    def _sha(self, request: Request) -> str:
        sha = request.path_params["sha"]
        if not valid_sha(sha):
            raise Rejected(400, "invalid sha256 (64 lowercase hex digits)")
        return str(sha)

    async def blob(self, request: Request) -> Response:
        auth = await self._device(request)
        if auth is None:
            return _error(401, "device token required (enroll first)")
        device = auth.device
        sha = self._sha(request)
        if request.method == "HEAD":
            present = await self._lookup(self.store.has_blob, device, sha)
            return Response(status_code=200 if present else 404)
        self._limit(self.write_limit, device)
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
        """A consent receipt, stored under the device's user pseudonym (not the body's)."""
        auth = await self._device(request)
        if auth is None:
            return _error(401, "device token required (enroll first)")
        self._limit(self.write_limit, auth.device)
        device, user = auth.device, auth.user
        body = await self._json_body(request)
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        if "utc" in body and not isinstance(body["utc"], str):
            return _error(400, "receipt utc must be a string")
        if "action" in body and body["action"] not in ("accept", "withdraw"):
            return _error(400, "receipt action must be accept or withdraw")
        if "accepted" in body and not isinstance(body["accepted"], bool):
            return _error(400, "receipt accepted must be a boolean")
        claimed = body.get("user")
        if claimed is not None and claimed != user:
            return _error(422, f"receipt names user {str(claimed)[:80]!r}, not this device's")
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
    def _admin(self, request: Request) -> str:
        """The acting admin (``admin:root`` for the file's token, ``admin:<name>``)."""
        actor = self._admin_actor(request)
        if actor is None:
            raise Rejected(401, "admin token required")
        return actor

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
        data = await anyio.to_thread.run_sync(self.store.read_chunk, session, seq)
        if data is None:
            return _error(404, "no such chunk")
        return Response(data, media_type="application/zstd")

    async def admin_replay(self, request: Request) -> Response:
        """The session's replay page (docs/replay.md), screenshots inline, streamed."""
        from deskcorder.collector import replay
        from deskcorder.replay.model import StepSource

        self._admin(request)
        session = request.path_params["session"]
        if not valid_session(session):
            return _error(400, "invalid session id")
        steps = request.query_params.get("steps", "actions")
        if steps != "actions" and steps != "records":
            return _error(400, "steps must be actions or records")
        source: StepSource = "records" if steps == "records" else "actions"
        doc = await anyio.to_thread.run_sync(replay.session_document, self.store, session, source)
        if doc is None:
            return _error(404, "no such session")
        return StreamingResponse(
            replay.page(self.store, doc),
            media_type="text/html; charset=utf-8",
            headers=replay.headers(session),
        )

    def _user(self, request: Request) -> str:
        user = request.path_params["user"]
        if not valid_user(user):
            raise Rejected(400, "invalid user pseudonym")
        return str(user)

    def _person(self, request: Request) -> str:
        person = request.path_params["person"]
        if not PERSON_RE.match(person):
            raise Rejected(400, "invalid person pseudonym (p- and 32 hex digits)")
        return str(person)

    async def admin_export(self, request: Request) -> Response:
        actor = self._admin(request)
        user = self._user(request)
        await anyio.to_thread.run_sync(self.store.audit, actor, "export_user", user, {})
        return StreamingResponse(self.store.export_user(user), media_type="application/x-ndjson")

    async def admin_erase(self, request: Request) -> Response:
        actor = self._admin(request)
        user = self._user(request)
        counts = await anyio.to_thread.run_sync(self.store.erase_user, user, actor)
        return JSONResponse({"user": user, "erased": counts})

    async def admin_person(self, request: Request) -> Response:
        """``POST /v1/admin/people`` ``{"login": NAME}``: every pseudonym of a login.

        The login goes in the body (not the URL, which access logs keep) and is
        not stored; the audit log records the person pseudonym looked up.
        """
        actor = self._admin(request)
        body = await self._json_body(request)
        login = body.get("login") if isinstance(body, dict) else None
        if not isinstance(login, str) or not 0 < len(login) <= 256:
            return _error(400, 'body must be {"login": <login name>}')
        key = self.security.pseudonym_key
        if key is None:
            return _error(503, "this collector has no pseudonym key (--pseudonym-key-file)")
        person = person_of(key, login)
        devices = await anyio.to_thread.run_sync(lambda: self.store.devices(person=person))
        await anyio.to_thread.run_sync(
            self.store.audit, actor, "person_lookup", person, {"devices": len(devices)}
        )
        return JSONResponse(
            {
                "person": person,
                "users": sorted({d["user"] for d in devices}),
                "machines": sorted({d["machine"] for d in devices}),
                "devices": devices,
            }
        )

    async def admin_person_export(self, request: Request) -> Response:
        actor = self._admin(request)
        person = self._person(request)
        await anyio.to_thread.run_sync(self.store.audit, actor, "export_person", person, {})
        return StreamingResponse(
            self.store.export_person(person), media_type="application/x-ndjson"
        )

    async def admin_person_erase(self, request: Request) -> Response:
        actor = self._admin(request)
        person = self._person(request)
        counts = await anyio.to_thread.run_sync(self.store.erase_person, person, actor)
        return JSONResponse({"person": person, "erased": counts})

    def _device_param(self, request: Request) -> str:
        device = request.path_params["device"]
        if not valid_device(device):
            raise Rejected(400, "invalid device id")
        return str(device)

    async def admin_devices(self, request: Request) -> Response:
        self._admin(request)
        where = {
            k: v
            for k in ("user", "machine", "person")
            if (v := request.query_params.get(k)) is not None
        }
        if any(not valid_user(v) for v in where.values()):
            return _error(400, "invalid pseudonym")
        rows = await anyio.to_thread.run_sync(lambda: self.store.devices(**where))
        return JSONResponse({"devices": rows})

    async def admin_revoke(self, request: Request) -> Response:
        actor = self._admin(request)
        device = self._device_param(request)
        found = await anyio.to_thread.run_sync(self.store.revoke, device, actor)
        if not found:
            return _error(404, "no such device")
        return JSONResponse({"device": device, "revoked": True})

    async def admin_readmit(self, request: Request) -> Response:
        actor = self._admin(request)
        device = self._device_param(request)
        new_key = request.query_params.get("new_key", "false")
        if new_key not in ("true", "false"):
            return _error(400, "new_key must be true or false")
        found = await anyio.to_thread.run_sync(
            lambda: self.store.readmit(device, actor, new_key=new_key == "true")
        )
        if not found:
            return _error(404, "no such device (or not revoked, with new_key)")
        return JSONResponse({"device": device, "readmitted": True, "new_key": new_key == "true"})

    async def admin_audit(self, request: Request) -> Response:
        self._admin(request)
        after, limit = request.query_params.get("after", "0"), request.query_params.get("limit")
        if not after.isdigit() or len(after) > 18 or (limit is not None and not limit.isdigit()):
            return _error(400, "after and limit must be non-negative integers")
        count = min(int(limit or 1000), 10_000)
        rows = await anyio.to_thread.run_sync(self.store.audit_log, int(after), count)
        return JSONResponse({"entries": rows})

    async def admin_tokens(self, request: Request) -> Response:
        actor = self._admin(request)
        if request.method == "GET":
            rows = await anyio.to_thread.run_sync(self.store.admin_tokens)
            return JSONResponse({"tokens": rows})
        body = await self._json_body(request)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not NAME_RE.match(name) or name == "root":
            return _error(400, 'body must be {"name": <1-64 of A-Z a-z 0-9 _ . ->} (not "root")')
        token = await anyio.to_thread.run_sync(self.store.create_admin_token, name, actor)
        if token is None:
            return _error(409, f"an admin token named {name} exists (or existed)")
        return JSONResponse({"name": name, "token": token}, status_code=201)

    async def admin_token_revoke(self, request: Request) -> Response:
        actor = self._admin(request)
        name = request.path_params["name"]
        if not NAME_RE.match(name):
            return _error(400, "invalid token name")
        found = await anyio.to_thread.run_sync(self.store.revoke_admin_token, name, actor)
        if not found:
            return _error(404, "no live admin token of that name")
        return JSONResponse({"name": name, "revoked": True})


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


def _backlog(value: str | None) -> tuple[int, int] | None:
    """``X-Deskcorder-Backlog: <chunks> <bytes>`` (what the agent still has to send), or None
    when absent or malformed (it is information, never a reason to refuse a chunk)."""
    if not value:
        return None
    parts = value.split()
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 15 for p in parts):
        return None
    return int(parts[0]), int(parts[1])


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


def _failure(route: str, exc: BaseException) -> tuple[int, str]:
    """The status and message a refused request, or one the storage failed, answers with."""
    if isinstance(exc, Rejected):
        return exc.status, str(exc)
    if isinstance(exc, OSError):
        log.error("%s: storage error: %s", route, exc)
        return 503, f"storage error: {exc.strerror or exc}"
    log.error("%s: index error: %s", route, exc)  # one of the backend's index errors
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return 503, f"index error: {first}"


def _wrap(collector: Collector, name: str, handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        start = time.perf_counter()
        try:
            response = await handler(request)
        except Rejected as exc:
            response = _rejected(exc)
        except collector.failures as exc:
            response = _error(*_failure(name, exc))
        collector.metrics.request(name, response.status_code, time.perf_counter() - start)
        return response

    return endpoint


def create_app(
    store: Store,
    *,
    admin_token: str | None = None,
    enroll_secret: str | None = None,
    security: Security | None = None,
) -> CollectorApp:
    """The collector's ASGI app on ``store`` (a backend's: ``backends.open_local`` ...)."""
    c = Collector(store, admin_token=admin_token, enroll_secret=enroll_secret, security=security)
    table: list[tuple[str, str, Handler, list[str]]] = [
        ("/healthz", "health", c.health, ["GET"]),
        ("/readyz", "ready", c.ready, ["GET"]),
        ("/metrics", "metrics", c.metrics_route, ["GET"]),
        ("/v1/enroll", "enroll", c.enroll, ["POST"]),
        ("/v1/auth/challenge", "challenge", c.challenge, ["POST"]),
        ("/v1/auth/token", "token", c.token, ["POST"]),
        ("/v1/erasure", "erasure", c.erasure, ["POST"]),
        ("/v1/sessions/{session}/chunks/{seq}", "chunk_get", c.get_chunk, ["GET"]),
        ("/v1/blobs/{sha}", "blob", c.blob, ["HEAD", "PUT"]),
        ("/v1/consent", "consent", c.consent, ["POST"]),
        ("/v1/admin/sessions", "admin_sessions", c.admin_sessions, ["GET"]),
        ("/v1/admin/sessions/{session}", "admin_session", c.admin_session, ["GET"]),
        ("/v1/admin/sessions/{session}/chunks/{seq}", "admin_chunk", c.admin_chunk, ["GET"]),
        ("/v1/admin/sessions/{session}/replay", "admin_replay", c.admin_replay, ["GET"]),
        ("/v1/admin/users/{user}/export", "admin_export", c.admin_export, ["GET"]),
        ("/v1/admin/users/{user}", "admin_erase", c.admin_erase, ["DELETE"]),
        ("/v1/admin/devices", "admin_devices", c.admin_devices, ["GET"]),
        ("/v1/admin/devices/{device}/revoke", "admin_revoke", c.admin_revoke, ["POST"]),
        ("/v1/admin/devices/{device}/readmit", "admin_readmit", c.admin_readmit, ["POST"]),
        ("/v1/admin/people", "admin_person", c.admin_person, ["POST"]),
        ("/v1/admin/people/{person}/export", "admin_person_export", c.admin_person_export, ["GET"]),
        ("/v1/admin/people/{person}", "admin_person_erase", c.admin_person_erase, ["DELETE"]),
        ("/v1/admin/audit", "admin_audit", c.admin_audit, ["GET"]),
        ("/v1/admin/tokens", "admin_tokens", c.admin_tokens, ["GET", "POST"]),
        ("/v1/admin/tokens/{name}", "admin_token_revoke", c.admin_token_revoke, ["DELETE"]),
    ]
    routes = [
        Route(path, _wrap(c, name, handler), methods=methods, name=name)
        for path, name, handler, methods in table
    ]
    app = CollectorApp(routes=routes)  # PUT /v1/sessions/{session}/chunks/{seq}: see CollectorApp
    app.collector = c
    return app
