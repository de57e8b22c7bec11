"""What the collector's parts share: limits, outcomes, request bodies and chunk jobs.

The arrows point one way::

    app -> store (a backend) -> ingest (PUT pipeline) -> base
       \\__________________________________________/^

``base`` knows no storage: no SQL, no file paths. A store backend (today the
local one in ``store.py``: files + SQLite) makes its own :class:`Body` (where
a request body waits: memory, a temp file, ...) and implements
:class:`ChunkSink`, the two steps the PUT pipeline (``ingest.py``) drives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

from deskcorder.errors import DeskcorderError


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may make the collector hold or decode."""

    max_chunk_bytes: int = 64 * 1024 * 1024
    max_blob_bytes: int = 32 * 1024 * 1024
    max_decompressed_bytes: int = 512 * 1024 * 1024
    max_line_bytes: int = 1 << 20
    max_json_bytes: int = 64 * 1024


class Rejected(DeskcorderError):
    """A request the collector refuses; ``status`` is the HTTP status to answer."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # machine-readable, for the agent (e.g. "device_revoked")
        self.headers = headers or {}

    def payload(self) -> dict[str, str]:
        out = {"error": str(self)}
        if self.code:
            out["code"] = self.code
        return out


REVOKED = "device_revoked"


def revoked_error(device: str) -> Rejected:
    """The answer to anything a revoked device asks (the agent stops uploading on it)."""
    return Rejected(403, f"device {device} is revoked; an administrator must readmit it", REVOKED)


@dataclass(frozen=True)
class PutResult:
    """A stored (``created``) or already present chunk or blob, with its digest."""

    sha256: str
    created: bool


class Body(Protocol):
    """A request body being received, then handed to the store (which made it)."""

    size: int

    def write(self, piece: bytes) -> None:
        """Append a piece (on the event loop: must not block for long)."""

    def source(self) -> bytes | IO[bytes]:
        """The whole body, to read from the start."""

    def sha256(self) -> str:
        """Hex sha256 of the body (in a worker thread)."""

    def discard(self) -> None:
        """Free what the body still holds (idempotent)."""


@dataclass(frozen=True)
class DeviceAuth:
    """What a device token stands for: the device and the pseudonyms the collector gave it."""

    device: str
    user: str
    machine: str
    expires: float


@dataclass(frozen=True)
class Enrollment:
    """A verified enrollment: the key's device id, its key and the derived identities."""

    device: str
    public_key: str  # base64url, raw 32 bytes
    mode: str  # pseudonymous | named
    user: str
    machine: str
    person: str
    agent: str
    challenge_issued: int  # ms; a device never uses a challenge older than its last


Notify = Callable[[list["Job"]], None]


@dataclass(eq=False)
class Job:
    """One chunk PUT on its way through the pipeline."""

    device: str
    session: str
    seq: int
    claimed: str
    body: Body
    notify: Notify
    # the pseudonyms the collector gave the device (from its token): stored with the chunk
    user: str = ""
    machine: str = ""
    # set by the validator
    sha: str = ""
    records: int = 0
    blobs: tuple[str, ...] = ()
    folder: str = ""  # where the backend places the chunk (its own notion)
    ticket: object = None  # the backend's own notes on this PUT (fleet: object key, purge mark)
    agent: str = ""  # the agent's version (chunk header), for the device inventory
    backlog: tuple[int, int] | None = None  # chunks and bytes the agent still has to send
    # the outcome
    result: PutResult | None = None
    error: BaseException | None = None
    waiters: list[Job] = field(default_factory=list)
    # set and read only on the submitting event loop's thread
    future: asyncio.Future[None] | None = None

    def outcome(self) -> PutResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class ChunkSink(Protocol):
    """What the PUT pipeline needs of a store backend."""

    index_errors: tuple[type[BaseException], ...]
    """Errors of the backend's index: a batch failing with one is answered 503."""

    def prepare_chunk(self, job: Job) -> bool:
        """Validator thread: check and stage ``job``'s body; True if already answered."""

    def commit_chunks(self, batch: list[Job]) -> None:
        """Committer thread: make a batch durable and indexed; set each job's outcome."""
