"""Validation of what devices send: ids, digests and chunk bodies (bounded).

Everything here reads from a file object in bounded pieces: a zstd bomb or an
over-long line is refused without the memory growing with the input.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import zstandard as zstd

from deskcorder.errors import FormatError
from deskcorder.events import K_SHOT
from deskcorder.storage.chunk import check_header

SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\\-]{0,127}$")  # named mode: login names
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_SEQ = 999_999

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK = 0xFFFFFFF0
_SKIPPABLE_MAGIC = 0x184D2A50


def valid_session(value: str) -> bool:
    return bool(SESSION_RE.match(value))


def valid_device(value: str) -> bool:
    return bool(DEVICE_RE.match(value)) and ".." not in value


def valid_user(value: str) -> bool:
    return bool(USER_RE.match(value)) and ".." not in value


def valid_sha(value: str) -> bool:
    return bool(SHA_RE.match(value))


def parse_seq(value: str) -> int | None:
    if not value.isdigit() or len(value) > 6:
        return None
    return int(value)


Source = bytes | memoryview | IO[bytes]


class _Cursor:
    """Sequential reads over an in-memory body or a file (the frame walk needs both)."""

    def __init__(self, source: Source) -> None:
        self._pos = 0
        self._fh: IO[bytes] | None = None
        if isinstance(source, bytes | memoryview):
            self._mv = memoryview(source)
        else:
            self._mv = memoryview(b"")
            self._fh = source
            source.seek(0)

    def read(self, n: int) -> bytes | memoryview:
        if self._fh is not None:
            return self._fh.read(n)
        piece = self._mv[self._pos : self._pos + n]
        self._pos += len(piece)
        return piece

    def exact(self, n: int) -> bytes | memoryview:
        data = self.read(n)
        if len(data) != n:
            raise FormatError("zstd data is truncated (a frame is not finished)")
        return data

    def skip(self, n: int) -> None:
        if self._fh is not None:
            self._fh.seek(n, 1)
        else:
            self._pos += n


def check_frames_complete(source: Source) -> None:
    """Walk the zstd frame structure (headers and block sizes only, no decoding).

    The streaming decoder stops quietly at a torn frame; this walk refuses a
    body whose last frame does not end exactly at the end of the data.
    """
    cur = _Cursor(source)
    frames = 0
    while True:
        magic_bytes = cur.read(4)
        if not magic_bytes:
            break
        if len(magic_bytes) != 4:
            raise FormatError("zstd data is truncated (a frame is not finished)")
        magic = int.from_bytes(magic_bytes, "little")
        if magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
            cur.skip(int.from_bytes(cur.exact(4), "little"))
            continue
        if magic != _ZSTD_MAGIC:
            raise FormatError("not zstd data (bad frame magic)")
        frames += 1
        fhd = cur.exact(1)[0]
        fcs_flag = fhd >> 6
        single_segment = (fhd >> 5) & 1
        checksum = (fhd >> 2) & 1
        dict_flag = fhd & 3
        skip = (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
        skip += (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
        cur.exact(skip)
        while True:
            bh = int.from_bytes(cur.exact(3), "little")
            last = bh & 1
            btype = (bh >> 1) & 3
            size = bh >> 3
            if btype == 3:
                raise FormatError("zstd data is damaged (reserved block type)")
            cur.exact(1 if btype == 1 else size)
            if last:
                break
        if checksum:
            cur.exact(4)
    if frames == 0:
        raise FormatError("empty body: no zstd frame")


@dataclass
class ChunkInfo:
    header: dict[str, Any]
    records: int = 0
    raw_bytes: int = 0
    blobs: list[str] = field(default_factory=list)


_local = threading.local()


def _decompressor() -> zstd.ZstdDecompressor:
    """This thread's decompressor: making a new one per chunk cost about 10 % of validating it."""
    dctx: zstd.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstd.ZstdDecompressor()
    return dctx


def iter_blocks(
    source: Source, *, max_output: int, max_line: int, read_size: int = 1 << 20
) -> Iterator[bytes]:
    """Decompress ``source`` and yield blocks of complete lines (each ending in ``\\n``).

    The same bounds as ``storage.chunk.iter_lines`` (total output, longest line,
    memory of one line plus one read) but checked per block with C-speed bytes
    operations instead of per line: the collector's hot path. Memory stays
    within ``read_size`` plus one line; the decoder releases the GIL, so
    concurrent requests decompress on several cores.
    """
    if not isinstance(source, bytes | memoryview):
        source.seek(0)
    reader = _decompressor().stream_reader(source, read_across_frames=True, read_size=1 << 17)
    rest = b""
    total = 0
    while True:
        try:
            piece = reader.read(read_size)
        except zstd.ZstdError as exc:
            raise FormatError(f"zstd data is damaged: {exc}") from exc
        if not piece:
            break
        total += len(piece)
        if total > max_output:
            raise FormatError(f"decompressed size exceeds {max_output} bytes")
        text = rest + piece if rest else piece
        cut = text.rfind(b"\n")
        if cut < 0:
            rest = text
        else:
            first = text.find(b"\n")
            if first > max_line:  # only the first line can span earlier reads
                raise FormatError(f"a line is longer than {max_line} bytes")
            if cut == len(text) - 1:  # the usual case: no copy
                rest = b""
                yield text
            else:
                rest = text[cut + 1 :]
                yield text[: cut + 1]
        if len(rest) > max_line:
            raise FormatError(f"a line is longer than {max_line} bytes")
    if rest:
        raise FormatError("zstd data ends inside a line (torn or truncated)")


def validate_chunk(source: Source, *, max_output: int, max_line: int) -> ChunkInfo:
    """Check that ``source`` is a complete deskcorder chunk; bounded in memory and output.

    ``source`` is the body in memory, or its file when it was spilled to disk.

    The header line is parsed and checked; every further line must look like a
    JSON object (``{`` ... ``}``, checked per block by ``_scan``) and be at most
    ``max_line`` bytes; screenshot records are parsed to learn the blobs the
    chunk references.
    """
    check_frames_complete(source)
    info: ChunkInfo | None = None
    for block in iter_blocks(source, max_output=max_output, max_line=max_line):
        start = 0  # where the records begin: after the header line in the first block
        if info is None:
            end = block.index(b"\n")
            try:
                header = json.loads(block[:end])
            except (ValueError, RecursionError) as exc:  # deep nesting recurses
                raise FormatError("the header line is not JSON") from exc
            if not isinstance(header, dict):
                raise FormatError("the header line is not a JSON object")
            check_header(header)
            info = ChunkInfo(header=header)
            start = end + 1
            if start == len(block):
                continue
        # a view, not a slice: slicing copied the whole block (~0.5 MB) for every chunk
        records = memoryview(block)[start:] if start else block
        status, lines, shot = _scan(records, max_line, _SHOT)
        if status == SCAN_TOO_LONG:
            raise FormatError(f"a line is longer than {max_line} bytes")
        if status != SCAN_OK:
            raise FormatError(f"record {info.records + lines} is not a JSON object")
        info.records += lines
        info.raw_bytes += len(block) - start
        if shot:
            _blobs(block, start, info)
    if info is None:
        raise FormatError("chunk has no header line")
    return info


_SHOT = b'"' + K_SHOT.encode() + b'"'

SCAN_OK, SCAN_NOT_OBJECT, SCAN_TOO_LONG = 0, 1, 2


def scan_python(block: bytes | memoryview, max_line: int, needle: bytes) -> tuple[int, int, bool]:
    """The record-line check: ``(status, lines, found)``, as ``_linescan.scan`` in C.

    Every line of ``block`` must be ``{...}`` ended by a newline and at most
    ``max_line`` bytes long. ``status`` is ``SCAN_OK`` (``lines`` is the line
    count), ``SCAN_NOT_OBJECT`` or ``SCAN_TOO_LONG`` (``lines`` is the 1-based
    number of the first bad line); ``found`` is whether ``needle`` occurs. The
    collector uses the C version when it was built (``LINE_SCANNER``); the
    tests hold the two to the same answers.
    """
    if isinstance(block, memoryview):
        block = block.tobytes()
    found = needle in block
    lines = block.count(b"\n")
    if (
        block.startswith(b"{")
        and block.endswith(b"}\n")
        and block.count(b"}\n{") == lines - 1
        and (len(block) <= max_line or max(map(len, block.split(b"\n"))) <= max_line)
    ):
        return SCAN_OK, lines, found
    pieces = block.split(b"\n")
    for n, line in enumerate(pieces[:-1], 1):
        if len(line) > max_line:
            return SCAN_TOO_LONG, n, found
        if len(line) < 2 or line[:1] != b"{" or line[-1:] != b"}":
            return SCAN_NOT_OBJECT, n, found
    if pieces[-1]:  # the last line has no newline
        status = SCAN_TOO_LONG if len(pieces[-1]) > max_line else SCAN_NOT_OBJECT
        return status, len(pieces), found
    return SCAN_NOT_OBJECT, 0, found  # only an empty block gets here


def _compiled_scan() -> Callable[[bytes | memoryview, int, bytes], tuple[int, int, bool]] | None:
    """The C scanner (one pass, GIL released: docs/performance.md), or None if not built."""
    try:
        from deskcorder.collector._linescan import scan
    except ImportError:
        return None
    return scan


_scan = _compiled_scan() or scan_python
LINE_SCANNER = "python" if _scan is scan_python else "c"


def _blobs(block: bytes, start: int, info: ChunkInfo) -> None:
    """Learn the blobs referenced by the screenshot records in ``block[start:]``.

    Only the lines that contain the kind are cut out and parsed: splitting the
    whole block made ~10,000 bytes objects for a chunk with one screenshot.
    """
    pos = block.find(_SHOT, start)
    while pos >= 0:
        lo = (block.rfind(b"\n", start, pos) + 1) or start
        hi = block.find(b"\n", pos)  # every line ends with one (checked by the scan)
        try:
            record = json.loads(block[lo:hi])
        except (ValueError, RecursionError) as exc:  # deep nesting recurses
            raise FormatError("a screenshot record is not valid JSON") from exc
        sha = record.get("sha256") if isinstance(record, dict) else None
        if isinstance(record, dict) and record.get("k") == K_SHOT and isinstance(sha, str):
            if not valid_sha(sha):
                raise FormatError("a screenshot record has a bad sha256")
            if sha not in info.blobs:
                info.blobs.append(sha)
        pos = block.find(_SHOT, hi)
