"""Helpers for privacy tests: every byte the agent left on disk, decompressed."""

from __future__ import annotations

import io
from pathlib import Path

import zstandard

SECRETS = {
    "card": "4111 1111 1111 1111",
    "email": "jane.doe@example.com",
    "password": "Tr0ub4dor&3xyz",
    "token": "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
}


def _decompress(data: bytes) -> bytes:
    """All frames of a (possibly torn) zstd file; the raw bytes if it is not zstd."""
    if not data.startswith(b"\x28\xb5\x2f\xfd"):
        return data
    out = io.BytesIO()
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    try:
        while chunk := reader.read(65536):
            out.write(chunk)
    except zstandard.ZstdError:
        pass  # torn tail of an open chunk: what was decoded so far is kept
    return out.getvalue()


def spool_bytes(root: Path) -> bytes:
    """Every file under ``root`` (zstd decompressed, like ``zstd -dc``), concatenated."""
    parts = [_decompress(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
    return b"\n".join(parts)


def assert_absent(blob: bytes, *literals: str) -> None:
    """No literal (nor its digits-only / no-space variant) appears in ``blob``."""
    for literal in literals:
        for variant in {literal, literal.replace(" ", ""), literal.replace(" ", "-")}:
            assert variant.encode() not in blob, f"{variant!r} reached disk"
