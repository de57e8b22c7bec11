"""The uploader: a named thread that ships sealed chunks to the collector.

Per pass, in order (oldest session first, chunks by seq):

1. make sure the device has a short-lived token (``<spool>/state/upload-token.json``):
   sign a challenge with the agent's key (``/v1/auth/token``), or enroll first
   (``/v1/enroll``: the org secret, the public key, the login and machine id,
   signed) when this collector does not know the device yet. A 401 later only
   means "sign a new challenge"; a revoked device (403 ``device_revoked``)
   stops uploading, keeps its data and says so, and asks again only at the
   next start or after ``REVOKED_RECHECK_S``;
2. for each blob the chunk's manifest references: HEAD, PUT when absent;
3. PUT the chunk; on a 2xx whose echoed sha256 equals the manifest's, delete
   the chunk and its manifest, then every blob no other unsent chunk refers to.

Steps 2-3 run for up to ``window`` chunks at once (a small thread pool sharing
the httpx client's keep-alive connections), so the collector's latency per
chunk overlaps; results are taken strictly in order: a chunk is deleted only
after every chunk before it was acknowledged (or rejected), and the first
failure stops the pass (chunks already in flight finish, but are kept and
sent again, idempotently, on the next pass). With a bandwidth cap the window
is 1.

Transient failures (network errors, 408, 429, 5xx) back off with full jitter
and honour ``Retry-After``; other 4xx move the chunk to ``rejected/`` with a
``.reason.json``: never deleted, never retried. ``retry.py`` holds the pure
decisions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from deskcorder import __version__
from deskcorder.devicekey import DeviceKey, b64encode
from deskcorder.errors import DeskcorderError
from deskcorder.host import Host
from deskcorder.identity import device_key
from deskcorder.policy.model import Upload as UploadPolicy
from deskcorder.storage.approval import is_approved, may_upload
from deskcorder.storage.chunk import (
    CHUNK_SUFFIX,
    MANIFEST_SUFFIX,
    PART_SUFFIX,
    Manifest,
    atomic_write,
    fsync_dir,
    read_manifest,
)
from deskcorder.storage.spool import SealedChunk, Spool

from .retry import (
    RETRY_AFTER_STATUSES,
    Backoff,
    Outcome,
    Throttle,
    classify_exception,
    classify_status,
    parse_retry_after,
)

log = logging.getLogger(__name__)

TOKEN_FILE = "upload-token.json"
REVOKED_FILE = "upload-revoked.json"
ERASURE_FILE = "erasure-request.json"  # written by `deskcorder consent withdraw`
ERASURE_DONE = "erasure-done.json"
STATUS_FILE = "upload-status.json"
TOKEN_MARGIN_S = 60.0  # renew a token this long before it expires
REVOKED_RECHECK_S = 6 * 3600.0  # a revoked device asks again this rarely (and at start)
RECEIPTS_LEDGER = "upload-receipts.json"
RESCAN_S = 5.0
HOLD_RECHECK_S = 30.0  # while uploads must wait: look again this often (or when woken)
SWEEP_EVERY_S = 600.0
PIECE = 16 * 1024
UPLOAD_WINDOW = 3  # chunks in flight at once (without a bandwidth cap)


Pending = SealedChunk  # a sealed chunk waiting for upload


class _Stop(Exception):
    """Ends the current chunk with an outcome other than OK."""

    def __init__(
        self,
        outcome: Outcome,
        message: str,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.retry_after = retry_after
        self.code = code


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def pending_chunks(spool_root: Path) -> list[Pending]:
    """Sealed chunks with a manifest, oldest session first, in seq order."""
    return Spool(spool_root).sealed_chunks()


def rejected_chunks(spool_root: Path) -> list[dict[str, Any]]:
    """Chunks the collector refused, with their reasons (for ``status`` and ``inspect``)."""
    out: list[dict[str, Any]] = []
    folder = spool_root / "rejected"
    if not folder.is_dir():
        return out
    for chunk in sorted(folder.glob(f"*/[0-9]*{CHUNK_SUFFIX}")):
        seq = chunk.name.split(".", 1)[0]
        reason: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            reason = json.loads(chunk.with_name(f"{seq}.reason.json").read_text())
        out.append(
            {
                "session": chunk.parent.name,
                "seq": int(seq),
                "path": str(chunk),
                "bytes": chunk.stat().st_size,
                "reason": reason.get("reason", "unknown"),
                "status": reason.get("status"),
                "at": reason.get("at"),
            }
        )
    return out


def build_client(cfg: UploadPolicy) -> httpx.Client:
    """An httpx client as policy says: TLS verification, CA bundle, client cert, proxy."""
    verify: ssl.SSLContext | bool
    if not cfg.verify_tls:
        verify = False
    else:
        try:
            verify = ssl.create_default_context(cafile=cfg.ca_bundle or None)
            if cfg.client_cert:
                verify.load_cert_chain(cfg.client_cert, cfg.client_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise DeskcorderError(f"upload TLS settings: {exc}") from exc
    return httpx.Client(
        base_url=cfg.endpoint,
        verify=verify,
        proxy=cfg.proxy or None,
        trust_env=True,
        timeout=httpx.Timeout(cfg.timeout_s),
        headers={"User-Agent": f"deskcorder/{__version__}"},
    )


class Uploader:
    """Agent component; also usable on its own (tests, benchmarks)."""

    name = "uploader"

    def __init__(
        self,
        cfg: UploadPolicy,
        spool_root: Path | None = None,
        *,
        claims: dict[str, str] | None = None,
        backoff_base: float = 1.0,
        window: int = UPLOAD_WINDOW,
    ) -> None:
        self.cfg = cfg
        self.claims = claims  # sent once at enrollment; None: this OS user, pseudonymous
        self.key: DeviceKey | None = None
        self._host: Host | None = None
        # the token bucket is not shared between threads: one chunk at a time when capped
        self.window = 1 if cfg.max_kbps > 0 else max(1, window)
        self._pool: ThreadPoolExecutor | None = None
        self.spool_root = Path(spool_root) if spool_root is not None else None
        self.device = ""
        self.on_freed: Callable[[], None] | None = None
        self.active_session: Callable[[], str | None] = lambda: None
        # why uploads must wait now (metered network, low battery: deskcorder.conditions)
        self.hold: Callable[[], str | None] = lambda: None
        self._backoff = Backoff(cap=cfg.backoff_max_s, base=backoff_base)
        self._throttle = Throttle(cfg.max_kbps * 1024.0)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._token: str | None = None
        self._token_expires = 0.0
        self.revoked: str | None = None  # the collector's words, while this device is revoked
        self._recheck_at = 0.0
        self.erasure: dict[str, Any] | None = None  # the last erasure the collector confirmed
        self._lock = threading.Lock()
        self.state = "idle"
        self.uploaded = 0
        self.uploaded_bytes = 0
        self.rejected = 0
        self.blobs_uploaded = 0
        self.blobs_missing = 0
        self.enrollments = 0
        self.receipts_sent = 0
        self.last_success: str | None = None
        self.last_error: str | None = None
        self.next_retry_at: float | None = None
        self.blob_sweep_age: float | None = None  # None: no sweep (no agent writes blobs)
        self._last_sweep = 0.0
        self.blobs_swept = 0
        self._backlog = [0, 0]  # chunks, bytes left to send (X-Deskcorder-Backlog)

    # -- component protocol ------------------------------------------------------------
    def start(self, host: Host | None = None) -> None:
        """Start uploading; with a ``host`` (the agent), its spool and session."""
        if host is not None:
            from deskcorder.identity import claims

            self._host = host
            self.spool_root = host.spool.root
            self.claims = self.claims or claims(host.policy.identity)
            self.on_freed = host.spool.invalidate_usage
            self.active_session = lambda: str(host.session_id)
            host.on_sealed.append(self.wake)
            self.hold = host.conditions.upload_hold
            host.conditions.on_change.append(self.wake)
            # a blob this old that no manifest names can no longer be in the open chunk
            self.blob_sweep_age = 2.0 * host.policy.spool.chunk_max_age_s + 60.0
        if self.spool_root is None:
            raise DeskcorderError("uploader: no spool folder")
        if self.claims is None:
            from deskcorder.identity import claims
            from deskcorder.policy.model import Identity

            self.claims = claims(Identity())
        self.key = device_key(self._root)
        self.device = self.key.device
        self._load_status()
        self._load_revoked()
        self._thread = threading.Thread(target=self._run, name="deskcorder-uploader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._save_status()
        if self._thread is None or not self._thread.is_alive():
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            if self._client is not None:
                self._client.close()

    def wake(self, manifest: Manifest | None = None) -> None:
        self._wake.set()

    def status(self) -> dict[str, object]:
        root = self._root
        pending = pending_chunks(root)
        size = 0
        for item in pending:
            with contextlib.suppress(OSError):
                size += item.path.stat().st_size
        retry_in = None
        if self.next_retry_at is not None:
            retry_in = round(max(0.0, self.next_retry_at - time.monotonic()), 1)
        return {
            "endpoint": self.cfg.endpoint,
            "state": self.state,
            "enrolled": self._token is not None or (root / "state" / TOKEN_FILE).exists(),
            "chunks_pending": len(pending),
            "chunks_awaiting_review": (
                sum(not is_approved(item) for item in pending) if self.cfg.review else 0
            ),
            "bytes_pending": size,
            "chunks_rejected": len(rejected_chunks(root)),
            "chunks_uploaded": self.uploaded,
            "bytes_uploaded": self.uploaded_bytes,
            "blobs_uploaded": self.blobs_uploaded,
            "blobs_missing": self.blobs_missing,
            "blobs_swept": self.blobs_swept,
            "receipts_sent": self.receipts_sent,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "next_retry_in_s": retry_in,
            "device": self.device,
            "revoked": self.revoked,
            "consent_withdrawn": self._withdrawn(),
            "erasure_pending": (root / "state" / ERASURE_FILE).exists(),
            "erasure": self.erasure,
        }

    # -- loop ----------------------------------------------------------------------------
    @property
    def _root(self) -> Path:
        assert self.spool_root is not None
        return self.spool_root

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            why = self.hold()
            if why is not None:  # woken when conditions change, or looks again soon
                self.state = f"waiting: {why}"
                self._wake.wait(HOLD_RECHECK_S)
                continue
            try:
                delay = self.run_pass()
            except Exception as exc:  # a bug or a local disk problem: keep data, back off
                log.exception("upload pass failed")
                self._error(f"{type(exc).__name__}: {exc}")
                delay = self._backoff.next_delay()
            if delay is not None:
                self.state = "backoff"
                self.next_retry_at = time.monotonic() + delay
                self._stop.wait(delay)
                self.next_retry_at = None
                continue
            if self.revoked is None and self.state != "consent withdrawn":
                self.state = "idle"
            self._wake.wait(RESCAN_S)

    def run_pass(self) -> float | None:
        """Upload everything pending once. Returns a delay to wait before retrying, or None."""
        pending = pending_chunks(self._root)
        self._clean_orphans()
        self._sweep_blobs()
        receipts = self._unsent_receipts()
        erasure = (self._root / "state" / ERASURE_FILE).exists()
        withdrawn = self._withdrawn()
        # after `consent withdraw` nothing more is uploaded (until `consent accept`)
        ready = [] if withdrawn else [i for i in pending if may_upload(i, self.cfg.review)]
        if not ready and not receipts and not erasure:
            self._show_state(withdrawn)
            return None
        sizes = 0
        for item in ready:
            with contextlib.suppress(OSError):
                sizes += item.path.stat().st_size
        with self._lock:  # reported with each chunk: the collector's device inventory
            self._backlog = [len(ready), sizes]
        if self._client is None:
            self._client = build_client(self.cfg)
        if self.revoked is not None:
            if erasure:  # honoured for a revoked device too (signed with its key)
                try:
                    self._send_erasure()
                except _Stop as stop:
                    return self._stopped(stop)
            if time.monotonic() < self._recheck_at:
                self._show_state(withdrawn)
                return None
            self._recheck_at = time.monotonic() + REVOKED_RECHECK_S
        try:
            self._ensure_token()
            if receipts:
                self._send_receipts(receipts)
            if erasure:
                self._send_erasure()
        except _Stop as stop:
            return self._stopped(stop)
        if not ready:
            self._show_state(withdrawn)
            return None
        return self._upload_all(ready)

    def _upload_all(self, ready: list[Pending]) -> float | None:
        refs = self._blob_refs()
        todo = iter(ready)
        self.state = "uploading"
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.window, thread_name_prefix="deskcorder-upload")
        pool = self._pool
        inflight: deque[tuple[Pending, Future[Manifest]]] = deque()

        def fill() -> None:
            # a withdrawal (`deskcorder consent withdraw`) stops the next chunk at once
            while len(inflight) < self.window and not self._stop.is_set() and not self.hold():
                item = next(todo, None)
                if item is None or self._withdrawn():
                    return
                inflight.append((item, pool.submit(self._upload, item)))

        try:
            fill()
            while inflight:
                item, future = inflight.popleft()
                try:
                    manifest = future.result()
                except _Stop as stop:
                    if stop.outcome is Outcome.REJECT:
                        self._reject(item, str(stop))
                        fill()
                        continue
                    return self._stopped(stop)
                self._delete(item, manifest, refs)
                self._backoff.reset()
                fill()
        finally:
            # chunks still in flight after a failure are kept (not deleted, out of order);
            # wait for them so that the next pass never races them
            for _, future in inflight:
                with contextlib.suppress(BaseException):
                    future.result()
        return None

    def _stopped(self, stop: _Stop) -> float | None:
        """What a failed step means: revoked (stop, no retry), a new token, or a retry."""
        if stop.outcome is Outcome.REVOKED:
            self._set_revoked(str(stop))
            return None
        self._error(str(stop))
        if stop.outcome is Outcome.REAUTH:
            self._forget_token()
        return self._backoff.next_delay(stop.retry_after)

    def _show_state(self, withdrawn: bool) -> None:
        if self.revoked is not None:
            self.state = "revoked"
            return
        if withdrawn:
            self.state = "consent withdrawn"
            self._alert(
                "uploads stopped: you withdrew your consent; nothing more is sent "
                "(`deskcorder consent accept` to resume)"
            )
            return
        self.state = "idle" if self.state == "consent withdrawn" else self.state
        self._alert(None)

    # -- consent and erasure -------------------------------------------------------------
    def _withdrawn(self) -> bool:
        """The user's latest consent receipt withdraws consent (read when the folder changes)."""
        folder = self._root / "state" / "consent"
        try:
            stamp = folder.stat().st_mtime_ns
        except OSError:
            return False
        if stamp != self._consent_seen[0]:
            from deskcorder.capture.consent import receipts

            latest = receipts(self._root)
            self._consent_seen = (stamp, bool(latest) and latest[-1].action == "withdraw")
        return self._consent_seen[1]

    _consent_seen: tuple[int, bool] = (-1, False)

    def _send_erasure(self) -> None:
        """Ask the collector to erase what this device uploaded (signed: a revoked device
        has no token); keep its answer."""
        assert self.key is not None
        path = self._root / "state" / ERASURE_FILE
        challenge = self._challenge()
        body = {
            "device": self.device,
            "challenge": challenge,
            "signature": self.key.sign("erase", challenge),
        }
        resp = self._request("POST", "/v1/erasure", json=body)
        if resp.status_code == 401 and _code(resp) == "not_enrolled":
            path.unlink(missing_ok=True)  # this collector holds nothing of this device
            return
        self._check(resp, "erasure request")
        try:
            request = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            request = {}
        done = {**request, "confirmed": _now_iso(), "erased": resp.json().get("erased")}
        atomic_write(self._root / "state" / ERASURE_DONE, json.dumps(done).encode())
        path.unlink(missing_ok=True)
        self.erasure = done
        log.warning("the collector erased this device's data: %s", done["erased"])

    # -- revocation ----------------------------------------------------------------------
    def _set_revoked(self, message: str) -> None:
        first = self.revoked is None
        self.revoked = message
        self.state = "revoked"
        self._forget_token()
        self._recheck_at = time.monotonic() + REVOKED_RECHECK_S
        with contextlib.suppress(OSError):
            body = {"at": _now_iso(), "endpoint": self.cfg.endpoint, "device": self.device}
            atomic_write(self._revoked_path(), json.dumps({**body, "message": message}).encode())
        self._error(message)
        line = (
            "uploads stopped: the collector's administrator revoked this device; "
            "recording goes on and everything is kept on this machine"
        )
        self._alert(line)
        if first:
            log.error("upload: %s; %s", message, line)
            with contextlib.suppress(Exception):
                from deskcorder.platform.desktop import send_notification

                send_notification("deskcorder: uploads stopped", line, "critical")

    def _clear_revoked(self) -> None:
        if self.revoked is not None:
            log.warning("upload: this device was readmitted; uploading again")
        self.revoked = None
        self._revoked_path().unlink(missing_ok=True)
        self._alert(None)

    def _revoked_path(self) -> Path:
        return self._root / "state" / REVOKED_FILE

    def _load_revoked(self) -> None:
        """A revocation seen before the last stop: one check now, then rarely."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            saved = json.loads(self._revoked_path().read_text())
            if saved.get("endpoint") == self.cfg.endpoint and saved.get("device") == self.device:
                self.revoked = str(saved.get("message") or "device revoked")
                self.state = "revoked"
                self._recheck_at = 0.0
                self._alert("uploads stopped: this device is revoked; data is kept here")
        with contextlib.suppress(OSError, ValueError):
            self.erasure = json.loads((self._root / "state" / ERASURE_DONE).read_text())

    def _alert(self, line: str | None) -> None:
        """Tell the person (the tray shows host alerts); None clears it."""
        if self._host is None:
            return
        if line is None:
            self._host.alerts.pop(self.name, None)
        else:
            self._host.alerts[self.name] = line

    # -- token ---------------------------------------------------------------------------
    def _token_path(self) -> Path:
        return self._root / "state" / TOKEN_FILE

    def _ensure_token(self) -> str:
        """A device token valid for at least another minute (renewed by signing a challenge)."""
        now = time.time()
        if self._token is not None and self._token_expires - TOKEN_MARGIN_S > now:
            return self._token
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads(self._token_path().read_text())
            if (
                saved.get("endpoint") == self.cfg.endpoint
                and saved.get("device") == self.device
                and float(saved["expires_at"]) - TOKEN_MARGIN_S > now
                and self.revoked is None
            ):
                self._token, self._token_expires = str(saved["token"]), float(saved["expires_at"])
                return self._token
        from deskcorder.devicekey import claims_digest
        from deskcorder.identity import enrolled, save_enrolled

        assert self.claims is not None
        known = enrolled(self._root)
        reply: dict[str, Any] | None = None
        if (
            known.get("endpoint") == self.cfg.endpoint
            and known.get("device") == self.device
            and known.get("claims_sha256") == claims_digest(self.claims)
        ):
            try:
                reply = self._token_by_signature()
            except _Stop as stop:
                if stop.code != "not_enrolled":  # this collector forgot us: enroll again
                    raise
        if reply is None:
            reply = self._enroll()
        try:
            token, ttl = str(reply["token"]), float(reply["expires_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _Stop(Outcome.RETRY, "the collector's answer has no token") from exc
        save_enrolled(
            self._root, endpoint=self.cfg.endpoint, device=self.device, reply=reply,
            sent=self.claims,
        )  # fmt: skip
        expires = time.time() + ttl
        body = {"endpoint": self.cfg.endpoint, "device": self.device, "token": token}
        atomic_write(self._token_path(), json.dumps({**body, "expires_at": expires}).encode())
        self._token, self._token_expires = token, expires
        self._clear_revoked()
        return token

    def _challenge(self) -> str:
        resp = self._request("POST", "/v1/auth/challenge", json={})
        self._check_auth(resp, "challenge", 200)
        try:
            return str(resp.json()["challenge"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _Stop(Outcome.RETRY, "challenge answer has no challenge") from exc

    def _token_by_signature(self) -> dict[str, Any]:
        assert self.key is not None
        challenge = self._challenge()
        resp = self._request(
            "POST",
            "/v1/auth/token",
            json={
                "device": self.device,
                "challenge": challenge,
                "signature": self.key.sign("token", challenge),
            },
        )
        self._check_auth(resp, "token", 200)
        return dict(resp.json())

    def _enroll(self) -> dict[str, Any]:
        assert self.key is not None and self.claims is not None
        secret = self.cfg.enroll_secret.get_secret_value()
        if not secret:
            raise _Stop(Outcome.RETRY, "upload.enroll_secret is not set: cannot enroll")
        self.state = "enrolling"
        challenge = self._challenge()
        resp = self._request(
            "POST",
            "/v1/enroll",
            json={
                "public_key": b64encode(self.key.public),
                "challenge": challenge,
                "signature": self.key.sign("enroll", challenge, self.claims),
                "claims": self.claims,
                "agent": __version__,
            },
            headers={"Authorization": f"Bearer {secret}"},
        )
        self._check_auth(resp, "enroll", 201)
        self.enrollments += 1
        return dict(resp.json())

    def _check_auth(self, resp: httpx.Response, what: str, expected: int) -> None:
        """Enrollment and token answers: revoked stops; anything else keeps the data, retries."""
        if resp.status_code == expected:
            return
        code = _code(resp)
        outcome = classify_status(resp.status_code, code)
        retry_after = None
        if resp.status_code in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
        outcome = Outcome.REVOKED if outcome is Outcome.REVOKED else Outcome.RETRY
        raise _Stop(
            outcome, f"{what} refused: HTTP {resp.status_code} {_why(resp)}", retry_after, code
        )

    def _forget_token(self) -> None:
        self._token = None
        self._token_expires = 0.0
        self._token_path().unlink(missing_ok=True)

    # -- HTTP ----------------------------------------------------------------------------
    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        assert self._client is not None
        try:
            return self._client.request(method, url, **kwargs)
        except Exception as exc:
            classify_exception(exc)  # re-raises anything that is not a network error
            raise _Stop(Outcome.RETRY, f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _check(self, resp: httpx.Response, what: str) -> None:
        code = _code(resp) if resp.status_code in (401, 403) else None
        outcome = classify_status(resp.status_code, code)
        if outcome is Outcome.OK:
            return
        retry_after = None
        if resp.status_code in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(resp.headers.get("retry-after"))
        raise _Stop(outcome, f"{what}: HTTP {resp.status_code} {_why(resp)}", retry_after, code)

    def _body(self, data: bytes) -> bytes | Iterator[bytes]:
        if self.cfg.max_kbps <= 0:
            return data

        def pieces() -> Iterator[bytes]:
            for start in range(0, len(data), PIECE):
                piece = data[start : start + PIECE]
                wait = self._throttle.delay(len(piece), time.monotonic())
                if wait > 0 and self._stop.wait(wait):
                    raise _Stop(Outcome.RETRY, "stopping")
                yield piece

        return pieces()

    def _upload(self, item: Pending) -> Manifest:
        try:
            manifest = read_manifest(item.manifest_path)
            data = item.path.read_bytes()
        except (OSError, DeskcorderError) as exc:
            raise _Stop(Outcome.REJECT, f"cannot read the local chunk: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest.sha256 or len(data) != manifest.bytes:
            raise _Stop(Outcome.REJECT, "the local chunk does not match its manifest digest")
        for sha in manifest.blobs:
            self._upload_blob(sha)
        url = f"/v1/sessions/{item.session}/chunks/{item.seq}"
        resp = self._request(
            "PUT",
            url,
            content=self._body(data),
            headers={
                **self._auth(),
                "Content-Type": "application/zstd",
                "Content-Length": str(len(data)),
                "X-Deskcorder-SHA256": digest,
                "X-Deskcorder-Backlog": self._backlog_header(),
            },
        )
        self._check(resp, f"chunk {item.session}/{item.seq:06d}")
        try:
            echoed = resp.json().get("sha256")
        except ValueError:
            echoed = None
        if echoed != digest:
            raise _Stop(
                Outcome.RETRY,
                f"chunk {item.session}/{item.seq:06d}: acknowledged digest {echoed!r} "
                "does not match; keeping the chunk",
            )
        with self._lock:
            self.uploaded_bytes += len(data)
            self._backlog = [max(0, self._backlog[0] - 1), max(0, self._backlog[1] - len(data))]
        return manifest

    def _backlog_header(self) -> str:
        """``<chunks> <bytes>`` still to send in this pass, this chunk included."""
        with self._lock:
            return f"{self._backlog[0]} {self._backlog[1]}"

    def _upload_blob(self, sha: str) -> None:
        path = self._root / "blobs" / sha[:2] / sha
        head = self._request("HEAD", f"/v1/blobs/{sha}", headers=self._auth())
        if head.status_code == 200:
            return
        if head.status_code != 404:
            self._check(head, f"blob {sha[:12]}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            with self._lock:
                self.blobs_missing += 1
            log.warning("blob %s referenced by a chunk is missing locally", sha)
            return
        if hashlib.sha256(data).hexdigest() != sha:
            with self._lock:
                self.blobs_missing += 1
            log.warning("blob %s is damaged locally; not uploaded", sha)
            return
        resp = self._request(
            "PUT",
            f"/v1/blobs/{sha}",
            content=self._body(data),
            headers={
                **self._auth(),
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(data)),
            },
        )
        self._check(resp, f"blob {sha[:12]}")
        with self._lock:
            self.blobs_uploaded += 1

    # -- consent receipts ----------------------------------------------------------------
    def _receipts_ledger(self) -> Path:
        return self._root / "state" / RECEIPTS_LEDGER

    def _sent_receipts(self) -> set[str]:
        try:
            return set(json.loads(self._receipts_ledger().read_text()))
        except (OSError, ValueError, TypeError):
            return set()

    def _unsent_receipts(self) -> list[Path]:
        """Consent receipts (``<spool>/state/consent/*.json``, kept locally) not yet sent."""
        folder = self._root / "state" / "consent"
        if not folder.is_dir():
            return []
        sent = self._sent_receipts()
        return [p for p in sorted(folder.glob("*.json")) if p.name not in sent]

    def _send_receipts(self, receipts: list[Path]) -> None:
        sent = self._sent_receipts()
        for path in receipts:
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # being written, or unreadable: the consent module logs it
            resp = self._request("POST", "/v1/consent", json=body, headers=self._auth())
            if classify_status(resp.status_code) is Outcome.REJECT:
                log.error("consent receipt %s refused: HTTP %s", path.name, resp.status_code)
                self._error(f"consent receipt {path.name} refused: HTTP {resp.status_code}")
            else:
                self._check(resp, f"consent receipt {path.name}")
            sent.add(path.name)
            atomic_write(self._receipts_ledger(), json.dumps(sorted(sent)).encode())
            self.receipts_sent += 1

    # -- local bookkeeping ---------------------------------------------------------------
    def _blob_refs(self) -> Counter[str]:
        refs: Counter[str] = Counter()
        root = self._root
        for man in [
            *root.glob(f"sessions/*/[0-9]*{MANIFEST_SUFFIX}"),
            *root.glob(f"rejected/*/[0-9]*{MANIFEST_SUFFIX}"),
        ]:
            with contextlib.suppress(DeskcorderError):
                refs.update(read_manifest(man).blobs)
        return refs

    def _delete(self, item: Pending, manifest: Manifest, refs: Counter[str]) -> None:
        # no fsync here: a deletion lost in a crash only means one idempotent re-upload
        item.path.unlink(missing_ok=True)
        item.manifest_path.unlink(missing_ok=True)
        item.approval_path.unlink(missing_ok=True)
        for sha in manifest.blobs:
            refs[sha] -= 1
            if refs[sha] <= 0:
                del refs[sha]
                (self._root / "blobs" / sha[:2] / sha).unlink(missing_ok=True)
        self._remove_session_dir(item.path.parent)
        self.uploaded += 1
        self.last_success = _now_iso()
        if time.monotonic() - self._status_saved >= 1.0:
            self._save_status()
        if self.on_freed is not None:
            self.on_freed()

    def _sweep_blobs(self, now: float | None = None) -> None:
        """Delete blobs no manifest references any more (their chunk was dropped by the
        quota, expired or deleted in review), once older than ``blob_sweep_age``."""
        if self.blob_sweep_age is None:
            return
        if now is None and time.monotonic() - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = time.monotonic()
        refs = self._blob_refs()
        limit = (time.time() if now is None else now) - self.blob_sweep_age
        for blob in self._root.glob("blobs/*/*"):
            try:
                if blob.name not in refs and blob.stat().st_mtime < limit:
                    blob.unlink()
                    self.blobs_swept += 1
            except OSError:
                continue

    def _remove_session_dir(self, folder: Path) -> None:
        if folder.name == self.active_session():
            return
        with contextlib.suppress(OSError):
            folder.rmdir()

    def _clean_orphans(self) -> None:
        """Manifests left without their chunk by a crash; empty folders of past sessions."""
        for folder in self._root.glob("sessions/*/"):
            self._remove_session_dir(folder)
        for man in self._root.glob(f"sessions/*/[0-9]*{MANIFEST_SUFFIX}"):
            seq = man.name.split(".", 1)[0]
            if (
                not man.with_name(f"{seq}{CHUNK_SUFFIX}").exists()
                and not man.with_name(f"{seq}{PART_SUFFIX}").exists()
            ):
                man.unlink(missing_ok=True)

    def _reject(self, item: Pending, reason: str) -> None:
        log.error("chunk %s/%06d rejected: %s", item.session, item.seq, reason)
        folder = self._root / "rejected" / item.session
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = None
        if "HTTP " in reason:
            with contextlib.suppress(ValueError, IndexError):
                status = int(reason.split("HTTP ", 1)[1].split()[0])
        body = {
            "reason": reason,
            "status": status,
            "at": _now_iso(),
            "collector": self.cfg.endpoint,
        }
        atomic_write(folder / f"{item.seq:06d}.reason.json", json.dumps(body).encode())
        os.replace(item.path, folder / item.path.name)
        if item.manifest_path.exists():
            os.replace(item.manifest_path, folder / item.manifest_path.name)
        item.approval_path.unlink(missing_ok=True)
        fsync_dir(folder)
        fsync_dir(item.path.parent)
        self._remove_session_dir(item.path.parent)
        self.rejected += 1
        self._error(f"chunk {item.session}/{item.seq:06d} rejected: {reason}")

    def _error(self, message: str) -> None:
        log.warning("upload: %s", message)
        self.last_error = f"{_now_iso()} {message}"
        self._save_status()

    def _status_path(self) -> Path:
        return self._root / "state" / STATUS_FILE

    def _save_status(self) -> None:
        self._status_saved = time.monotonic()
        body = {
            "uploaded_total": self._uploaded_total + self.uploaded,
            "last_success": self.last_success,
            "last_error": self.last_error,
        }
        with contextlib.suppress(OSError):
            (self._root / "state").mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self._status_path(), json.dumps(body).encode())

    _uploaded_total = 0
    _status_saved = 0.0

    def _load_status(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            saved = json.loads(self._status_path().read_text())
            self._uploaded_total = int(saved.get("uploaded_total") or 0)
            self.last_success = saved.get("last_success")
            self.last_error = saved.get("last_error")


def _code(resp: httpx.Response) -> str | None:
    """The collector's machine-readable ``code`` in an error answer, if any."""
    with contextlib.suppress(ValueError, AttributeError):
        code = resp.json().get("code")
        if isinstance(code, str):
            return code
    return None


def _why(resp: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        error = resp.json().get("error")
        if isinstance(error, str):
            return f"({error[:200]})"
    return f"({resp.reason_phrase})" if resp.reason_phrase else ""
