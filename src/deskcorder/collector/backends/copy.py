"""``deskcorder collector copy``: move a pilot's local collector data into the fleet backend.

Reads the local data folder (its SQLite index opened read-only, its files)
and writes the fleet bucket and database: devices with their token digests
and revocations (so agents keep their tokens across the switch), sessions,
chunks, screenshot references, blobs, consent receipts and the audit log.

* **Verified**: every chunk's and blob's bytes are hashed and must match the
  digest the index acknowledged; a file that does not is reported and not
  copied (exit 1 at the end), everything else still is.
* **Idempotent and resumable**: objects are written with ``If-None-Match: *``
  and rows with ``ON CONFLICT DO NOTHING``; a chunk whose row is already in
  the fleet index with the same digest is skipped without reading it, so a
  copy cut short is simply run again. A chunk indexed in the fleet with
  another digest is a conflict: reported, not overwritten (exit 1).
* The local folder is never written. Stop the local collector first (or
  copy again after it stopped: only what is new is sent).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from deskcorder.errors import DeskcorderError
from deskcorder.storage.chunk import chunk_name

from .fleet import FleetConfig, S3Objects, blob_key, chunk_key, open_parts

BATCH = 500  # rows per statement and per progress step


@dataclass
class CopyReport:
    devices: int = 0
    sessions: int = 0
    chunks: int = 0
    chunks_present: int = 0
    blobs: int = 0
    receipts: int = 0
    audit: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


class Progress:
    """One line redrawn in place on a terminal; nothing between phases otherwise."""

    def __init__(self, out: IO[str], tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._last = 0.0

    def show(self, what: str, done: int, total: int, nbytes: int, *, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1 and done < total:
            return
        self._last = now
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        self.out.write(f"\r{what:<8} [{bar}] {done:,}/{total:,} ({nbytes / 1e6:,.1f} MB)")
        self.out.flush()

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def copy_command(
    data: Path, config: FleetConfig, out: IO[str], *, workers: int = 8, tty: bool | None = None
) -> int:
    """Copy ``data`` (a local collector's folder) into the fleet backend; 0, or 1 on problems."""
    index = data / "index.sqlite3"
    if not index.is_file():
        raise DeskcorderError(f"{data}: not a collector data folder (no index.sqlite3)")
    try:
        src = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        src.execute("SELECT 1 FROM chunks LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise DeskcorderError(f"{index}: cannot read the index: {exc}") from exc
    try:
        pool, objects = open_parts(config, min_size=1)
    except BaseException:
        src.close()
        raise
    try:
        bar = sys.stderr if tty is None else out  # the bar goes where a person looks
        progress = Progress(bar, bar.isatty() if tty is None else tty)
        report = _Copier(src, data, pool, objects, progress, workers).run()
    finally:
        objects.close()
        pool.close()
        src.close()
    print(
        f"copied {report.chunks} chunks ({report.bytes / 1e6:,.1f} MB), {report.blobs} blobs, "
        f"{report.sessions} sessions, {report.devices} devices, {report.receipts} receipts, "
        f"{report.audit} audit entries; {report.chunks_present} chunks were already there",
        file=out,
    )
    for problem in report.problems:
        print(f"problem: {problem}", file=out)
    return 1 if report.problems else 0


class _Copier:
    def __init__(
        self,
        src: sqlite3.Connection,
        data: Path,
        pool: Any,
        objects: S3Objects,
        progress: Progress,
        workers: int,
    ) -> None:
        self.src = src
        self.data = data
        self.pool = pool
        self.objects = objects
        self.progress = progress
        self.workers = workers
        self.report = CopyReport()

    def run(self) -> CopyReport:
        self._devices()
        self._sessions()
        self._blobs()
        self._chunks()
        self._receipts()
        self._audit()
        return self.report

    def _execute(self, query: str, args: Any) -> int:
        with self.pool.connection() as conn:
            cur = conn.execute(query, args)
            return max(int(cur.rowcount), 0)

    def _devices(self) -> None:
        """Devices with their keys, pseudonyms and revocations, their live tokens (agents go
        on without enrolling again) and the named admin tokens."""
        rows = self.src.execute(
            "SELECT device, public_key, mode, user, machine, person, agent, enrolled, "
            "last_auth, revoked, released FROM devices ORDER BY device"
        ).fetchall()
        for part in _batches(rows):
            self.report.devices += self._execute(
                'INSERT INTO devices(device, public_key, mode, "user", machine, person, agent, '
                "enrolled, last_auth, revoked, released) SELECT * FROM unnest(%s::text[], "
                "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::float8[], %s::int8[], %s::float8[], %s::float8[]) ON CONFLICT DO NOTHING",
                _columns(part, (str, str, str, str, str, str, str, float, int, _opt, _opt)),
            )
        tokens = self.src.execute(
            "SELECT token_sha256, device, issued, expires FROM tokens WHERE expires > ?",
            (time.time(),),
        ).fetchall()
        for part in _batches(tokens):
            self._execute(
                "INSERT INTO tokens(token_sha256, device, issued, expires) SELECT * FROM "
                "unnest(%s::text[], %s::text[], %s::float8[], %s::float8[]) ON CONFLICT DO NOTHING",
                _columns(part, (str, str, float, float)),
            )
        admins = self.src.execute(
            "SELECT name, token_sha256, created, created_by, revoked FROM admin_tokens"
        ).fetchall()
        for part in _batches(admins):
            self._execute(
                "INSERT INTO admin_tokens(name, token_sha256, created, created_by, revoked) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], "
                "%s::float8[]) ON CONFLICT DO NOTHING",
                _columns(part, (str, str, float, str, _opt)),
            )

    def _sessions(self) -> None:
        rows = self.src.execute(
            "SELECT session, device, user, first_seen FROM sessions ORDER BY session"
        ).fetchall()
        for part in _batches(rows):
            self.report.sessions += self._execute(
                'INSERT INTO sessions(session, device, "user", first_seen) '
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[]) "
                "ON CONFLICT DO NOTHING",
                _columns(part, (str, str, str, float)),
            )

    def _verified(self, path: Path, sha: str, what: str) -> bytes | None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.report.problems.append(f"{what}: cannot read {path}: {exc.strerror}")
            return None
        if hashlib.sha256(data).hexdigest() != sha:
            self.report.problems.append(f"{what}: {path} does not match its digest {sha}")
            return None
        return data

    def _blobs(self) -> None:
        rows = self.src.execute(
            "SELECT sha256, device, bytes, received FROM blobs ORDER BY sha256, device"
        ).fetchall()
        shas = sorted({str(r[0]) for r in rows})
        ok: set[str] = set()
        done = nbytes = 0

        def one(sha: str) -> tuple[str, int]:
            if self.objects._exists(blob_key(sha)):
                return sha, 0
            data = self._verified(self.data / "blobs" / sha[:2] / sha, sha, f"blob {sha}")
            if data is None:
                return "", 0
            self.objects._create(blob_key(sha), data)
            return sha, len(data)

        with concurrent.futures.ThreadPoolExecutor(self.workers) as ex:
            for sha, size in ex.map(one, shas):
                done += 1
                nbytes += size
                if sha:
                    ok.add(sha)
                self.progress.show("blobs", done, len(shas), nbytes)
        if shas:
            self.progress.end()
        good = [r for r in rows if str(r[0]) in ok]
        for part in _batches(good):
            self.report.blobs += self._execute(
                "INSERT INTO blobs(sha256, device, bytes, received) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::int8[], %s::float8[]) "
                "ON CONFLICT DO NOTHING",
                _columns(part, (str, str, int, float)),
            )
        self.report.bytes += nbytes

    def _chunks(self) -> None:
        rows = self.src.execute(
            "SELECT session, seq, sha256, bytes, records, received FROM chunks "
            "ORDER BY session, seq"
        ).fetchall()
        total, done = len(rows), 0
        for part in _batches(rows):
            with self.pool.connection() as conn:
                present = {
                    (str(r[0]), int(r[1])): str(r[2])
                    for r in conn.execute(
                        "SELECT c.session, c.seq, c.sha256 FROM unnest(%s::text[], %s::int[]) "
                        "AS k(session, seq) JOIN chunks c USING (session, seq)",
                        ([r[0] for r in part], [r[1] for r in part]),
                    )
                }
            todo = []
            for row in part:
                there = present.get((row[0], row[1]))
                if there == row[2]:
                    self.report.chunks_present += 1
                elif there is not None:
                    self.report.problems.append(
                        f"chunk {row[0]}/{row[1]:06d}: the fleet index has digest {there}, "
                        f"the local one {row[2]}: not copied"
                    )
                else:
                    todo.append(row)

            def one(row: tuple[Any, ...]) -> tuple[Any, ...] | None:
                session, seq, sha = str(row[0]), int(row[1]), str(row[2])
                path = self.data / "chunks" / session / chunk_name(seq)
                data = self._verified(path, sha, f"chunk {session}/{seq:06d}")
                if data is None:
                    return None
                self.objects._create(chunk_key(session, seq, sha), data)
                return row

            with concurrent.futures.ThreadPoolExecutor(self.workers) as ex:
                copied = [r for r in ex.map(one, todo) if r is not None]
            if copied:
                keys = {(str(r[0]), int(r[1])) for r in copied}
                refs = [
                    ref
                    for session in sorted({key[0] for key in keys})
                    for ref in self.src.execute(
                        "SELECT session, seq, sha256 FROM chunk_blobs WHERE session=?",
                        (session,),
                    )
                    if (ref[0], ref[1]) in keys
                ]
                with self.pool.connection() as conn, conn.transaction():
                    self.report.chunks += conn.execute(
                        "INSERT INTO chunks(session, seq, sha256, bytes, records, received) "
                        "SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], %s::int8[], "
                        "%s::int[], %s::float8[]) ON CONFLICT DO NOTHING",
                        _columns(copied, (str, int, str, int, int, float)),
                    ).rowcount
                    if refs:
                        conn.execute(
                            "INSERT INTO chunk_blobs(session, seq, sha256) SELECT * FROM "
                            "unnest(%s::text[], %s::int[], %s::text[]) ON CONFLICT DO NOTHING",
                            _columns(refs, (str, int, str)),
                        )
                self.report.bytes += sum(int(r[3]) for r in copied)
            done += len(part)
            self.progress.show("chunks", done, total, self.report.bytes, force=True)
        if rows:
            self.progress.end()

    def _receipts(self) -> None:
        rows = self.src.execute(
            "SELECT device, user, body, received FROM receipts ORDER BY id"
        ).fetchall()
        for part in _batches(rows):
            self.report.receipts += self._execute(
                'INSERT INTO receipts(device, "user", body, received) '
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[]) "
                "ON CONFLICT (device, md5(body)) DO NOTHING",
                _columns(part, (str, str, str, float)),
            )

    def _audit(self) -> None:
        """The local audit log, appended once: entries already copied (same time, actor,
        action, target and detail) are not appended again."""
        try:
            rows = self.src.execute(
                "SELECT at, actor, action, target, detail FROM audit ORDER BY id"
            ).fetchall()
        except sqlite3.OperationalError:  # an index from before the audit log
            rows = []
        for part in _batches(rows):
            self.report.audit += self._execute(
                "INSERT INTO audit(at, actor, action, target, detail) "
                "SELECT * FROM unnest(%s::float8[], %s::text[], %s::text[], %s::text[], "
                "%s::text[]) AS n(at, actor, action, target, detail) WHERE NOT EXISTS "
                "(SELECT 1 FROM audit a WHERE a.at = n.at AND a.actor = n.actor AND "
                "a.action = n.action AND a.target = n.target AND a.detail = n.detail)",
                _columns(part, (float, str, str, str, str)),
            )


def _opt(value: Any) -> float | None:
    """A nullable REAL (a revocation time, say)."""
    return None if value is None else float(value)


def _batches(rows: list[Any]) -> list[list[Any]]:
    return [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]


def _columns(rows: list[Any], types: tuple[Any, ...]) -> tuple[list[Any], ...]:
    """Rows -> one list per column (for ``unnest``), each value converted by its type."""
    return tuple([kind(row[i]) for row in rows] for i, kind in enumerate(types))
