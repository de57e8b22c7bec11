"""Sealing re-encodes the 1 s-block journal into one compact frame, losslessly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import zstandard as zstd

from deskcorder.storage import chunk as chunk_mod
from deskcorder.storage.chunk import (
    ChunkWriter,
    chunk_name,
    part_name,
    read_chunk,
    recover_part,
)

HEADER = {"format": "deskcorder-chunk", "format_version": 1, "session": "s", "seq": 0}


def _records(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"k": "kd" if i % 2 else "ku", "t": i * 97_000, "cls": "letter"}
        for i in range(start, start + n)
    ]


def _write_journal(directory: Path, seal_level: int | None = 9) -> ChunkWriter:
    w = ChunkWriter(directory, "s", 0, HEADER, seal_level=seal_level)
    for i in range(60):  # sixty small flushes, like a minute of typing
        w.write_many(_records(12, i * 12))
        w.flush()
    return w


def test_seal_reencodes_smaller_with_identical_content(tmp_path: Path) -> None:
    w = _write_journal(tmp_path)
    journal = (tmp_path / part_name(0)).read_bytes()
    manifest = w.seal()
    sealed = (tmp_path / chunk_name(0)).read_bytes()
    assert not (tmp_path / part_name(0)).exists()
    assert not list(tmp_path.glob(".*"))  # no temp file left
    assert manifest.bytes == len(sealed) < len(journal)
    dctx = zstd.ZstdDecompressor()
    journal_text = dctx.decompressobj().decompress(journal)
    assert dctx.decompressobj().decompress(sealed) == journal_text
    decoded = read_chunk(tmp_path / chunk_name(0))
    assert decoded.complete and decoded.records == _records(720)


def test_seal_level_none_keeps_the_journal_bytes(tmp_path: Path) -> None:
    w = _write_journal(tmp_path, seal_level=None)
    w.seal()
    decoded = read_chunk(tmp_path / chunk_name(0))
    assert decoded.complete and len(decoded.records) == 720


def test_crash_between_rename_and_journal_removal(tmp_path: Path) -> None:
    w = _write_journal(tmp_path)
    saved = tmp_path.parent / "journal.copy"
    shutil.copy(tmp_path / part_name(0), saved)
    w.seal()
    sealed = (tmp_path / chunk_name(0)).read_bytes()
    shutil.copy(saved, tmp_path / part_name(0))  # as if the unlink never happened
    assert recover_part(tmp_path / part_name(0)) is None
    assert not (tmp_path / part_name(0)).exists()
    assert (tmp_path / chunk_name(0)).read_bytes() == sealed  # the sealed chunk wins, no gap


def test_seal_falls_back_to_the_journal_when_reencoding_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _write_journal(tmp_path)

    class Broken:
        def stream_reader(self, *args: object, **kwargs: object) -> object:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(chunk_mod.zstd, "ZstdDecompressor", Broken)
    manifest = w.seal()
    monkeypatch.undo()
    path = tmp_path / chunk_name(0)
    assert manifest.bytes == path.stat().st_size
    assert not list(tmp_path.glob(".*")) and not (tmp_path / part_name(0)).exists()
    decoded = read_chunk(path)
    assert decoded.complete and decoded.records == _records(720)
