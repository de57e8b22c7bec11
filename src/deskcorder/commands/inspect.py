"""``deskcorder inspect``: show the user everything still on disk about them."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from deskcorder.errors import DeskcorderError, FormatError
from deskcorder.events import INPUT_KINDS, K_CLOCK, K_EXCLUDED, K_GAP, K_PAUSE, event_count
from deskcorder.storage.reader import Session, WallClock, list_sessions, read_session
from deskcorder.upload.report import rejected_lines
from deskcorder.upload.uploader import rejected_chunks


def summarize(session: Session) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    windows: dict[tuple[Any, ...], dict[str, Any]] = {}
    titles: list[str] = []
    gaps = dropped = excluded = pauses = 0
    first_t: int | None = None
    last_t = 0
    header: dict[str, Any] | None = None
    chunks = 0
    damaged: list[str] = []
    current: dict[str, Any] | None = None
    wall = WallClock()  # the anchor in force: the first, and the last
    start: datetime | None = None
    for path, decoded in session.chunks():
        chunks += 1
        header = header or decoded.header
        wall.see(decoded.header)
        if decoded.error:
            damaged.append(f"{path.name}: {decoded.error}")
        for rec in decoded.records:
            kind = rec["k"]
            n = event_count(rec)
            counts[kind] += n
            t = rec["t"]
            if first_t is None:
                start = wall.utc(t)
            first_t = t if first_t is None else min(first_t, t)
            if kind == K_CLOCK:
                wall.see(rec)
            last_t = max(last_t, t + sum(rec.get("dt", ())))
            if kind == "focus":
                win = rec.get("win") or {}
                key = (win.get("app"), win.get("title"))
                current = windows.setdefault(
                    key,
                    {
                        "app": win.get("app"),
                        "title": win.get("title"),
                        "process": win.get("process"),
                        "events": 0,
                    },
                )
                if win.get("title") and win["title"] not in titles:
                    titles.append(win["title"])
            elif kind == "title":
                key = (current["app"] if current else None, rec["title"])
                current = windows.setdefault(
                    key,
                    {
                        "app": key[0],
                        "title": rec["title"],
                        "process": current.get("process") if current else None,
                        "events": 0,
                    },
                )
                if rec["title"] not in titles:
                    titles.append(rec["title"])
            elif kind == K_EXCLUDED:
                excluded += 1
                current = None
            elif kind == K_GAP:
                gaps += 1
                dropped += int(rec.get("dropped") or 0)
            elif kind == K_PAUSE:
                pauses += 1
            if kind in INPUT_KINDS and current is not None:
                current["events"] += n
    if header is None:
        raise FormatError(f"{session.path}: no readable chunk")
    end = wall.utc(last_t)
    return {
        "id": session.id,
        "path": str(session.path),
        "chunks": chunks,
        "open_chunks": len(session.part_paths),
        "user": header.get("user"),
        "device": header.get("device"),
        "keystrokes": header.get("keystrokes"),
        "start_utc": start.isoformat() if start else None,
        "end_utc": end.isoformat() if end else None,
        "duration_s": round((last_t - (first_t or 0)) / 1e6, 3),
        "counts": dict(sorted(counts.items())),
        "events": sum(v for k, v in counts.items() if k in INPUT_KINDS),
        "windows": titles,
        "window_activity": sorted(windows.values(), key=lambda w: -int(w["events"])),
        "gaps": gaps,
        "dropped": dropped,
        "excluded_periods": excluded,
        "pauses": pauses,
        "damaged": damaged,
    }


def inspect_spool(
    spool: Path, session: str | None, *, as_json: bool, all_events: bool, out: TextIO
) -> int:
    if session:
        candidate = Path(session)
        if not candidate.exists():
            candidate = spool / "sessions" / session
        sessions = [read_session(candidate)]
    else:
        if not spool.exists():
            raise DeskcorderError(f"{spool}: no spool here (nothing has been recorded yet)")
        sessions = list_sessions(spool)
    if all_events:
        for one in sessions:
            for rec in one.records():
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return 0
    summaries = [summarize(session) for session in sessions]
    local = local_state(spool)
    rejected = rejected_chunks(spool)
    if as_json:
        doc = {"spool": str(spool), "sessions": summaries, **local, "rejected": rejected}
        out.write(json.dumps(doc, indent=2) + "\n")
        return 0
    write_local_state(local, out)
    if not summaries:
        out.write(f"No sessions in {spool}.\n")
        out.writelines(line + "\n" for line in rejected_lines(rejected))
        return 0
    out.write(f"Spool {spool}: {len(summaries)} session(s) on this machine\n")
    for s in summaries:
        out.write(
            f"\nSession {s['id']}  ({s['chunks']} chunk(s)"
            f"{', ' + str(s['open_chunks']) + ' open' if s['open_chunks'] else ''})\n"
        )
        out.write(f"  time     {s['start_utc']} .. {s['end_utc']}  ({s['duration_s']} s)\n")
        out.write(f"  user     {s['user']}  device {s['device']}  keystrokes={s['keystrokes']}\n")
        counts = ", ".join(f"{k}={v}" for k, v in s["counts"].items())
        out.write(f"  events   {s['events']} input events; by kind: {counts}\n")
        out.write(
            f"  gaps     {s['gaps']} (events dropped: {s['dropped']}); "
            f"excluded periods: {s['excluded_periods']}; pauses: {s['pauses']}\n"
        )
        if s["window_activity"]:
            out.write("  windows  (input events per window)\n")
            for w in s["window_activity"]:
                out.write(
                    f"    {w['events']:>7}  {w['app'] or '?'}: {w['title'] or '(no title)'}\n"
                )
        for d in s["damaged"]:
            out.write(f"  warning  {d}\n")
    out.writelines(line + "\n" for line in rejected_lines(rejected))
    return 0


def local_state(spool: Path) -> dict[str, Any]:
    """Consent receipts and review state kept on this machine (privacy, issue 5)."""
    from deskcorder.capture.consent import receipts
    from deskcorder.identity import enrolled
    from deskcorder.storage.approval import is_approved
    from deskcorder.storage.spool import Spool

    chunks = Spool(spool).sealed_chunks()
    approved = sum(1 for c in chunks if is_approved(c))
    known = enrolled(spool)
    return {
        "identity": {k: known.get(k) for k in ("device", "user", "machine", "endpoint")},
        "consent_receipts": [r.data for r in receipts(spool)],
        "review": {"sealed_chunks": len(chunks), "approved": approved},
    }


def write_local_state(local: dict[str, Any], out: TextIO) -> None:
    ids = local["identity"]
    if ids.get("device"):
        out.write(
            f"Identity: device {ids['device']}; the collector at {ids['endpoint']} knows you as "
            f"user {ids['user']} on machine {ids['machine']} (pseudonyms it derived; it keeps "
            "no login name or machine id)\n"
        )
    found = local["consent_receipts"]
    if found:
        last = found[-1]
        out.write(
            f"Consent receipts: {len(found)}; latest: {last.get('action')} of notice "
            f"{last.get('notice_version')} at {last.get('utc')} (user {last.get('user')})\n"
        )
    review = local["review"]
    if review["sealed_chunks"]:
        out.write(
            f"Sealed chunks on this machine: {review['sealed_chunks']} not yet uploaded"
            + (
                f" ({review['approved']} approved for upload in `deskcorder review`)\n"
                if review["approved"]
                else "\n"
            )
        )
