"""Review before upload (policy ``upload.review``): the user approves or deletes chunks.

Approval is a marker file beside the sealed chunk (docs/architecture.md)::

    sessions/<session>/000003.jsonl.zst
    sessions/<session>/000003.manifest.json
    sessions/<session>/000003.approved.json   <- written by `deskcorder review approve`
    {"format": "deskcorder-approval", "format_version": 1,
     "session": "...", "seq": 3, "sha256": "<the chunk's sha256 from its manifest>",
     "utc": "2026-11-27T03:15:00Z"}

The uploader uploads a chunk only when policy does not require review, or
when :func:`is_approved` is true: the marker exists, parses, and its
``sha256`` equals the manifest's (a chunk changed after approval is not
approved). ``deskcorder review delete`` removes chunk, manifest and marker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deskcorder.errors import UsageError
from deskcorder.storage.spool import SealedChunk, Spool

APPROVAL_SUFFIX = ".approved.json"
APPROVAL_FORMAT = "deskcorder-approval"


def approval_path(chunk: SealedChunk) -> Path:
    return chunk.path.with_name(f"{chunk.seq:06d}{APPROVAL_SUFFIX}")


def is_approved(chunk: SealedChunk) -> bool:
    """True when an approval marker matching the chunk's manifest digest exists."""
    try:
        data = json.loads(approval_path(chunk).read_text(encoding="utf-8"))
        return bool(
            data.get("format") == APPROVAL_FORMAT and data.get("sha256") == chunk.manifest().sha256
        )
    except (OSError, ValueError, AttributeError):
        return False
    except Exception:
        return False


def may_upload(chunk: SealedChunk, review_required: bool) -> bool:
    """The uploader's check."""
    return not review_required or is_approved(chunk)


@dataclass(frozen=True)
class ReviewItem:
    chunk: SealedChunk
    approved: bool
    summary: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.chunk.session}/{self.chunk.seq:06d}"


def list_chunks(spool: Spool) -> list[ReviewItem]:
    items = []
    for chunk in spool.sealed_chunks():
        try:
            m = chunk.manifest()
            summary: dict[str, Any] = {
                "bytes": m.bytes,
                "records": m.records,
                "events": m.events,
                "seconds": round(((m.t_last or 0) - (m.t_first or 0)) / 1e6, 1),
            }
        except Exception as exc:
            summary = {"error": f"manifest unreadable: {exc}"}
        items.append(ReviewItem(chunk, is_approved(chunk), summary))
    return items


def find(spool: Spool, ref: str) -> list[SealedChunk]:
    """Chunks named by ``ref``: ``<session>/<seq>``, ``<session>`` or ``all``."""
    chunks = spool.sealed_chunks()
    if ref == "all":
        return chunks
    session, _, seq = ref.partition("/")
    picked = [c for c in chunks if c.session == session]
    if seq:
        try:
            number = int(seq)
        except ValueError as exc:
            raise UsageError(f"{ref!r}: expected SESSION/SEQ, SESSION or all") from exc
        picked = [c for c in picked if c.seq == number]
    if not picked:
        raise UsageError(f"no sealed chunk matches {ref!r} (see `deskcorder review list`)")
    return picked


def approve(chunk: SealedChunk, now: datetime | None = None) -> Path:
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


def delete(spool: Spool, chunk: SealedChunk) -> None:
    """Delete chunk, manifest and approval marker (``Spool.delete_chunk`` removes all three)."""
    spool.delete_chunk(chunk)


def review_command(action: str, ref: str | None, spool_root: Path, out: Any) -> int:
    """``deskcorder review [list|show|approve|delete] [REF]``."""
    from deskcorder.storage.chunk import read_chunk

    spool = Spool(spool_root)
    if action == "list":
        items = list_chunks(spool)
        if not items:
            out.write("No sealed chunks waiting on this machine.\n")
        for item in items:
            mark = "approved" if item.approved else "waiting "
            s = item.summary
            detail = s.get("error") or (
                f"{s['seconds']} s, {s['records']} records, "
                + ", ".join(f"{k}={v}" for k, v in sorted(s["events"].items()))
            )
            out.write(f"{mark}  {item.ref}  {detail}\n")
        return 0
    if not ref:
        raise UsageError(f"review {action} needs a chunk: SESSION/SEQ, SESSION or all")
    chunks = find(spool, ref)
    for chunk in chunks:
        name = f"{chunk.session}/{chunk.seq:06d}"
        if action == "show":
            decoded = read_chunk(chunk.path)
            out.write(json.dumps(decoded.header, ensure_ascii=False) + "\n")
            for rec in decoded.records:
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elif action == "approve":
            approve(chunk)
            out.write(f"approved {name}\n")
        elif action == "delete":
            delete(spool, chunk)
            out.write(f"deleted {name}\n")
    return 0
