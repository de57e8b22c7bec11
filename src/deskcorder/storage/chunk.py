"""The chunk codec: one zstd stream of JSON Lines, durable at every flush.

Layout of a chunk file (docs/format.md is the specification):

* one zstd **frame** (content checksum on) holding UTF-8 JSON Lines;
* the first line is the header, every further line one record;
* every flush ends a zstd **block** on a line boundary (``FLUSH_BLOCK``) and is
  fsynced, so everything flushed can be decoded even if the process dies before
  the frame is finished. Measurement (docs/performance.md) chose this over one
  independent frame per flush: a streaming frame keeps its compression window
  across flushes, which small per-flush frames lose.

While open the file is ``<seq>.jsonl.zst.part`` (the journal); sealing ends
the frame and fsyncs it, then **re-encodes** the same bytes into one frame of
full-size blocks at ``SEAL_LEVEL`` (temp file, fsync, rename to
``<seq>.jsonl.zst``, fsync the directory, remove the journal) and writes the
manifest. One-second blocks are small, so zstd writes their literals raw and
uses default entropy tables; re-encoding at seal takes a default session from
3.4 to 2.2 bytes/event (docs/performance.md). A crash before the rename leaves
the journal, which recovery seals as before. This module is shared with the
collector, which uses the bounded reader to validate what it receives.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard as zstd
from pydantic import BaseModel, ConfigDict, Field

from deskcorder.errors import FormatError
from deskcorder.events import (
    FORMAT_NAME,
    FORMAT_VERSION,
    K_GAP,
    K_SHOT,
    event_count,
)

log = logging.getLogger(__name__)

PART_SUFFIX = ".jsonl.zst.part"
CHUNK_SUFFIX = ".jsonl.zst"
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = "deskcorder-manifest"
MANIFEST_VERSION = 1
COMPRESSION_LEVEL = 9  # the journal (.part), block-flushed every second
SEAL_LEVEL: int | None = 9  # re-encode at seal; None keeps the journal's bytes
MAX_LINE_BYTES = 1 << 20  # a record line longer than this is not a valid chunk

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def encode_line(record: dict[str, Any]) -> bytes:
    return (_dumps(record) + "\n").encode("utf-8")


def chunk_name(seq: int) -> str:
    return f"{seq:06d}{CHUNK_SUFFIX}"


def part_name(seq: int) -> str:
    return f"{seq:06d}{PART_SUFFIX}"


def manifest_name(seq: int) -> str:
    return f"{seq:06d}{MANIFEST_SUFFIX}"


def seq_of(path: Path) -> int:
    return int(path.name.split(".", 1)[0])


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or create in ``path`` durable (no-op where unsupported)."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """temp (created with ``mode``, private by default) + fsync + rename + fsync(dir)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class Manifest(BaseModel):
    """Written beside a sealed chunk; describes it without decompressing it."""

    model_config = ConfigDict(extra="forbid")
    format: str = MANIFEST_FORMAT
    format_version: int = MANIFEST_VERSION
    session: str
    seq: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    records: int = Field(ge=0)
    events: dict[str, int] = Field(description="event counts by record kind")
    t_first: int | None = None
    t_last: int | None = None
    gaps: int = 0
    dropped: int = 0
    blobs: list[str] = Field(default_factory=list)
    recovered: bool = False


@dataclass
class ChunkStats:
    records: int = 0
    events: dict[str, int] = field(default_factory=dict)
    t_first: int | None = None
    t_last: int | None = None
    gaps: int = 0
    dropped: int = 0
    blobs: list[str] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        kind = record.get("k", "?")
        self.records += 1
        self.events[kind] = self.events.get(kind, 0) + event_count(record)
        t = record.get("t")
        if isinstance(t, int):
            if self.t_first is None:
                self.t_first = t
            last = t + sum(record.get("dt", ())) if kind == "mv" else t
            if self.t_last is None or last > self.t_last:
                self.t_last = last
        if kind == K_GAP:
            self.gaps += 1
            self.dropped += int(record.get("dropped") or 0)
        elif kind == K_SHOT:
            sha = record.get("sha256")
            if isinstance(sha, str) and sha not in self.blobs:
                self.blobs.append(sha)

    def manifest(
        self, session: str, seq: int, sha256: str, size: int, recovered: bool = False
    ) -> Manifest:
        return Manifest(
            session=session,
            seq=seq,
            sha256=sha256,
            bytes=size,
            records=self.records,
            events=dict(sorted(self.events.items())),
            t_first=self.t_first,
            t_last=self.t_last,
            gaps=self.gaps,
            dropped=self.dropped,
            blobs=list(self.blobs),
            recovered=recovered,
        )


class ChunkWriter:
    """Appends records to one ``.part`` file; ``flush`` is durable; ``seal`` finishes it."""

    def __init__(
        self,
        directory: Path,
        session: str,
        seq: int,
        header: dict[str, Any],
        level: int = COMPRESSION_LEVEL,
        part_path: Path | None = None,
        seal_level: int | None = SEAL_LEVEL,
    ) -> None:
        self.directory = directory
        self.session = session
        self.seq = seq
        self.part_path = part_path or directory / part_name(seq)
        self.final_path = directory / chunk_name(seq)
        self.seal_level = seal_level
        self.stats = ChunkStats()
        self._sha = hashlib.sha256()
        self._size = 0
        self._raw_pending = 0
        self._cobj = zstd.ZstdCompressor(level=level, write_checksum=True).compressobj()
        self.durable_size = 0  # bytes of the .part known to be on disk (after a flush)
        self._fd: int | None = os.open(
            self.part_path,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
            0o600,
        )
        try:
            fsync_dir(directory)
            self._put(self._cobj.compress(encode_line(header)))
            self.flush()
        except BaseException:  # e.g. disk full: leave no header-less journal behind
            self.abandon()
            with contextlib.suppress(OSError):
                self.part_path.unlink()
            raise

    @property
    def compressed_size(self) -> int:
        return self._size

    def _put(self, data: bytes) -> None:
        if not data:
            return
        assert self._fd is not None, "chunk already sealed"
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._sha.update(data)
        self._size += len(data)

    def write(self, record: dict[str, Any]) -> None:
        """Buffer one record (not yet durable)."""
        self.stats.add(record)
        line = encode_line(record)
        self._raw_pending += len(line)
        self._put(self._cobj.compress(line))

    def write_many(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        add = self.stats.add
        for record in records:
            add(record)
        blob = b"".join(encode_line(r) for r in records)
        self._raw_pending += len(blob)
        self._put(self._cobj.compress(blob))

    def flush(self) -> None:
        """End a zstd block on a line boundary and fsync: everything so far survives a crash."""
        self._put(self._cobj.flush(zstd.COMPRESSOBJ_FLUSH_BLOCK))
        assert self._fd is not None
        _datasync(self._fd)
        self._raw_pending = 0
        self.durable_size = self._size

    def linked(self) -> bool:
        """False once the ``.part`` is no longer at its path (its folder deleted or moved)."""
        assert self._fd is not None
        try:
            there = os.stat(self.part_path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._fd)
        return (there.st_ino, there.st_dev) == (mine.st_ino, mine.st_dev)

    def seal(self, recovered: bool = False) -> Manifest:
        """Finish the frame, fsync, re-encode (or rename) to the final name, write the manifest."""
        self._put(self._cobj.flush(zstd.COMPRESSOBJ_FLUSH_FINISH))
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        compacted = self._compact(self.seal_level) if self.seal_level is not None else None
        if compacted is None:
            sha256, size = self._sha.hexdigest(), self._size
            os.replace(self.part_path, self.final_path)
            fsync_dir(self.directory)
        else:
            sha256, size = compacted
        manifest = self.stats.manifest(self.session, self.seq, sha256, size, recovered)
        write_manifest(self.directory, manifest)
        return manifest

    def _compact(self, level: int) -> tuple[str, int] | None:
        """Re-encode the finished journal as one frame of full blocks; None if not smaller.

        Streams (bounded memory); the decompressed bytes are unchanged. The
        journal is removed only after the new file is durable under its final name.
        """
        tmp = self.directory / f".{self.final_path.name}.tmp"
        cctx = zstd.ZstdCompressor(level=level, write_checksum=True)
        try:
            with open(self.part_path, "rb") as src, open(tmp, "wb") as dst:
                cctx.copy_stream(zstd.ZstdDecompressor().stream_reader(src), dst)
                dst.flush()
                os.fsync(dst.fileno())
                size = dst.tell()
        except (OSError, zstd.ZstdError) as exc:  # e.g. disk full: keep the journal as is
            log.warning("%s: sealing without re-encoding: %s", self.part_path, exc)
            tmp.unlink(missing_ok=True)
            return None
        if size >= self._size:
            tmp.unlink()
            return None
        sha = hashlib.sha256()
        with open(tmp, "rb") as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
        os.replace(tmp, self.final_path)
        fsync_dir(self.directory)
        self.part_path.unlink()
        fsync_dir(self.directory)
        return sha.hexdigest(), size

    def abandon(self) -> None:
        """Close without sealing: the .part stays for recovery (tests, write failures).

        Whatever was written after the last flush is cut off first (best effort:
        truncating needs no space, but a read-only file system refuses it, and
        :meth:`Spool.repair <deskcorder.storage.spool.Spool.repair>` cuts again),
        so that a batch that failed to write can be written again elsewhere
        without recovery also salvaging part of it.
        """
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if os.fstat(self._fd).st_size > self.durable_size:
                    os.ftruncate(self._fd, self.durable_size)
            with contextlib.suppress(OSError):  # EIO on close: nothing more to do
                os.close(self._fd)
            self._fd = None


def _datasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    path = directory / manifest_name(manifest.seq)
    atomic_write(path, (manifest.model_dump_json(indent=1) + "\n").encode())
    return path


def read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a valid manifest: {str(exc).splitlines()[0]}") from exc


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


@dataclass
class DecodedChunk:
    header: dict[str, Any]
    records: list[dict[str, Any]]
    complete: bool  # False: the zstd frame was torn (a .part or a damaged file)
    error: str | None = None


def iter_lines(
    stream: IO[bytes], *, max_output: int | None = None, max_line: int = MAX_LINE_BYTES
) -> Iterator[bytes]:
    """Decompress ``stream`` (one or more zstd frames) and yield complete lines.

    Bounded: refuses a line longer than ``max_line`` and total output beyond
    ``max_output`` with FormatError, without buffering more than one line plus
    one read. A torn final frame raises FormatError after the complete lines.
    """
    dctx = zstd.ZstdDecompressor()
    reader = dctx.stream_reader(stream, read_across_frames=True, read_size=65536)
    buf = b""
    total = 0
    while True:
        try:
            piece = reader.read(65536)
        except zstd.ZstdError as exc:
            raise FormatError(f"zstd data is damaged: {exc}") from exc
        if not piece:
            break
        total += len(piece)
        if max_output is not None and total > max_output:
            raise FormatError(f"decompressed size exceeds {max_output} bytes")
        buf += piece
        if b"\n" in buf:
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if len(line) > max_line:
                    raise FormatError(f"a line is longer than {max_line} bytes")
                yield line
        if len(buf) > max_line:
            raise FormatError(f"a line is longer than {max_line} bytes")
    if buf:
        raise FormatError("zstd data ends inside a line (torn or truncated)")


def _frame_finished(data: bytes) -> bool:
    """True when ``data`` is zstd frames that each end properly."""
    try:
        dobj = zstd.ZstdDecompressor().decompressobj()
        dobj.decompress(data)
        return bool(dobj.eof)
    except zstd.ZstdError:
        return False


def _salvage_lines(data: bytes) -> tuple[list[bytes], str | None]:
    """Every complete line decodable from ``data``, which may end mid-block (recovery).

    Uses a decompression object fed piecewise: unlike ``stream_reader`` it hands
    out everything decoded before the input runs out or turns bad. Only for
    local files the agent wrote itself (no bound on the output).
    """
    dobj = zstd.ZstdDecompressor().decompressobj()
    pieces: list[bytes] = []
    error: str | None = None
    for start in range(0, len(data), 65536):
        try:
            pieces.append(dobj.decompress(data[start : start + 65536]))
        except zstd.ZstdError as exc:
            error = f"zstd data is damaged: {exc}"
            break
        if dobj.eof:
            break
    text = b"".join(pieces)
    cut = text.rfind(b"\n")
    if cut + 1 < len(text) and error is None:
        error = "zstd data ends inside a line (torn or truncated)"
    return (text[:cut].split(b"\n") if cut >= 0 else []), error


def decode_chunk(data: bytes, *, tolerant: bool = False) -> DecodedChunk:
    """Decode a whole chunk held in memory.

    ``tolerant`` (recovery): keep every complete, valid line before the first
    damage instead of raising.
    """
    records: list[dict[str, Any]] = []
    header: dict[str, Any] | None = None
    error: str | None = None
    complete = _frame_finished(data)
    lines: list[bytes] = []
    if tolerant:
        lines, error = _salvage_lines(data)
    else:
        lines = list(iter_lines(io.BytesIO(data)))
    if not complete and error is None:
        error = "zstd frame not finished (torn tail)"
        if not tolerant:
            raise FormatError(error)
    for n, line in enumerate(lines):
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            error = f"line {n + 1} is not a JSON object: {exc}"
            if not tolerant:
                raise FormatError(error) from exc
            break
        if header is None:
            header = obj
        else:
            records.append(obj)
    if header is None:
        raise FormatError(error or "chunk has no header line")
    check_header(header)
    return DecodedChunk(
        header=header, records=records, complete=complete and error is None, error=error
    )


def check_header(header: dict[str, Any]) -> None:
    if header.get("format") != FORMAT_NAME:
        raise FormatError(f"not a deskcorder chunk (format={header.get('format')!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise FormatError(
            f"unsupported chunk format_version {version!r}; this reader knows 1..{FORMAT_VERSION}"
        )


def read_chunk(path: Path, *, tolerant: bool = False) -> DecodedChunk:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return decode_chunk(data, tolerant=tolerant)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from exc


def _sealed_ok(path: Path) -> bool:
    try:
        return read_chunk(path).complete
    except FormatError:
        return False


def recover_part(part: Path, cause: str | None = "crash_recovery") -> Manifest | None:
    """Seal a ``.part`` left by a crash: keep every complete flushed line, add a gap record.

    The recovered lines are rewritten into a fresh, properly finished chunk
    (temp file, fsync, rename over the final name), then the ``.part`` is
    removed. Returns the new manifest, or None when the file held not even a
    header (it is then removed: nothing in it was ever durable).

    ``cause`` is the trailing gap record's cause; None writes no gap record
    (a journal closed after a write failure: the pipeline writes the gap, with
    the count of what was lost, into the next chunk) and removes a journal
    that holds no record at all instead of sealing it. A failure (e.g. the disk
    is still full) raises ``OSError`` and leaves the ``.part`` as it was.
    """
    directory = part.parent
    seq = seq_of(part)
    final = directory / chunk_name(seq)
    if final.exists() and _sealed_ok(final):
        # the crash came after sealing renamed the re-encoded chunk, before the
        # journal was removed: the chunk holds everything the journal did
        part.unlink()
        fsync_dir(directory)
        return None
    try:
        decoded = read_chunk(part, tolerant=True)
    except FormatError:
        part.unlink(missing_ok=True)
        fsync_dir(directory)
        return None
    if cause is None and not decoded.records:
        part.unlink()
        fsync_dir(directory)
        return None
    stats = ChunkStats()
    for record in decoded.records:
        stats.add(record)
    tmp = directory / f".{seq:06d}.recover{PART_SUFFIX}"
    tmp.unlink(missing_ok=True)
    session = str(decoded.header.get("session", directory.name))
    writer = ChunkWriter(directory, session, seq, decoded.header, part_path=tmp)
    try:
        writer.write_many(decoded.records)
        if cause is not None:
            writer.write({"k": K_GAP, "t": stats.t_last or 0, "cause": cause})
        manifest = writer.seal(recovered=True)
    except BaseException:
        writer.abandon()
        tmp.unlink(missing_ok=True)
        raise
    part.unlink()
    fsync_dir(directory)
    return manifest
