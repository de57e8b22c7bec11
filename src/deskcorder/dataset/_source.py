"""Where recorded sessions are read from: a local spool, a session folder, or a
collector's data folder (local backend).

A source lists sessions and hands out their chunks one at a time (decoded) and
their screenshot blobs, so the export never holds more than one chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from deskcorder.errors import UsageError
from deskcorder.storage.chunk import (
    CHUNK_SUFFIX,
    DecodedChunk,
    read_chunk,
    seq_of,
)
from deskcorder.storage.reader import Session, list_sessions, read_session


class Source(Protocol):
    kind: str  # "spool", "session" or "collector"

    def sessions(self) -> Iterator[SessionSource]: ...

    def blob_path(self, sha256: str) -> Path | None:
        """A local file holding the blob, or None when it is not there."""


@dataclass
class SessionSource:
    """One session: its id and its chunks, decoded one at a time, in order."""

    id: str
    _session: Session | None = None
    _chunk_files: tuple[Path, ...] = ()

    def chunks(self) -> Iterator[DecodedChunk]:
        if self._session is not None:
            for _path, decoded in self._session.chunks():
                yield decoded
            return
        for path in self._chunk_files:
            yield read_chunk(path)


def _blob_in(root: Path, sha256: str) -> Path | None:
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        return None
    path = root / sha256[:2] / sha256
    return path if path.is_file() else None


class SpoolSource:
    """An agent's spool (``sessions/``, ``blobs/``) or one session folder inside it."""

    def __init__(self, root: Path, only: Path | None = None) -> None:
        self.root = root
        self.only = only
        self.kind = "spool" if only is None else "session"

    def sessions(self) -> Iterator[SessionSource]:
        if self.only is not None:
            session = read_session(self.only)
            yield SessionSource(session.id, session)
            return
        for session in list_sessions(self.root):
            yield SessionSource(session.id, session)

    def blob_path(self, sha256: str) -> Path | None:
        return _blob_in(self.root / "blobs", sha256)


class CollectorSource:
    """A collector's data folder (local backend): ``chunks/<session>/``, ``blobs/``.

    Only chunks the collector stored are there, so every chunk is read strictly.
    """

    kind = "collector"

    def __init__(self, root: Path) -> None:
        self.root = root

    def sessions(self) -> Iterator[SessionSource]:
        chunks = self.root / "chunks"
        for folder in sorted(p for p in chunks.iterdir() if p.is_dir()):
            files = sorted(folder.glob(f"[0-9]*{CHUNK_SUFFIX}"), key=seq_of)
            if files:
                yield SessionSource(folder.name, None, tuple(files))

    def blob_path(self, sha256: str) -> Path | None:
        return _blob_in(self.root / "blobs", sha256)


def open_source(path: str | os.PathLike[str]) -> Source:
    """The source at ``path``; a one-line error naming it when it is none of the kinds."""
    p = Path(path)
    if not p.exists():
        raise UsageError(
            f"{p}: no such folder (--from wants a spool, a session folder or a "
            "collector data folder)"
        )
    if (p / "sessions").is_dir():
        return SpoolSource(p)
    if (p / "chunks").is_dir() and (p / "index.sqlite3").is_file():
        return CollectorSource(p)
    if p.is_dir() and any(p.glob(f"[0-9]*{CHUNK_SUFFIX}*")):
        spool = p.parent.parent if p.parent.name == "sessions" else p
        return SpoolSource(spool, only=p)
    raise UsageError(
        f"{p}: not a spool (no sessions/), a session folder (no chunks) or a collector data "
        "folder (no chunks/ and index.sqlite3)"
    )
