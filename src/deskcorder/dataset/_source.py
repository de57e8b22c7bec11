"""Where recorded sessions are read from: a local spool, a session folder, or a
collector's data (either storage backend).

A source lists sessions and hands out their chunks one at a time (decoded) and
their screenshot blobs, so the export never holds more than one chunk and one
screenshot.

A collector's data is read through its storage interface (a
:class:`CollectorReader`; the concrete one is made above this package, by
``deskcorder.commands.dataset``: ``dataset`` does not import ``collector``).
Only what the collector's index holds is read, and a session's user, machine
and device pseudonyms are the ones the index gave it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deskcorder.errors import FormatError, UsageError
from deskcorder.storage.chunk import CHUNK_SUFFIX, DecodedChunk, decode_chunk
from deskcorder.storage.reader import Session, list_sessions, read_session


class Source(Protocol):
    kind: str  # "spool", "session" or "collector"
    where: str  # for messages: the folder, or s3://BUCKET/PREFIX
    local_files: bool  # blobs are local files (``--images link`` can link them)

    def sessions(self) -> Iterator[SessionSource]: ...

    def blob_path(self, sha256: str) -> Path | None:
        """A local file holding the blob, or None when it is not there (or not local)."""

    def has_blob(self, sha256: str) -> bool: ...

    def read_blob(self, sha256: str) -> bytes | None:
        """The blob's bytes, or None when it is not there."""

    def close(self) -> None: ...


SourceOpener = Callable[[], Source]
"""Opens a source (again, in each ``--jobs`` process): must pickle, e.g. a
``functools.partial`` of a module-level function."""


class CollectorReader(Protocol):
    """A collector's stored data, read only (``collector.store.StoreReader``)."""

    where: str

    def sessions(self) -> list[dict[str, Any]]:
        """Index rows: ``session``, ``device``, ``user``, ``machine`` (pseudonyms) ..."""

    def chunks(self, session: str) -> list[dict[str, Any]]:
        """The indexed chunks of a session (``seq``, ``sha256``), in seq order."""

    def read_chunk(self, session: str, seq: int, sha256: str) -> bytes | None:
        """A chunk's bytes; None when it was erased since it was listed."""

    def has_blob(self, sha256: str) -> bool: ...

    def read_blob(self, sha256: str) -> bytes | None: ...

    def blob_file(self, sha256: str) -> Path | None: ...

    def close(self) -> None: ...


@dataclass
class SessionSource:
    """One session: its id, its chunks (decoded one at a time, in order) and, for a
    collector's session, the pseudonyms its index holds (None: take the header's)."""

    id: str
    _session: Session | None = None
    _reader: CollectorReader | None = None
    user: str | None = None
    machine: str | None = None
    device: str | None = None

    def chunks(self) -> Iterator[DecodedChunk]:
        if self._session is not None:
            for _path, decoded in self._session.chunks():
                yield decoded
            return
        reader = self._reader
        assert reader is not None
        for row in reader.chunks(self.id):
            seq, sha = int(row["seq"]), str(row["sha256"])
            data = reader.read_chunk(self.id, seq, sha)
            if data is None:
                continue  # erased since it was listed
            where = f"{reader.where}: chunk {self.id}/{seq:06d}"
            if hashlib.sha256(data).hexdigest() != sha:
                raise FormatError(f"{where}: its bytes do not match the indexed sha256")
            try:
                yield decode_chunk(data)
            except FormatError as exc:
                raise FormatError(f"{where}: {exc}") from exc


def _digest(sha256: str) -> bool:
    return len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)


def _blob_in(root: Path, sha256: str) -> Path | None:
    if not _digest(sha256):
        return None
    path = root / sha256[:2] / sha256
    return path if path.is_file() else None


class SpoolSource:
    """An agent's spool (``sessions/``, ``blobs/``) or one session folder inside it."""

    local_files = True

    def __init__(self, root: Path, only: Path | None = None) -> None:
        self.root = root
        self.only = only
        self.kind = "spool" if only is None else "session"
        self.where = str(root if only is None else only)

    def sessions(self) -> Iterator[SessionSource]:
        if self.only is not None:
            session = read_session(self.only)
            yield SessionSource(session.id, session)
            return
        for session in list_sessions(self.root):
            yield SessionSource(session.id, session)

    def blob_path(self, sha256: str) -> Path | None:
        return _blob_in(self.root / "blobs", sha256)

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256) is not None

    def read_blob(self, sha256: str) -> bytes | None:
        path = self.blob_path(sha256)
        try:
            return None if path is None else path.read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        pass


class CollectorSource:
    """A collector's data (local or fleet backend) through its storage interface.

    Sessions and chunks are the index's rows (acknowledged data only); each
    chunk's bytes must match its indexed digest and are read strictly.
    """

    kind = "collector"

    def __init__(self, reader: CollectorReader, *, local_files: bool) -> None:
        self.reader = reader
        self.where = reader.where
        self.local_files = local_files

    def sessions(self) -> Iterator[SessionSource]:
        for row in self.reader.sessions():
            if not row.get("chunks"):
                continue
            yield SessionSource(
                str(row["session"]),
                _reader=self.reader,
                user=row.get("user") or None,
                machine=row.get("machine") or None,
                device=row.get("device") or None,
            )

    def blob_path(self, sha256: str) -> Path | None:
        return self.reader.blob_file(sha256) if _digest(sha256) else None

    def has_blob(self, sha256: str) -> bool:
        return _digest(sha256) and self.reader.has_blob(sha256)

    def read_blob(self, sha256: str) -> bytes | None:
        return self.reader.read_blob(sha256) if _digest(sha256) else None

    def close(self) -> None:
        self.reader.close()


def open_collector(
    reader_opener: Callable[[], CollectorReader], *, local_files: bool
) -> CollectorSource:
    """A collector source on the reader ``reader_opener`` opens (a ``SourceOpener`` once
    bound with ``functools.partial``)."""
    return CollectorSource(reader_opener(), local_files=local_files)


def source_kind(path: str | os.PathLike[str]) -> str:
    """``spool``, ``session`` or ``collector`` (a collector's data folder, local backend);
    a one-line error naming ``path`` when it is none of them."""
    p = Path(path)
    if not p.exists():
        raise UsageError(
            f"{p}: no such folder (--from wants a spool, a session folder or a "
            "collector data folder)"
        )
    if (p / "sessions").is_dir():
        return "spool"
    if (p / "chunks").is_dir() and (p / "index.sqlite3").is_file():
        return "collector"
    if p.is_dir() and any(p.glob(f"[0-9]*{CHUNK_SUFFIX}*")):
        return "session"
    raise UsageError(
        f"{p}: not a spool (no sessions/), a session folder (no chunks) or a collector data "
        "folder (no chunks/ and index.sqlite3)"
    )


def open_source(path: str | os.PathLike[str]) -> Source:
    """The spool or session folder at ``path``. A collector's data folder is read through
    the collector's storage (``deskcorder.commands.dataset.source_opener``)."""
    p = Path(path)
    kind = source_kind(p)
    if kind == "spool":
        return SpoolSource(p)
    if kind == "session":
        spool = p.parent.parent if p.parent.name == "sessions" else p
        return SpoolSource(spool, only=p)
    raise UsageError(
        f"{p}: a collector data folder: open it with "
        "deskcorder.commands.dataset.source_opener (as `deskcorder dataset build` does)"
    )


def opener_for(src: str | os.PathLike[str] | SourceOpener) -> SourceOpener:
    """A picklable opener for ``src``: an opener as it is, a spool or session folder's path
    bound to :func:`open_source`."""
    if callable(src):
        return src
    import functools

    return functools.partial(open_source, os.fspath(src))
