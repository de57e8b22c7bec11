"""The record-line check: the compiled scanner and the Python one give the same answers."""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import sys
from collections.abc import Callable, Iterator

import pytest
import zstandard as zstd
from hypothesis import given, settings
from hypothesis import strategies as st

from deskcorder.collector import validate
from deskcorder.collector.validate import (
    _SHOT,
    SCAN_NOT_OBJECT,
    SCAN_OK,
    SCAN_TOO_LONG,
    scan_python,
)
from deskcorder.errors import FormatError
from tests.collector.helpers import chunk_header

compiled = validate._compiled_scan()
needs_c = pytest.mark.skipif(compiled is None, reason="deskcorder.collector._linescan not built")

# lines built from the bytes that matter to the check, and a few that do not
_piece = st.sampled_from([b"{", b"}", b'"k":1', b"x", b" ", b"\n", b'"shot"', b"sh", b'ot"'])
_line = st.lists(_piece, max_size=6).map(b"".join)
_block = st.lists(_line, min_size=0, max_size=12).map(b"\n".join)
_ends = st.sampled_from([b"", b"\n"])


def test_the_compiled_scanner_is_built_and_used() -> None:
    # The build makes it wherever there is a C compiler: .ci/setup installs gcc, and
    # the GitHub runners have MSVC and clang. Without it the collector is slower.
    assert compiled is not None, "the C extension deskcorder.collector._linescan was not built"
    assert validate.LINE_SCANNER == "c"
    assert validate._scan is compiled


@needs_c
@settings(max_examples=600, deadline=None)
@given(_block, _ends, st.integers(0, 12), st.sampled_from([b'"shot"', b"x", b"", b"{}\n{}"]))
def test_c_and_python_scans_agree(body: bytes, end: bytes, max_line: int, needle: bytes) -> None:
    block = body + end
    assert compiled is not None
    assert compiled(block, max_line, needle) == scan_python(block, max_line, needle)


@pytest.mark.parametrize(
    "scan", [pytest.param(compiled, marks=needs_c, id="c"), pytest.param(scan_python, id="python")]
)
def test_known_blocks(scan: Callable[[bytes, int, bytes], tuple[int, int, bool]]) -> None:
    big = 1 << 20
    assert scan(b'{"k":"mv"}\n{"k":"kd"}\n', big, b"x") == (SCAN_OK, 2, False)
    assert scan(b"{}\n", big, b"{}") == (SCAN_OK, 1, True)
    assert scan(b'{"k":"shot"}\n', big, b'"shot"') == (SCAN_OK, 1, True)
    assert scan(b'{"k":"mv"}\n[1]\n', big, b"x") == (SCAN_NOT_OBJECT, 2, False)
    assert scan(b'{"k":"mv"}\n\n{"k":"kd"}\n', big, b"x")[:2] == (SCAN_NOT_OBJECT, 2)
    assert scan(b'{"k":"mv"} \n', big, b"x")[:2] == (SCAN_NOT_OBJECT, 1)
    assert scan(b"\n", big, b"x")[:2] == (SCAN_NOT_OBJECT, 1)
    assert scan(b"{\n", big, b"x")[:2] == (SCAN_NOT_OBJECT, 1)
    assert scan(b"{}\n{}", big, b"x")[:2] == (SCAN_NOT_OBJECT, 2)  # ends inside a line
    assert scan(b"", big, b"x")[:2] == (SCAN_NOT_OBJECT, 0)
    # line length: the limit is on the bytes before the newline
    assert scan(b"{1234}\n{}\n", 6, b"x")[:2] == (SCAN_OK, 2)
    assert scan(b"{}\n{12345}\n{}\n", 6, b"x")[:2] == (SCAN_TOO_LONG, 2)
    assert scan(b"{}\n{12345}", 6, b"x")[:2] == (SCAN_TOO_LONG, 2)
    # validate_chunk passes the records after the header line as a view
    assert scan(memoryview(b'{"h"}\n{"k":"shot"}\n')[6:], big, b'"shot"') == (SCAN_OK, 1, True)


@needs_c
def test_the_compiled_scanner_takes_any_buffer_and_refuses_bad_arguments() -> None:
    assert compiled is not None
    assert compiled(memoryview(b"..{}\n")[2:], 10, bytearray(b"}")) == (SCAN_OK, 1, True)
    with pytest.raises(TypeError):
        compiled("{}\n", 10, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compiled(b"{}\n", -1, b"x")
    with pytest.raises(OverflowError):
        compiled(b"{}\n", sys.maxsize * 2, b"x")
    with pytest.raises(TypeError):
        compiled(b"{}\n", 10)  # type: ignore[call-arg]


def _chunk_of_lines(text: bytes) -> bytes:
    """A chunk body in memory: a valid header line, then ``text`` as its record lines."""
    header = json.dumps(chunk_header("20261127T101500Z-0000abcd", 3)).encode()
    return zstd.ZstdCompressor().compress(header + b"\n" + text)


def _chunk(records: list[dict[str, object]]) -> bytes:
    return _chunk_of_lines("".join(f"{json.dumps(r)}\n" for r in records).encode())


def _sha(n: int) -> str:
    return hashlib.sha256(bytes([n])).hexdigest()


def test_screenshot_references_are_found_wherever_they_are() -> None:
    filler = [{"k": "mv", "t": t, "x": t % 1920, "y": t % 1080} for t in range(40_000)]
    records: list[dict[str, object]] = [{"k": "shot", "t": 0, "sha256": _sha(0)}]  # first line
    records += filler[:20_000]
    records += [{"k": "win", "t": 1, "title": "shot"}]  # the word, not a screenshot record
    records += [{"k": "shot", "t": 2, "sha256": _sha(1)}, {"k": "shot", "t": 3, "sha256": _sha(0)}]
    records += filler[20_000:]  # the next shot is in a later block of lines (> 1 MiB)
    records += [{"k": "shot", "t": 4, "sha256": _sha(2)}]  # last line
    data = _chunk(records)
    blocks = list(validate.iter_blocks(data, max_output=1 << 30, max_line=1 << 20))
    assert len(blocks) >= 2 and _sha(2).encode() not in blocks[0]  # the last shot: block 2+
    info = validate.validate_chunk(data, max_output=1 << 30, max_line=1 << 20)
    assert info.records == len(records)
    assert info.blobs == [_sha(0), _sha(1), _sha(2)]


def test_a_bad_screenshot_record_is_refused() -> None:
    for bad, message in [
        ({"k": "shot", "t": 0, "sha256": "../etc/passwd"}, "bad sha256"),
        ({"k": "shot", "t": 0, "x": "}{"}, None),  # no sha256: not a reference
    ]:
        data = _chunk([{"k": "mv", "t": 0}, bad])
        if message is None:
            assert validate.validate_chunk(data, max_output=1 << 30, max_line=1 << 20).blobs == []
            continue
        with pytest.raises(FormatError, match=message):
            validate.validate_chunk(data, max_output=1 << 30, max_line=1 << 20)
    data = _chunk_of_lines(b'{"k":"mv","t":0}\n{"k":"shot","t":1,"sha256":}\n')
    with pytest.raises(FormatError, match="screenshot record is not valid JSON"):
        validate.validate_chunk(data, max_output=1 << 30, max_line=1 << 20)


@pytest.fixture(scope="module")
def guarded_page() -> Iterator[memoryview]:
    """A page of memory followed by a page that cannot be read: a buffer placed at
    the end of the first makes any read past its end crash (instead of going unseen)."""
    page = mmap.PAGESIZE
    mem = mmap.mmap(-1, 2 * page)
    anchor = ctypes.c_char.from_buffer(mem)
    mprotect = ctypes.CDLL(None, use_errno=True).mprotect
    mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert mprotect(ctypes.addressof(anchor) + page, page, 0) == 0  # PROT_NONE
    del anchor
    view = memoryview(mem)
    yield view[:page]
    view.release()


@needs_c
@pytest.mark.skipif(sys.platform == "win32", reason="mprotect: POSIX")
@settings(max_examples=400, deadline=None)
@given(block=_block, end=_ends, max_line=st.integers(0, 12), needle=_piece | _block)
def test_the_compiled_scanner_never_reads_past_its_buffer(
    guarded_page: memoryview, block: bytes, end: bytes, max_line: int, needle: bytes
) -> None:
    data = (block + end)[-len(guarded_page) :]
    at_the_edge = guarded_page[len(guarded_page) - len(data) :]
    at_the_edge[:] = data
    assert compiled is not None
    assert compiled(at_the_edge, max_line, needle) == scan_python(data, max_line, needle)


@needs_c
@pytest.mark.skipif(sys.platform == "win32", reason="mprotect: POSIX")
@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 4000),
    filler=st.sampled_from([b"o", b"h", b"s", b'"', b"t", b"x"]),
    at=st.none() | st.floats(0, 1),
    tail=st.sampled_from([b"}\n", b"", b"o", b"oo", b'o"', b"os", b"sho"]),
)
def test_the_needle_is_found_in_text_dense_with_its_bytes(
    guarded_page: memoryview, size: int, filler: bytes, at: float | None, tail: bytes
) -> None:
    """Runs of the needle's own bytes (crafted or not) switch the search to its second
    method after many misses; it must find the same thing, within the buffer (the
    tails that are not a line's end land its last window on the buffer's last byte)."""
    text = bytearray(filler * size)
    if at is not None:
        pos = int(at * max(0, size - 6))
        text[pos : pos + 6] = _SHOT
    data = b"{" + bytes(text) + tail
    at_the_edge = guarded_page[len(guarded_page) - len(data) :]
    at_the_edge[:] = data
    assert compiled is not None
    assert compiled(at_the_edge, 1 << 20, _SHOT) == scan_python(data, 1 << 20, _SHOT)
