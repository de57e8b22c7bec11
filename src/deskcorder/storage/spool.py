"""The local spool: sessions of chunks, rotation, recovery at start-up, quota.

Layout (docs/architecture.md)::

    <spool>/sessions/<session-id>/<seq:06d>.jsonl.zst[.part] + <seq:06d>.manifest.json
    <spool>/blobs/<sha[:2]>/<sha>
    <spool>/rejected/<session-id>/...
    <spool>/state/
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deskcorder.errors import DeskcorderError
from deskcorder.policy.model import Spool as SpoolPolicy
from deskcorder.storage.chunk import (
    CHUNK_SUFFIX,
    MANIFEST_SUFFIX,
    PART_SUFFIX,
    ChunkStats,
    ChunkWriter,
    Manifest,
    chunk_name,
    read_chunk,
    read_manifest,
    recover_part,
    seq_of,
    write_manifest,
)

log = logging.getLogger(__name__)

HeaderFactory = Callable[[int], dict[str, Any]]
APPROVAL_SUFFIX = ".approved.json"  # review approval marker (deskcorder.storage.approval)


def new_session_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Abandoned:
    """A chunk whose writing failed: its journal and how much of it was durable."""

    seq: int
    part_path: Path
    durable_size: int


@dataclass(frozen=True)
class SealedChunk:
    session: str
    seq: int
    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path.with_name(f"{self.seq:06d}{MANIFEST_SUFFIX}")

    @property
    def approval_path(self) -> Path:
        return self.path.with_name(f"{self.seq:06d}{APPROVAL_SUFFIX}")

    def manifest(self) -> Manifest:
        return read_manifest(self.manifest_path)


class Spool:
    def __init__(self, root: Path, cfg: SpoolPolicy | None = None) -> None:
        self.root = Path(root)
        self.cfg = cfg or SpoolPolicy()
        self.sessions_dir = self.root / "sessions"
        self.blobs_dir = self.root / "blobs"
        self.rejected_dir = self.root / "rejected"
        self.state_dir = self.root / "state"
        self._usage_cache: tuple[float, int] | None = None
        self.unrecovered: list[Path] = []  # journals recover() could not seal yet

    # -- setup ---------------------------------------------------------------
    def make_dirs(self) -> None:
        """Create the spool folders (mode 0700) that are missing; ``OSError`` if impossible."""
        for path in (
            self.root,
            self.sessions_dir,
            self.blobs_dir,
            self.rejected_dir,
            self.state_dir,
        ):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def ensure(self) -> None:
        """Create the spool folders and check that they are writable; one-line error if not."""
        try:
            self.make_dirs()
        except OSError as exc:
            raise DeskcorderError(
                f"{exc.filename or self.root}: cannot create spool folder: {exc.strerror}"
            ) from exc
        probe = self.root / f".write-test-{os.getpid()}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise DeskcorderError(f"{self.root}: spool is not writable: {exc.strerror}") from exc

    def recover(self) -> list[Manifest]:
        """Seal every ``.part`` left by a crash and rebuild missing manifests.

        Never raises for a write failure (a full or read-only disk at start):
        what cannot be recovered now stays as it is, is listed in
        :attr:`unrecovered`, and :meth:`recover_pending` tries again later.
        """
        recovered: list[Manifest] = []
        self.unrecovered = []
        try:
            session_dirs = self.session_dirs()
        except OSError as exc:
            log.warning("cannot list %s: %s", self.sessions_dir, exc)
            return recovered
        for session_dir in session_dirs:
            recovered += self._recover_dir(session_dir)
        self._usage_cache = None
        return recovered

    def recover_pending(self) -> list[Manifest]:
        """Try again to recover what :meth:`recover` could not (at most once per call)."""
        pending, self.unrecovered = self.unrecovered, []
        recovered: list[Manifest] = []
        for session_dir in sorted({p.parent for p in pending}):
            recovered += self._recover_dir(session_dir)
        if recovered:
            self._usage_cache = None
        return recovered

    def _recover_dir(self, session_dir: Path) -> list[Manifest]:
        recovered: list[Manifest] = []
        failed = False
        for part in sorted(session_dir.glob(f"[0-9]*{PART_SUFFIX}")):
            log.warning("recovering %s after an unclean stop", part)
            try:
                manifest = recover_part(part)
            except OSError as exc:
                log.warning("cannot recover %s now (%s); will retry", part, exc.strerror)
                self.unrecovered.append(part)
                failed = True
                continue
            if manifest is not None:
                recovered.append(manifest)
        if failed:  # its temp files may belong to the retry; sealed chunks stay as they are
            return recovered
        for stale in session_dir.glob(".*"):  # temp files of interrupted writes
            with contextlib.suppress(OSError):
                stale.unlink(missing_ok=True)
        for chunk in sorted(session_dir.glob(f"[0-9]*{CHUNK_SUFFIX}")):
            man = chunk.with_name(f"{seq_of(chunk):06d}{MANIFEST_SUFFIX}")
            if not man.exists():
                try:
                    recovered.append(self._rebuild_manifest(session_dir.name, chunk))
                except OSError as exc:
                    log.warning("cannot write the manifest of %s now (%s)", chunk, exc.strerror)
                    self.unrecovered.append(chunk)
        return recovered

    def repair(self, session: str, abandoned: Abandoned) -> tuple[Manifest | None, bool]:
        """Finish a chunk whose writing failed: ``(its manifest or None, removed)``.

        Called once writing works again. The journal is cut back to what was
        durable and sealed without a gap record (the pipeline writes one, with
        the count of events lost, into the next chunk); a sealing that got as
        far as the rename only gets its manifest; a journal that held no record
        is removed (``removed`` True: its sequence number may be used again).
        Raises ``OSError`` when writing still fails.
        """
        directory = self.sessions_dir / session
        seq = abandoned.seq
        final = directory / chunk_name(seq)
        for stale in directory.glob(f".{seq:06d}.*"):  # temp files of the failed seal
            stale.unlink(missing_ok=True)
        manifest: Manifest | None = None
        part = abandoned.part_path
        if part.exists():
            if part.stat().st_size > abandoned.durable_size:
                os.truncate(part, abandoned.durable_size)
            manifest = recover_part(part, cause=None)
        if manifest is None and final.exists():
            man = final.with_name(f"{seq:06d}{MANIFEST_SUFFIX}")
            manifest = (
                read_manifest(man) if man.exists() else self._rebuild_manifest(session, final)
            )
        self._usage_cache = None
        return manifest, manifest is None

    def _rebuild_manifest(self, session: str, chunk: Path) -> Manifest:
        import hashlib

        data = chunk.read_bytes()
        decoded = read_chunk(chunk, tolerant=True)
        stats = ChunkStats()
        for record in decoded.records:
            stats.add(record)
        manifest = stats.manifest(
            session, seq_of(chunk), hashlib.sha256(data).hexdigest(), len(data)
        )
        write_manifest(chunk.parent, manifest)
        return manifest

    # -- listing -------------------------------------------------------------
    def session_dirs(self) -> list[Path]:
        if not self.sessions_dir.is_dir():
            return []
        return sorted(p for p in self.sessions_dir.iterdir() if p.is_dir())

    def sealed_chunks(self) -> list[SealedChunk]:
        """Every sealed chunk that has a manifest, oldest session first, in seq order."""
        out: list[SealedChunk] = []
        for session_dir in self.session_dirs():
            for chunk in sorted(session_dir.glob(f"[0-9]*{CHUNK_SUFFIX}")):
                sealed = SealedChunk(session_dir.name, seq_of(chunk), chunk)
                if sealed.manifest_path.exists():
                    out.append(sealed)
        return out

    def usage_bytes(self, max_age: float = 2.0) -> int:
        """Bytes used by sessions, blobs and rejected chunks (cached for ``max_age`` s)."""
        now = time.monotonic()
        if self._usage_cache and now - self._usage_cache[0] < max_age:
            return self._usage_cache[1]
        total = sum(_tree_size(d) for d in (self.sessions_dir, self.blobs_dir, self.rejected_dir))
        self._usage_cache = (now, total)
        return total

    def invalidate_usage(self) -> None:
        self._usage_cache = None

    @property
    def quota_bytes(self) -> int:
        return self.cfg.quota_mb * 1024 * 1024

    def drop_oldest_sealed(self, keep_session: str | None = None) -> Manifest | None:
        """Delete the oldest sealed chunk (policy ``on_full = drop_oldest``). Returns it."""
        for sealed in self.sealed_chunks():
            try:
                manifest = sealed.manifest()
            except DeskcorderError:
                continue
            self.delete_chunk(sealed, keep_session)
            log.warning("spool quota reached: dropped %s/%06d", sealed.session, sealed.seq)
            return manifest
        return None

    def expired_chunks(self, now: float | None = None) -> list[SealedChunk]:
        """Sealed chunks older than ``retention_days`` (by file time); none if retention is 0."""
        days = self.cfg.retention_days
        if days <= 0:
            return []
        limit = (time.time() if now is None else now) - days * 86400
        out = []
        for sealed in self.sealed_chunks():
            try:
                if sealed.path.stat().st_mtime < limit:
                    out.append(sealed)
            except OSError:
                continue
        return out

    def delete_chunk(self, sealed: SealedChunk, keep_session: str | None = None) -> None:
        sealed.path.unlink(missing_ok=True)
        sealed.manifest_path.unlink(missing_ok=True)
        sealed.approval_path.unlink(missing_ok=True)  # the review approval marker, if any
        self._remove_if_empty(sealed.path.parent, keep_session)
        self._usage_cache = None

    def _remove_if_empty(self, session_dir: Path, keep_session: str | None) -> None:
        if session_dir.name == keep_session:
            return
        with contextlib.suppress(OSError):
            session_dir.rmdir()

    def open_session(
        self, header_factory: HeaderFactory, session_id: str | None = None
    ) -> SessionWriter:
        return SessionWriter(self, session_id or new_session_id(), header_factory)


def _tree_size(root: Path) -> int:
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class SessionWriter:
    """Writes one session as a sequence of chunks, rotating by size and age."""

    def __init__(self, spool: Spool, session_id: str, header_factory: HeaderFactory) -> None:
        self.spool = spool
        self.session_id = session_id
        self.directory = spool.sessions_dir / session_id
        self.header_factory = header_factory
        self.seq = 0
        self.sealed: list[Manifest] = []
        self._writer: ChunkWriter | None = None
        self._opened_at = 0.0
        self._max_bytes = int(spool.cfg.chunk_max_mb * 1024 * 1024)
        self._max_age = float(spool.cfg.chunk_max_age_s)

    @property
    def writer(self) -> ChunkWriter:
        if self._writer is None:
            # made here, not up front: the agent may start with the spool unwritable
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._writer = ChunkWriter(
                self.directory, self.session_id, self.seq, self.header_factory(self.seq)
            )
            self._opened_at = time.monotonic()
        return self._writer

    @property
    def open_bytes(self) -> int:
        return self._writer.compressed_size if self._writer else 0

    def write_many(self, records: list[dict[str, Any]]) -> None:
        self.writer.write_many(records)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def needs_rotation(self, now: float | None = None) -> bool:
        if self._writer is None:
            return False
        now = time.monotonic() if now is None else now
        return (
            self._writer.compressed_size >= self._max_bytes
            or now - self._opened_at >= self._max_age
        )

    def seal(self) -> Manifest | None:
        """Seal the open chunk (if any); the next write opens seq+1."""
        if self._writer is None:
            return None
        manifest = self._writer.seal()
        self._writer = None
        self.seq += 1
        self.sealed.append(manifest)
        self.spool.invalidate_usage()
        return manifest

    def is_open(self) -> bool:
        return self._writer is not None

    def linked(self) -> bool:
        """False once the open chunk's journal was deleted (the spool folder removed)."""
        return self._writer is None or self._writer.linked()

    def abandon(self) -> Abandoned | None:
        """Give up the open chunk after a write failure; the next write opens seq+1.

        What was flushed stays in its journal for :meth:`Spool.repair`.
        """
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        writer.abandon()
        self.seq += 1
        return Abandoned(writer.seq, writer.part_path, writer.durable_size)

    def repaired(self, abandoned: Abandoned, manifest: Manifest | None, removed: bool) -> None:
        """Account for :meth:`Spool.repair`'s result (an empty journal's seq is reused)."""
        if manifest is not None:
            self.sealed.append(manifest)
        elif removed and self._writer is None and self.seq == abandoned.seq + 1:
            self.seq = abandoned.seq

    def iter_sealed(self) -> Iterator[Manifest]:
        yield from self.sealed
