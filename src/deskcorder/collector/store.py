"""What the collector stores, behind one interface: an index of rows and the object bytes.

* The **index** (``Index``) holds devices and their tokens, sessions and
  their owners, chunk rows (digest, size, records), blob rows, consent
  receipts and what an erasure removed. It is the truth about what was
  acknowledged: a chunk is acknowledged only once its row is committed.
* The **objects** (``Objects``) hold the bytes: chunks exactly as the agent
  sealed them, and screenshot blobs, content-addressed.

Two backends (``backends/``): ``local`` (files on local disk + SQLite, the
default, zero set-up) and ``fleet`` (an S3-compatible bucket + PostgreSQL,
for several stateless instances). ``Store`` holds what both share: the
checks of a chunk PUT, the answers to duplicates, the order of the steps,
export and erasure. Where each step's bytes go and how rows are committed
is the backend's; the index decides *when* the object work runs inside its
transaction (``commit_chunks`` and ``erase_user`` take it as a callback),
because that order is what makes a PUT durable and idempotent
(docs/collector.md, "Idempotency and order").
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from deskcorder.errors import FormatError
from deskcorder.storage.chunk import iter_lines

from .base import (
    Body,
    DeviceAuth,
    Enrollment,
    Job,
    Limits,
    PutResult,
    Rejected,
)
from .ingest import Ingest
from .validate import ChunkInfo, validate_chunk

log = logging.getLogger(__name__)

__all__ = [
    "Body",
    "Erasure",
    "Index",
    "Objects",
    "PutResult",
    "Rejected",
    "Store",
    "StoreReader",
    "token_digest",
]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Erasure:
    """What an erasure removes: ``sessions`` (with their chunks and the screenshots no other
    chunk names) and the receipts ``receipts_of`` selects; audited as ``action`` on
    ``target`` by ``actor``, in the transaction that deletes the rows."""

    user: str  # the user pseudonym whose receipts go too ("" when none do)
    sessions: list[str] = field(default_factory=list)
    receipt_devices: list[str] | None = None  # instead of ``user``: these devices' receipts
    actor: str = "admin"
    action: str = "erase_user"
    target: str = ""
    chunks: list[tuple[str, int, str]] = field(default_factory=list)  # session, seq, sha256
    blobs: list[str] = field(default_factory=list)  # no other chunk references them
    receipts: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "sessions": len(self.sessions),
            "chunks": len(self.chunks),
            "blobs": len(self.blobs),
            "receipts": self.receipts,
        }


class Index(Protocol):
    """The rows. Methods are called from worker threads unless they say otherwise."""

    errors: tuple[type[BaseException], ...]
    """The index's own errors: a request failing with one is answered 503."""

    blocking_lookups: bool
    """Look-ups may wait on the network: the HTTP layer calls them in a worker thread
    (the local index answers from memory or its own file, on the event loop)."""

    # -- devices, tokens, revocation (docs/security.md) --------------------------------
    def challenge_key(self) -> bytes:
        """The key that signs challenges: random, made once, shared by every instance."""

    def device(self, device: str) -> dict[str, Any] | None: ...

    def devices(self, **where: str) -> list[dict[str, Any]]:
        """Devices (the inventory), optionally only those whose user/machine/person match."""

    def consume_challenge(self, device: str, issued: int) -> None:
        """Use a verified challenge for something other than a token (an erasure)."""

    def enroll(self, e: Enrollment, ttl_s: float) -> str:
        """Register (or re-register) a device whose signature was verified; a new token."""

    def issue_token(self, device: str, challenge_issued: int, ttl_s: float) -> str:
        """A new token for an enrolled device whose signature was verified."""

    def auth(self, token: str, *, cached: bool = False) -> DeviceAuth | None:
        """What a live token stands for (None: unknown, expired or revoked)."""

    def revoke(self, device: str, actor: str) -> bool: ...

    def readmit(self, device: str, actor: str, *, new_key: bool = False) -> bool: ...

    def admin_actor(self, token: str) -> str | None:
        """The name of a live named admin token (None: unknown or revoked)."""

    def create_admin_token(self, name: str, actor: str) -> str | None: ...

    def revoke_admin_token(self, name: str, actor: str) -> bool: ...

    def admin_tokens(self) -> list[dict[str, Any]]: ...

    # -- sessions and chunks -----------------------------------------------------------
    def session_owner(self, session: str) -> str | None:
        """The device that owns ``session`` (may be called on the event loop)."""

    def chunk_digest(self, session: str, seq: int) -> str | None:
        """The digest of a committed chunk, else None."""

    def chunk_state(self, job: Job) -> tuple[str | None, str | None]:
        """Validator thread: ``job``'s session owner and the digest already indexed under
        its key (None, None for a new session); may note what it read in ``job.ticket``."""

    def commit_chunks(
        self, batch: list[Job], place: Callable[[list[Job]], None]
    ) -> dict[tuple[str, int], str | Rejected]:
        """Index a batch of validated chunks in one transaction.

        Returns, for the keys of some jobs, the digest already indexed there
        (a duplicate: nothing of it is written) or the refusal found at commit
        time; ``place`` is called with the others inside the transaction,
        before their rows are written.
        """

    def purging(self, sessions: list[str]) -> AbstractContextManager[None]:
        """Held while objects of ``sessions`` are deleted outside an erasure (orphans)."""

    # -- blobs and receipts ------------------------------------------------------------
    def has_blob(self, device: str, sha: str) -> bool:
        """``device`` uploaded blob ``sha`` (its row exists)."""

    def add_blob(self, device: str, sha: str, size: int) -> bool:
        """Record ``device``'s upload of blob ``sha``; False if already recorded; refused
        (``revoked_error``) for a revoked device."""

    def add_receipt(self, device: str, user: str, text: str) -> tuple[int, bool]:
        """Store a receipt (canonical JSON); the same one from the same device is kept once."""

    def receipts(
        self, user: str | None = None, *, devices: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Consent receipts of a user pseudonym, or of the given devices."""

    # -- admin -------------------------------------------------------------------------
    def sessions(
        self, user: str | None = None, *, device: str | None = None, person: str | None = None
    ) -> list[dict[str, Any]]:
        """Sessions with their chunk totals, optionally one user's, device's or person's."""

    def chunks(self, session: str) -> list[dict[str, Any]]:
        """The chunk rows of ``session`` in seq order."""

    def chunk_blobs(self, session: str) -> list[str]:
        """The screenshots ``session``'s chunks reference."""

    def erase(self, erasure: Erasure, remove: Callable[[Erasure], None]) -> Erasure:
        """Delete the rows ``erasure`` names (filling in what went) and audit it; ``remove``
        deletes the objects (the index decides when, relative to its transaction)."""

    def expire(self, cutoff: float, remove: Callable[[Erasure], None]) -> Erasure | None:
        """Delete the sessions whose last chunk arrived before ``cutoff`` (retention), and
        record it in the audit log; None if another instance is doing it right now."""

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        """Append an entry to the audit log (append-only: never updated or deleted)."""

    def audit_log(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit entries with an id above ``after``, oldest first."""

    def counts(self) -> dict[str, int]: ...

    def gauges(self) -> dict[str, float]:
        """The backend's own gauges for /metrics (the fleet one: its connection pool)."""

    def ping(self) -> None:
        """Raise unless the index answers a query (``/readyz``)."""

    def close(self) -> None: ...


class Objects(Protocol):
    """The bytes. Called from worker threads."""

    def new_body(self) -> Body:
        """Where a request body waits while it is received (on the event loop)."""

    def stage_chunk(self, job: Job) -> None:
        """Validator thread: write a checked chunk's bytes (not yet acknowledged)."""

    def settle(self, batch: list[Job]) -> None:
        """Committer thread, before the index transaction: make staged bytes durable."""

    def place_chunks(self, jobs: list[Job]) -> None:
        """Committer thread, inside the index transaction: put new chunks in place."""

    def drop_staged(self, jobs: list[Job]) -> None:
        """Delete what was staged for jobs that were refused at commit (``Index.purging``)."""

    def open_chunk(self, session: str, seq: int, sha: str) -> IO[bytes]:
        """A stored chunk's bytes, to read from the start (closed by the caller)."""

    def has_blob(self, sha: str) -> bool: ...

    def put_blob(self, sha: str, body: Body) -> None:
        """Store a blob (content-addressed: an existing one is kept as it is)."""

    def read_blob(self, sha: str) -> bytes | None:
        """A blob's bytes, or None if it is not stored."""

    def remove(self, erasure: Erasure) -> None:
        """Delete the objects of an erasure (and verify they are gone)."""

    def describe(self) -> str:
        """Where the bytes are, for the start-up line."""

    def ping(self) -> None:
        """Raise unless the bytes' store answers (``/readyz``)."""

    def close(self) -> None: ...


class ReadIndex(Protocol):
    """What reading a collector's data needs of an index (a part of ``Index``)."""

    def sessions(
        self, user: str | None = None, *, device: str | None = None, person: str | None = None
    ) -> list[dict[str, Any]]: ...

    def chunks(self, session: str) -> list[dict[str, Any]]: ...

    def chunk_digest(self, session: str, seq: int) -> str | None: ...

    def close(self) -> None: ...


class ReadObjects(Protocol):
    """What reading a collector's data needs of the objects (a part of ``Objects``)."""

    def open_chunk(self, session: str, seq: int, sha: str) -> IO[bytes]: ...

    def has_blob(self, sha: str) -> bool: ...

    def read_blob(self, sha: str) -> bytes | None: ...

    def blob_file(self, sha: str) -> Path | None:
        """A local file holding the blob (local backend), else None."""

    def close(self) -> None: ...


class StoreReader:
    """A collector's data opened to read only (``deskcorder dataset build --from``).

    Made by a backend's read-only opener (``open_local_reader``,
    ``open_fleet_reader``): no PUT pipeline, no threads, nothing written, so a
    collector serving the same data is not disturbed. Only what the index holds
    is read: a session's chunks are the indexed (acknowledged) rows.
    """

    def __init__(self, index: ReadIndex, objects: ReadObjects, backend: str, where: str) -> None:
        self.index = index
        self.objects = objects
        self.backend = backend
        self.where = where  # for messages: the folder, or s3://BUCKET/PREFIX

    def sessions(self) -> list[dict[str, Any]]:
        """Every session with the pseudonyms the collector gave its device
        (``session``, ``device``, ``user``, ``machine``) and its chunk totals."""
        return self.index.sessions()

    def chunks(self, session: str) -> list[dict[str, Any]]:
        """The indexed chunks of ``session`` (``seq``, ``sha256`` ...) in seq order."""
        return self.index.chunks(session)

    def read_chunk(self, session: str, seq: int, sha256: str) -> bytes | None:
        """The chunk's bytes; None when it was erased since it was listed."""
        try:
            with self.objects.open_chunk(session, seq, sha256) as fh:
                return fh.read()
        except OSError:
            if self.index.chunk_digest(session, seq) != sha256:
                return None  # erased (or expired) meanwhile: not to be exported
            raise

    def has_blob(self, sha256: str) -> bool:
        return self.objects.has_blob(sha256)

    def read_blob(self, sha256: str) -> bytes | None:
        return self.objects.read_blob(sha256)

    def blob_file(self, sha256: str) -> Path | None:
        return self.objects.blob_file(sha256)

    def close(self) -> None:
        self.objects.close()
        self.index.close()


class Store:
    """The collector's storage: an index and objects (a backend), and the PUT pipeline.

    Implements ``base.ChunkSink`` for the pipeline (``ingest.py``).
    """

    def __init__(
        self,
        index: Index,
        objects: Objects,
        limits: Limits | None = None,
        *,
        validators: int = 3,
        backend: str = "local",
        linger_s: float = 0.0,
    ) -> None:
        self.backend = backend
        self.index = index
        self.objects = objects
        self.limits = limits or Limits()
        self.index_errors = index.errors
        self.ingest = Ingest(self, validators, linger_s)

    def close(self) -> None:
        self.ingest.close()
        self.objects.close()
        self.index.close()

    # -- devices, tokens, revocation, admin tokens, audit ---------------------------------
    def challenge_key(self) -> bytes:
        return self.index.challenge_key()

    def device(self, device: str) -> dict[str, Any] | None:
        return self.index.device(device)

    def devices(self, **where: str) -> list[dict[str, Any]]:
        return self.index.devices(**where)

    def public_key(self, device: str) -> str | None:
        row = self.index.device(device)
        return None if row is None else str(row["public_key"])

    def consume_challenge(self, device: str, issued: int) -> None:
        self.index.consume_challenge(device, issued)

    def enroll(self, e: Enrollment, ttl_s: float) -> str:
        return self.index.enroll(e, ttl_s)

    def issue_token(self, device: str, challenge_issued: int, ttl_s: float) -> str:
        return self.index.issue_token(device, challenge_issued, ttl_s)

    def auth(self, token: str, *, cached: bool = False) -> DeviceAuth | None:
        return self.index.auth(token, cached=cached)

    def revoke(self, device: str, actor: str) -> bool:
        return self.index.revoke(device, actor)

    def readmit(self, device: str, actor: str, *, new_key: bool = False) -> bool:
        return self.index.readmit(device, actor, new_key=new_key)

    def admin_actor(self, token: str) -> str | None:
        return self.index.admin_actor(token)

    def create_admin_token(self, name: str, actor: str) -> str | None:
        return self.index.create_admin_token(name, actor)

    def revoke_admin_token(self, name: str, actor: str) -> bool:
        return self.index.revoke_admin_token(name, actor)

    def admin_tokens(self) -> list[dict[str, Any]]:
        return self.index.admin_tokens()

    # -- chunks ------------------------------------------------------------------------
    def new_body(self) -> Body:
        return self.objects.new_body()

    def session_owner(self, session: str) -> str | None:
        return self.index.session_owner(session)

    def chunk_digest(self, session: str, seq: int) -> str | None:
        return self.index.chunk_digest(session, seq)

    def put_chunk_claimed(
        self, device: str, session: str, seq: int, claimed: str, body: Body
    ) -> PutResult:
        """Store a chunk whose body should have the ``claimed`` sha256 (blocking).

        The HTTP route uses ``self.ingest.put_async``; both go through the
        same pipeline (``ingest.py``), which owns ``body`` from here on.
        """
        found = self.device(device) or {"user": "", "machine": ""}
        return self.ingest.put(
            device, session, seq, claimed, body, user=found["user"], machine=found["machine"]
        )

    def prepare_chunk(self, job: Job) -> bool:
        """Validator thread: check ``job``'s body and stage its bytes; True if answered.

        Digest check, owner check, duplicate check, bounded validation, then
        the backend stages the bytes. The index row is the committer's
        (``commit_chunks``); until then the chunk is not acknowledged.
        """
        body = job.body
        sha = body.sha256()
        if sha != job.claimed:
            raise Rejected(400, f"body sha256 {sha} does not match the header")
        job.sha = sha
        owner, existing = self.index.chunk_state(job)
        if owner is not None and owner != job.device:
            raise Rejected(403, f"session {job.session} belongs to another device")
        if existing is not None:
            outcome = self._duplicate(job, existing)
            if isinstance(outcome, Rejected):
                raise outcome
            job.result = outcome
            return True
        try:
            info = validate_chunk(
                body.source(),
                max_output=self.limits.max_decompressed_bytes,
                max_line=self.limits.max_line_bytes,
            )
        except FormatError as exc:
            raise Rejected(422, f"not a valid chunk: {exc}") from exc
        self._check_header(info, job)
        job.records = info.records
        agent = info.header.get("agent")
        job.agent = agent[:64] if isinstance(agent, str) else ""
        job.blobs = tuple(info.blobs)
        self.objects.stage_chunk(job)
        return False

    def commit_chunks(self, batch: list[Job]) -> None:
        """Committer thread: make a batch of validated chunks durable and index them.

        The objects are settled (local: the temp files fsynced), then the
        index commits every row in one transaction, placing the new chunks
        inside it. One thread doing this for many PUTs costs far fewer GIL
        hand-offs and commits than each PUT doing it alone. Sets each job's
        result (or its 409 when the same chunk was committed in between);
        raises on an I/O or index error, which answers the whole batch.
        """
        self.objects.settle(batch)
        stored = self.index.commit_chunks(batch, self.objects.place_chunks)
        refused: list[Job] = []
        for job in batch:
            found = stored.get((job.session, job.seq))
            if found is None:
                job.result = PutResult(job.sha, created=True)
                continue
            outcome = self._duplicate(job, found) if isinstance(found, str) else found
            if isinstance(outcome, PutResult):
                job.result = outcome
            else:
                job.error = outcome
                refused.append(job)
        if refused:  # a body that lost (another digest won, or refused): its bytes go
            with self.index.purging(sorted({job.session for job in refused})):
                self.objects.drop_staged(refused)

    @staticmethod
    def _duplicate(job: Job, stored: str) -> PutResult | Rejected:
        """The answer to a PUT of a chunk already indexed with digest ``stored``."""
        if stored == job.sha:
            return PutResult(job.sha, created=False)
        return Rejected(
            409, f"chunk {job.session}/{job.seq:06d} already stored with another digest"
        )

    @staticmethod
    def _check_header(info: ChunkInfo, job: Job) -> None:
        """The header names this session, seq and device; its pseudonyms, if any, are the
        ones the collector gave this device (it stores the chunk under those, not a claim)."""
        header = info.header
        if header.get("session") != job.session:
            raise Rejected(422, f"chunk header names session {header.get('session')!r}")
        if header.get("seq") != job.seq:
            raise Rejected(422, f"chunk header names seq {header.get('seq')!r}")
        if header.get("device") != job.device:
            raise Rejected(403, "chunk header names another device than the token's")
        for field_name, registered in (("user", job.user), ("machine", job.machine)):
            claimed = header.get(field_name)
            if claimed is not None and claimed != registered:
                raise Rejected(
                    422,
                    f"chunk header names {field_name} {str(claimed)[:80]!r}, but this device "
                    f"is enrolled as {registered!r}",
                    "identity_mismatch",
                )

    def read_chunk(self, session: str, seq: int) -> bytes | None:
        """A stored chunk's bytes, or None if it is not indexed."""
        digest = self.index.chunk_digest(session, seq)
        if digest is None:
            return None
        with self.objects.open_chunk(session, seq, digest) as fh:
            return fh.read()

    def read_blob(self, sha: str) -> bytes | None:
        """A stored screenshot's bytes, or None if it is not stored."""
        return self.objects.read_blob(sha)

    # -- blobs -------------------------------------------------------------------------
    def has_blob(self, device: str, sha: str) -> bool:
        return self.index.has_blob(device, sha) and self.objects.has_blob(sha)

    def put_blob(self, device: str, sha: str, body: Body) -> PutResult:
        """Store a blob whose digest was checked; the bytes first, then the row."""
        if not self.objects.has_blob(sha):
            self.objects.put_blob(sha, body)
        return PutResult(sha, created=self.index.add_blob(device, sha, body.size))

    # -- consent receipts --------------------------------------------------------------
    def add_receipt(self, device: str, user: str, body: dict[str, Any]) -> tuple[int, bool]:
        """Store a receipt; the same receipt again from the same device is not duplicated."""
        return self.index.add_receipt(device, user, json.dumps(body, sort_keys=True))

    def receipts(
        self, user: str | None = None, *, devices: list[str] | None = None
    ) -> list[dict[str, Any]]:
        return self.index.receipts(user, devices=devices)

    # -- admin -------------------------------------------------------------------------
    def sessions(
        self, user: str | None = None, *, device: str | None = None, person: str | None = None
    ) -> list[dict[str, Any]]:
        return self.index.sessions(user, device=device, person=person)

    def session(self, session: str) -> dict[str, Any] | None:
        owner = self.index.session_owner(session)
        if owner is None:
            return None
        rows = [s for s in self.index.sessions(device=owner) if s["session"] == session]
        if not rows:
            return None
        out = rows[0]
        out["chunk_list"] = self.index.chunks(session)
        return out

    def export_user(self, user: str) -> Iterator[bytes]:
        """JSON Lines: every receipt, session, record and screenshot of a user pseudonym."""
        return self._export(self.receipts(user), self.sessions(user))

    def export_person(self, person: str) -> Iterator[bytes]:
        """JSON Lines: the same for every device of a person (every machine they used)."""
        devices = [d["device"] for d in self.devices(person=person)]
        return self._export(self.receipts(devices=devices), self.sessions(person=person))

    def _export(
        self, receipts: list[dict[str, Any]], sessions: list[dict[str, Any]]
    ) -> Iterator[bytes]:
        """Receipts, then per session a summary and its chunks' lines, then the screenshots
        those chunks reference (``{"blob": {"sha256", "bytes", "base64"}}``, one a line)."""
        for receipt in receipts:
            yield (json.dumps({"receipt": receipt}) + "\n").encode()
        shas: set[str] = set()
        for info in sessions:
            yield (json.dumps({"session": info}) + "\n").encode()
            for chunk in self.index.chunks(info["session"]):
                with self.objects.open_chunk(info["session"], chunk["seq"], chunk["sha256"]) as fh:
                    for line in iter_lines(fh, max_output=self.limits.max_decompressed_bytes):
                        yield line + b"\n"
            shas.update(self.index.chunk_blobs(info["session"]))
        for sha in sorted(shas):
            data = self.objects.read_blob(sha)
            if data is None:
                continue  # referenced but never uploaded (the agent counts it as missing)
            blob = {"sha256": sha, "bytes": len(data), "base64": base64.b64encode(data).decode()}
            yield (json.dumps({"blob": blob}) + "\n").encode()

    def erase_user(self, user: str, actor: str = "admin") -> dict[str, int]:
        """Delete every session, chunk, blob reference and receipt of a user pseudonym."""
        sessions = [s["session"] for s in self.sessions(user)]
        erasure = Erasure(user, sessions, actor=actor, action="erase_user", target=user)
        return self.index.erase(erasure, self.objects.remove).counts()

    def erase_person(self, person: str, actor: str) -> dict[str, int]:
        """The same for every device of a person."""
        devices = [d["device"] for d in self.devices(person=person)]
        sessions = [s["session"] for s in self.sessions(person=person)]
        erasure = Erasure("", sessions, devices, actor=actor, action="erase_person", target=person)
        return self.index.erase(erasure, self.objects.remove).counts()

    def erase_device_data(self, device: str) -> dict[str, int]:
        """A device's own erasure request (its user withdrew consent): every session it
        uploaded. Its consent receipts stay: they record the consent and its withdrawal.
        Only this device's data: a device cannot erase what another device uploaded,
        even one claiming the same user (docs/security.md)."""
        sessions = [s["session"] for s in self.sessions(device=device)]
        erasure = Erasure(
            "", sessions, [], actor=f"device:{device}", action="erase_device_data", target=device
        )
        return self.index.erase(erasure, self.objects.remove).counts()

    def expire(self, retain_days: float, now: float | None = None) -> dict[str, int] | None:
        """Retention: delete what arrived more than ``retain_days`` ago (see ``Index.expire``)."""
        cutoff = (time.time() if now is None else now) - retain_days * 86400
        erased = self.index.expire(cutoff, self.objects.remove)
        return None if erased is None else erased.counts()

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self.index.audit(actor, action, target, detail)

    def audit_log(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        return self.index.audit_log(after, limit)

    def counts(self) -> dict[str, int]:
        return self.index.counts()

    def gauges(self) -> dict[str, float]:
        return self.index.gauges()

    def ready(self) -> str | None:
        """None when the index and the objects answer, else which does not (``/readyz``)."""
        for name, part in (("index", self.index), ("objects", self.objects)):
            try:
                part.ping()
            except Exception:  # any failure means not ready; the log says which
                log.warning("readiness: the %s do not answer", name, exc_info=True)
                return name
        return None
