"""Review approval markers (policy ``upload.review``): one file beside each approved chunk.

::

    sessions/<session>/000003.jsonl.zst
    sessions/<session>/000003.manifest.json
    sessions/<session>/000003.approved.json   <- written by `deskcorder review approve`
    {"format": "deskcorder-approval", "format_version": 1,
     "session": "...", "seq": 3, "sha256": "<the chunk's sha256 from its manifest>",
     "utc": "2026-11-27T03:15:00Z"}

The uploader uploads a chunk only when policy does not require review, or
when :func:`is_approved` is true: the marker exists, parses, and its
``sha256`` equals the manifest's (a chunk changed after approval is not
approved). ``Spool.delete_chunk`` removes the marker with its chunk.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from deskcorder.storage.spool import SealedChunk

APPROVAL_FORMAT = "deskcorder-approval"


def approval_path(chunk: SealedChunk) -> Path:
    return chunk.approval_path


def is_approved(chunk: SealedChunk) -> bool:
    """True when an approval marker matching the chunk's manifest digest exists."""
    try:
        data = json.loads(approval_path(chunk).read_text(encoding="utf-8"))
        return bool(
            data.get("format") == APPROVAL_FORMAT and data.get("sha256") == chunk.manifest().sha256
        )
    except Exception:  # unreadable marker or manifest: not approved (fail closed)
        return False


def may_upload(chunk: SealedChunk, review_required: bool) -> bool:
    """The uploader's check."""
    return not review_required or is_approved(chunk)


def approve(chunk: SealedChunk, now: datetime | None = None) -> Path:
    """Write the marker atomically (tmp + fsync + rename); return its path."""
    manifest = chunk.manifest()
    now = now or datetime.now(timezone.utc)
    path = approval_path(chunk)
    tmp = path.with_suffix(".tmp")
    data = {
        "format": APPROVAL_FORMAT,
        "format_version": 1,
        "session": chunk.session,
        "seq": chunk.seq,
        "sha256": manifest.sha256,
        "utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
