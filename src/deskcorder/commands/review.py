"""``deskcorder review list|show|approve|delete``: approve or delete sealed chunks before upload.

Approval markers are kept by ``deskcorder.storage.approval`` (the uploader
reads them); ``delete`` removes chunk, manifest and marker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from deskcorder.errors import UsageError
from deskcorder.storage.approval import approve, is_approved
from deskcorder.storage.chunk import read_chunk
from deskcorder.storage.spool import SealedChunk, Spool


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


def delete(spool: Spool, chunk: SealedChunk) -> None:
    """Delete chunk, manifest and approval marker (``Spool.delete_chunk`` removes all three)."""
    spool.delete_chunk(chunk)


def review_command(action: str, ref: str | None, spool_root: Path, out: TextIO) -> int:
    """``deskcorder review [list|show|approve|delete] [REF]``."""
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
