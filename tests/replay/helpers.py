"""Hand-made spools for the replay tests: real sealed chunks, real blobs, chosen records."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from deskcorder.events import FORMAT_NAME, FORMAT_VERSION
from deskcorder.storage.blobs import BlobStore
from deskcorder.storage.chunk import ChunkWriter

SESSION = "20261127T031500Z-1a2b3c4d"
EDITOR = {"id": 1, "title": "Notes - Editor", "app": "Tk"}


def header(session: str, seq: int, keystrokes: str = "redacted") -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "session": session,
        "seq": seq,
        "device": "d-00000000000000000000000000000001",
        "user": "u-00000000000000000000000000000001",
        "identity": "pseudonymous",
        "agent": "deskcorder/test",
        "backend": "fake",
        "os": "Linux",
        "screen": [[0, 0, 1920, 1080]],
        "keyboard_layout": None,
        "policy_digest": "0" * 64,
        "keystrokes": keystrokes,
        "mouse_move_hz": 60.0,
        "clock": {"t": 0, "unix_ns": 1_795_000_000_000_000_000, "utc": "2026-11-18T10:06:40Z"},
    }


def write_session(
    spool: Path, chunks: list[list[dict[str, Any]]], session: str = SESSION, **kw: Any
) -> Path:
    """A session folder of sealed chunks (with manifests) holding ``chunks``' records."""
    folder = spool / "sessions" / session
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for seq, records in enumerate(chunks):
        writer = ChunkWriter(folder, session, seq, header(session, seq, **kw))
        writer.write_many(records)
        writer.seal()
    return folder


def image(color: str, size: tuple[int, int] = (320, 180)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "WEBP", quality=70)
    return out.getvalue()


def put_image(spool: Path, color: str) -> str:
    sha, _ = BlobStore(spool / "blobs").put(image(color))
    return sha


def shot(t_ms: int, sha: str, reason: str = "click") -> dict[str, Any]:
    return {
        "k": "shot",
        "t": t_ms * 1000,
        "sha256": sha,
        "fmt": "webp",
        "w": 320,
        "h": 180,
        "mon": [0, 0, 1920, 1080],
        "reason": reason,
        "win": 1,
    }


def click(t_ms: int, x: int, y: int) -> list[dict[str, Any]]:
    return [
        {"k": "bd", "t": t_ms * 1000, "x": x, "y": y, "b": "left"},
        {"k": "bu", "t": (t_ms + 50) * 1000, "x": x, "y": y, "b": "left"},
    ]
