"""The public reader: ``deskcorder.read_session(path)``.

Yields records in order across a session's chunks, or *events*: records with
move batches expanded into single positions and each event tied to the
window that had focus when it happened.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from deskcorder.errors import FormatError
from deskcorder.events import K_CLOCK, K_EXCLUDED, K_FOCUS, K_MOVE, K_TITLE, expand_moves
from deskcorder.storage.chunk import (
    CHUNK_SUFFIX,
    MANIFEST_SUFFIX,
    PART_SUFFIX,
    DecodedChunk,
    Manifest,
    read_chunk,
    read_manifest,
    seq_of,
)


@dataclass(frozen=True)
class Event:
    """One input or context event. ``window`` is the focused window's record (or None);
    ``unix_ns`` its wall time (UTC, ns since the epoch) by the anchor in force."""

    kind: str
    t: int
    fields: dict[str, Any]
    window: dict[str, Any] | None = None
    excluded: bool = False
    unix_ns: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


class WallClock:
    """Session time to wall time, by the anchor in force: each chunk header's ``clock``,
    replaced by a ``clock`` record after a suspend or a wall-clock step (docs/format.md).

    Anchors are kept with the session time they take over from (a header's from its own
    ``t``, a ``clock`` record's from just after its ``t``), so a consumer that converts
    times later than it reads records (an action finished after a step) still gets
    each time's own anchor.
    """

    def __init__(self) -> None:
        self._from: list[int] = []  # session time each anchor applies from, non-decreasing
        self._anchors: list[tuple[int, int]] = []  # (t, unix_ns)

    def see(self, record: dict[str, Any]) -> None:
        """Feed every header and record in order (cheap for records that are not anchors)."""
        anchor = record.get("clock")
        is_header = "format" in record
        if not isinstance(anchor, dict) or not (is_header or record.get("k") == K_CLOCK):
            return
        try:
            t, unix_ns = int(anchor["t"]), int(anchor["unix_ns"])
            start = t if is_header else int(record["t"]) + 1
        except (KeyError, TypeError, ValueError):
            return
        if self._from:
            start = max(start, self._from[-1])
        self._from.append(start)
        self._anchors.append((t, unix_ns))

    def unix_ns(self, t: int) -> int | None:
        if not self._anchors:
            return None
        i = max(0, bisect.bisect_right(self._from, t) - 1)
        anchor_t, anchor_unix = self._anchors[i]
        return anchor_unix + (t - anchor_t) * 1000

    def utc(self, t: int) -> datetime | None:
        ns = self.unix_ns(t)
        if ns is None:
            return None
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)


@dataclass
class Session:
    path: Path
    chunk_paths: list[Path]
    part_paths: list[Path] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.path.name if self.path.is_dir() else self.path.parent.name

    def chunks(self) -> Iterator[tuple[Path, DecodedChunk]]:
        """Every chunk decoded, sealed ones strictly, an open ``.part`` tolerantly."""
        for path in self.chunk_paths:
            yield path, read_chunk(path)
        for path in self.part_paths:
            yield path, read_chunk(path, tolerant=True)

    def headers(self) -> list[dict[str, Any]]:
        return [decoded.header for _, decoded in self.chunks()]

    def manifests(self) -> list[Manifest]:
        out = []
        for path in self.chunk_paths:
            man = path.with_name(f"{seq_of(path):06d}{MANIFEST_SUFFIX}")
            if man.exists():
                out.append(read_manifest(man))
        return out

    def records(self) -> Iterator[dict[str, Any]]:
        for _, decoded in self.chunks():
            yield from decoded.records

    def events(self) -> Iterator[Event]:
        """Records as events; ``mv`` batches expanded; each tied to its window."""
        window: dict[str, Any] | None = None
        excluded = False
        wall = WallClock()
        for record in self._headers_and_records():
            if "format" in record:  # a chunk header
                wall.see(record)
                continue
            kind = record["k"]
            if kind == K_CLOCK:
                wall.see(record)
            if kind == K_FOCUS:
                window = record.get("win")
                excluded = False
            elif kind == K_EXCLUDED:
                window = None
                excluded = True
            elif kind == K_TITLE and window is not None and window.get("id") == record.get("id"):
                window = {**window, "title": record["title"]}
            if kind == K_MOVE:
                for t, x, y in expand_moves(record):
                    yield Event(K_MOVE, t, {"x": x, "y": y}, window, excluded, wall.unix_ns(t))
                continue
            fields = {k: v for k, v in record.items() if k not in ("k", "t")}
            t = record["t"]
            yield Event(kind, t, fields, window, excluded, wall.unix_ns(t))

    def _headers_and_records(self) -> Iterator[dict[str, Any]]:
        for _, decoded in self.chunks():
            yield decoded.header
            yield from decoded.records


def _chunks_in(directory: Path) -> tuple[list[Path], list[Path]]:
    sealed = sorted(directory.glob(f"[0-9]*{CHUNK_SUFFIX}"), key=seq_of)
    parts = sorted(directory.glob(f"[0-9]*{PART_SUFFIX}"), key=seq_of)
    return sealed, parts


def read_session(path: str | os.PathLike[str]) -> Session:
    """Open a session folder, or a single chunk file, for reading."""
    p = Path(path)
    if p.is_dir():
        sealed, parts = _chunks_in(p)
        if not sealed and not parts:
            raise FormatError(f"{p}: no chunks in this folder (is it a session folder?)")
        return Session(p, sealed, parts)
    if p.is_file():
        if p.name.endswith(PART_SUFFIX):
            return Session(p, [], [p])
        return Session(p, [p])
    raise FormatError(f"{p}: no such session folder or chunk file")


def list_sessions(spool_root: str | os.PathLike[str]) -> list[Session]:
    """Every session in a spool, oldest first."""
    root = Path(spool_root) / "sessions"
    if not root.is_dir():
        return []
    out = []
    for directory in sorted(d for d in root.iterdir() if d.is_dir()):
        sealed, parts = _chunks_in(directory)
        if sealed or parts:
            out.append(Session(directory, sealed, parts))
    return out
