"""``GET /v1/admin/sessions/{session}/replay``: the replay page of an uploaded session.

Reads only through the store's interface (``session``, ``read_chunk``,
``read_blob``), so it works on every storage backend. The page is the one
``deskcorder replay`` writes, with its screenshots **inline** (base64 in
``<script type="text/plain">`` elements, decoded only when shown) rather than
behind a second route: an ``<img>`` cannot send the admin bearer token, and a
cookie or a token in image URLs would be a new credential to issue, scope,
expire and keep out of logs. Inline, the one authenticated response is the
whole page: it can be saved and opened anywhere without network, and its
policy allows no network at all (``img-src data:``). The cost is size (about
4/3 of the screenshots' bytes; docs/performance.md) and memory stays flat:
the page is streamed, one screenshot at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from deskcorder.replay import ChunkFacts, Images, build_replay, content_security_policy, images_of
from deskcorder.replay import render as render_page_pieces
from deskcorder.replay.model import StepSource
from deskcorder.storage.chunk import decode_chunk


class ReplayStore(Protocol):
    """What the route needs of a store (both backends have it)."""

    def session(self, session: str) -> dict[str, Any] | None: ...

    def read_chunk(self, session: str, seq: int) -> bytes | None: ...

    def read_blob(self, sha: str) -> bytes | None: ...


def session_document(
    store: ReplayStore, session: str, steps: StepSource = "actions"
) -> dict[str, Any] | None:
    """The replay document of an uploaded session, or None if there is no such session."""
    info = store.session(session)
    if info is None:
        return None
    headers: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    chunks: list[ChunkFacts] = []
    warnings: list[str] = []
    expected = 0
    for row in info.get("chunk_list", []):
        seq = int(row["seq"])
        if seq > expected:
            missing = ", ".join(f"{n:06d}" for n in range(expected, seq))
            warnings.append(f"chunk(s) {missing} not on the collector (not uploaded, or dropped)")
        expected = seq + 1
        data = store.read_chunk(session, seq)
        if data is None:
            warnings.append(f"chunk {seq:06d} is indexed but its bytes are missing")
            continue
        decoded = decode_chunk(data)
        headers.append(decoded.header)
        records.extend(decoded.records)
        chunks.append(ChunkFacts(seq=seq, bytes=int(row["bytes"]), records=int(row["records"])))
    if not headers:
        warnings.append("no chunk of this session could be read")
    note = (
        f"Uploaded session of user {info.get('user')} (device {info.get('device')}): "
        f"{len(chunks)} chunk(s) on the collector."
    )
    return build_replay(
        headers,
        records,
        chunks=chunks,
        image_bytes=None,  # the page counts the inline images itself
        scope={"kind": "session", "note": note},
        steps=steps,
        warnings=warnings,
    )


def page(store: ReplayStore, doc: dict[str, Any]) -> Iterator[str]:
    """The page, streamed; each screenshot is read from the store when its turn comes."""

    def blobs() -> Iterator[tuple[str, bytes]]:
        for sha, _fmt in images_of(doc):
            data = store.read_blob(sha)
            if data is not None:
                yield sha, data

    return render_page_pieces(doc, Images("inline", blobs=blobs()))


def headers(session: str) -> dict[str, str]:
    """Response headers: the page's policy as a header too, and nothing cached or framed."""
    return {
        "Content-Security-Policy": content_security_policy("inline", header=True),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Content-Disposition": f'inline; filename="{session}.html"',
    }
