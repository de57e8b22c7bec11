"""Chunk codec: round trip, durability, torn tails, recovery, bounded decoding."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard as zstd

from deskcorder.errors import FormatError
from deskcorder.events import validate_record
from deskcorder.storage.chunk import (
    ChunkWriter,
    chunk_name,
    decode_chunk,
    iter_lines,
    part_name,
    read_chunk,
    read_manifest,
    recover_part,
)

HEADER = {"format": "deskcorder-chunk", "format_version": 1, "session": "s", "seq": 0}


def records(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"k": "kd", "t": i, "cls": "letter"} for i in range(start, start + n)]


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path, "s", 0, HEADER)
    w.write_many(records(100))
    w.flush()
    w.write({"k": "gap", "t": 200, "cause": "queue_full", "dropped": 7})
    w.write(
        {
            "k": "shot",
            "t": 201,
            "sha256": "a" * 64,
            "fmt": "webp",
            "w": 1,
            "h": 1,
            "mon": [0, 0, 1, 1],
            "reason": "click",
        }
    )
    manifest = w.seal()
    path = tmp_path / chunk_name(0)
    assert path.exists() and not (tmp_path / part_name(0)).exists()
    decoded = read_chunk(path)
    assert decoded.complete and decoded.header == HEADER
    assert decoded.records[:100] == records(100)
    for rec in decoded.records:
        validate_record(rec)
    import hashlib

    assert manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest.bytes == path.stat().st_size
    assert manifest.events == {"gap": 1, "kd": 100, "shot": 1}
    assert (manifest.t_first, manifest.t_last) == (0, 201)
    assert (manifest.gaps, manifest.dropped) == (1, 7)
    assert manifest.blobs == ["a" * 64]
    assert read_manifest(tmp_path / "000000.manifest.json") == manifest


def test_sealed_chunk_is_plain_zstd_json_lines(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path, "s", 0, HEADER)
    w.write_many(records(10))
    w.seal()
    out = subprocess.run(
        ["zstd", "-dc", str(tmp_path / chunk_name(0))], capture_output=True, check=True
    ).stdout
    lines = [json.loads(x) for x in out.decode().splitlines()]
    assert lines[0] == HEADER and len(lines) == 11


def test_every_flush_is_decodable_without_the_frame_end(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path, "s", 0, HEADER)
    sizes = []
    for i in range(5):
        w.write_many(records(50, i * 50))
        w.flush()
        sizes.append(w.compressed_size)
    w.abandon()
    data = (tmp_path / part_name(0)).read_bytes()
    for i, size in enumerate(sizes):
        decoded = decode_chunk(data[:size], tolerant=True)
        assert len(decoded.records) == 50 * (i + 1)
        assert not decoded.complete
    with pytest.raises(FormatError, match="not finished"):
        decode_chunk(data)


def test_torn_tail_is_cut_at_the_last_complete_flush(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path, "s", 0, HEADER)
    w.write_many(records(30))
    w.flush()
    flushed = w.compressed_size
    w.write_many(records(30, 30))
    w.flush()
    w.abandon()
    part = tmp_path / part_name(0)
    data = part.read_bytes()
    rng = random.Random(1)
    for cut in sorted({rng.randrange(flushed, len(data)) for _ in range(20)}):
        decoded = decode_chunk(data[:cut], tolerant=True)
        assert decoded.records[:30] == records(30)  # everything flushed before survives
        assert decoded.records == records(len(decoded.records))  # nothing invented
    part.write_bytes(data[: flushed + (len(data) - flushed) // 2])
    manifest = recover_part(part)
    assert manifest is not None and manifest.recovered
    assert not part.exists()
    sealed = read_chunk(tmp_path / chunk_name(0))
    assert sealed.complete
    assert sealed.records[:30] == records(30)
    assert sealed.records[-1]["k"] == "gap" and sealed.records[-1]["cause"] == "crash_recovery"


def test_recover_part_without_header_removes_it(tmp_path: Path) -> None:
    part = tmp_path / part_name(3)
    part.write_bytes(b"\x28\xb5\x2f")  # three bytes of a zstd magic number
    assert recover_part(part) is None
    assert not part.exists()


def test_bad_chunks_are_refused_with_one_line(tmp_path: Path) -> None:
    cases = {
        "garbage": b"not zstd at all",
        "not-json": zstd.ZstdCompressor().compress(b"hello\n"),
        "other-format": zstd.ZstdCompressor().compress(b'{"format":"x"}\n'),
        "future": zstd.ZstdCompressor().compress(
            b'{"format":"deskcorder-chunk","format_version":99}\n'
        ),
        "empty": b"",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.jsonl.zst"
        path.write_bytes(data)
        with pytest.raises(FormatError) as info:
            read_chunk(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value), name


def test_bounded_decoder_refuses_bombs_and_long_lines() -> None:
    bomb = zstd.ZstdCompressor(level=19).compress(b"\n" * (64 << 20))
    assert len(bomb) < 100_000
    with pytest.raises(FormatError, match="exceeds"):
        for _ in iter_lines(io.BytesIO(bomb), max_output=1 << 20):
            pass
    long_line = zstd.ZstdCompressor().compress(b"x" * (4 << 20))
    with pytest.raises(FormatError, match="longer than"):
        for _ in iter_lines(io.BytesIO(long_line), max_line=1 << 20):
            pass


WRITER = r"""
import sys, time
from pathlib import Path
from deskcorder.storage.chunk import ChunkWriter
d = Path(sys.argv[1])
header = {"format": "deskcorder-chunk", "format_version": 1, "session": "s", "seq": 0}
w = ChunkWriter(d, "s", 0, header)
i = 0
while True:
    w.write_many([{"k": "kd", "t": j, "cls": "letter"} for j in range(i, i + 97)])
    i += 97
    w.flush()
    sys.stdout.write(f"{i}\n"); sys.stdout.flush()   # reported only after the durable flush
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_flushed(tmp_path: Path) -> None:
    """Kill a writing process with SIGKILL many times; every flushed event survives recovery."""
    rng = random.Random(20261127)
    for run in range(25):
        d = tmp_path / f"run{run}"
        d.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(d)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        confirmed = 0
        target = rng.randrange(1, 60)
        for line in proc.stdout:
            confirmed = int(line)
            if confirmed >= target * 97:
                break
        proc.kill()
        proc.wait()
        for line in proc.stdout:  # lines written before the kill were flushed too
            confirmed = max(confirmed, int(line))
        proc.stdout.close()
        manifest = recover_part(d / part_name(0))
        assert manifest is not None
        decoded = read_chunk(d / chunk_name(0))
        keys = [r["t"] for r in decoded.records if r["k"] == "kd"]
        assert keys == list(range(len(keys))), f"run {run}: events out of order or invented"
        assert len(keys) >= confirmed, f"run {run}: lost flushed events"
