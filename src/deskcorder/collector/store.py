"""The collector's embedded store: files on local disk plus a SQLite index.

Layout under the data folder::

    index.sqlite3                              devices, sessions, chunks, blobs, receipts
    chunks/<session>/<seq:06d>.jsonl.zst       stored chunks (valid zstd JSON Lines)
    blobs/<sha[:2]>/<sha>                      screenshots, content-addressed
    tmp/                                       request bodies being received

Every file is written to ``tmp/``, fsynced, renamed into place and its folder
fsynced *before* the index row is committed and the request acknowledged.
A file without an index row (crash between the two) is simply written again
by the device's retry; the index is the truth about what was acknowledged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from deskcorder.errors import DeskcorderError, FormatError
from deskcorder.storage.chunk import chunk_name, fsync_dir, iter_lines

from .base import Body, Job, Limits, PutResult, Rejected
from .ingest import Ingest
from .validate import ChunkInfo, valid_user, validate_chunk

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
  device TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, enrolled REAL NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS devices_token ON devices(token_sha256);
CREATE TABLE IF NOT EXISTS sessions (
  session TEXT PRIMARY KEY, device TEXT NOT NULL, user TEXT NOT NULL, first_seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE TABLE IF NOT EXISTS chunks (
  session TEXT NOT NULL, seq INTEGER NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
  records INTEGER NOT NULL, received REAL NOT NULL, PRIMARY KEY (session, seq));
CREATE TABLE IF NOT EXISTS chunk_blobs (
  session TEXT NOT NULL, seq INTEGER NOT NULL, sha256 TEXT NOT NULL,
  PRIMARY KEY (session, seq, sha256));
CREATE TABLE IF NOT EXISTS blobs (
  sha256 TEXT NOT NULL, device TEXT NOT NULL, bytes INTEGER NOT NULL, received REAL NOT NULL,
  PRIMARY KEY (sha256, device));
CREATE TABLE IF NOT EXISTS receipts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, user TEXT NOT NULL,
  body TEXT NOT NULL, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS receipts_user ON receipts(user);
"""


CACHE_MAX = 100_000
SPILL_BYTES = 4 * 1024 * 1024
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation


_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait


def _writeback_starter() -> Callable[[int], bool] | None:
    """libc's ``sync_file_range`` through ctypes (Linux only; the call drops the GIL)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start(fd: int) -> bool:
        return bool(fn(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) == 0)

    return start


_start_writeback = _writeback_starter()


def start_writeback(fd: int) -> bool:
    """Ask the kernel to start writing ``fd``'s dirty pages to disk now, without waiting.

    Only a hint, given by the validator right after it writes a temp file: the
    committer's fsync is still what makes the file durable, but by then most
    of its data is already written, so the committer (which fsyncs a batch one
    file after another) waits less. On this ext4, 64 KB files written then
    fsynced in batches of 8: fsync 0.24 -> 0.085 ms per file, 3,500 -> 6,200
    files/s (docs/performance.md). True if the hint was taken (Linux); False
    elsewhere or on an error, which loses nothing: the fsync still runs.
    """
    return _start_writeback is not None and _start_writeback(fd)


class SpooledBody:
    """A request body (``base.Body``): in memory up to SPILL_BYTES, then in a temp file.

    Created and written on the event loop; only bodies larger than the
    threshold create a file there. Then, in pipeline threads: ``write_temp``
    puts it in its temp file, ``sync`` makes that durable and ``take`` hands
    the path over to be renamed into place (``durable_file`` does all three).
    """

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.size = 0
        self._pieces: list[bytes] = []
        self._path: str | None = None
        self._fh: IO[bytes] | None = None

    def _open_temp(self) -> IO[bytes]:
        """A new private (0600) temp file in ``tmp_dir``, owned by this body."""
        path = os.path.join(self.tmp_dir, f"{secrets.token_hex(8)}.part")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        self._path = path
        return os.fdopen(fd, "w+b")

    def write(self, piece: bytes) -> None:
        self.size += len(piece)
        if self._fh is None and self.size > SPILL_BYTES:
            self._fh = self._open_temp()
            self._fh.writelines(self._pieces)
            self._pieces = []
        if self._fh is not None:
            self._fh.write(piece)
        else:
            self._pieces.append(piece)

    def source(self) -> bytes | IO[bytes]:
        """The body: bytes when in memory, else its (flushed) temp file."""
        if self._fh is not None:
            self._fh.flush()
            self._fh.seek(0)
            return self._fh
        if len(self._pieces) != 1:
            self._pieces = [b"".join(self._pieces)]
        return self._pieces[0]

    def sha256(self) -> str:
        """Hex sha256 of the body (called in a worker thread: hashlib drops the GIL)."""
        source = self.source()
        if isinstance(source, bytes):
            return hashlib.sha256(source).hexdigest()
        sha = hashlib.sha256()
        while block := source.read(1 << 20):
            sha.update(block)
        return sha.hexdigest()

    def write_temp(self) -> None:
        """Put the body in its temp file (written, not yet durable)."""
        if self._fh is None:
            data = self.source()
            self._fh = self._open_temp()
            self._fh.write(data)  # type: ignore[arg-type]  # in memory: bytes
        self._fh.flush()
        start_writeback(self._fh.fileno())  # the committer's fsync then waits less

    def sync(self) -> None:
        """Make the temp file durable (its data and size)."""
        assert self._fh is not None, "write_temp first"
        os.fsync(self._fh.fileno())

    def take(self) -> str:
        """Close the (synced) temp file and hand its path over, to be renamed into place."""
        assert self._fh is not None and self._path is not None, "write_temp first"
        self._fh.close()
        path, self._fh, self._path = self._path, None, None
        return path

    def durable_file(self) -> str:
        """The body in a fsynced temp file (a path in ``tmp_dir``), ready to be renamed."""
        self.write_temp()
        self.sync()
        return self.take()

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            self._path = None
        self._pieces = []


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """The local backend: chunks and blobs as files, an SQLite index (``base.ChunkSink``)."""

    index_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, root: Path, limits: Limits | None = None, *, validators: int = 3) -> None:
        self.root = Path(root)
        self.limits = limits or Limits()
        self.chunks_dir = self.root / "chunks"
        self.blobs_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        for path in (self.root, self.chunks_dir, self.blobs_dir, self.tmp_dir):
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise DeskcorderError(f"{path}: cannot create folder: {exc.strerror}") from exc
        for stale in self.tmp_dir.iterdir():  # bodies of requests cut by a crash
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            self._db = sqlite3.connect(
                self.root / "index.sqlite3", check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            # a second connection for lookups: WAL readers never wait for a commit (and its
            # fsyncs) in progress on the writer, so validation overlaps the group commit
            self._reader = sqlite3.connect(
                self.root / "index.sqlite3", check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise DeskcorderError(f"{self.root}: cannot open the index: {exc}") from exc
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        # read on the event loop: never wait there for a lock held across a commit
        self._devices: dict[str, str] = {}  # token digest -> device
        self._owners: dict[str, str] = {}  # session -> device
        self._folders: dict[str, str] = {}  # session -> its chunk folder (known to exist)
        self.ingest = Ingest(self, validators)

    def close(self) -> None:
        self.ingest.close()
        with self._lock:
            self._db.close()
        with self._read_lock:
            self._reader.close()

    # -- tokens ----------------------------------------------------------------------
    def enroll(self, device: str) -> str:
        """A new token for ``device`` (replaces any previous one, revoked or not)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._devices = {k: v for k, v in self._devices.items() if v != device}
            self._db.execute(
                "INSERT INTO devices(device, token_sha256, enrolled, revoked) VALUES (?,?,?,0) "
                "ON CONFLICT(device) DO UPDATE SET token_sha256=excluded.token_sha256, "
                "enrolled=excluded.enrolled, revoked=0",
                (device, token_digest(token), time.time()),
            )
        return token

    def device_for_token(self, token: str) -> str | None:
        digest = token_digest(token)
        cached = self._devices.get(digest)
        if cached is not None:
            return cached
        with self._read_lock:  # the reader: never waits for a commit in progress
            row = self._reader.execute(
                "SELECT device FROM devices WHERE token_sha256=? AND revoked=0", (digest,)
            ).fetchone()
        if row is None:
            return None
        if len(self._devices) > CACHE_MAX:
            self._devices.clear()
        self._devices[digest] = str(row[0])
        return str(row[0])

    def revoke(self, device: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE devices SET revoked=1 WHERE device=?", (device,))
            self._devices = {k: v for k, v in self._devices.items() if v != device}
        return cur.rowcount > 0

    # -- receiving bodies --------------------------------------------------------------
    def new_body(self) -> SpooledBody:
        return SpooledBody(self.tmp_dir)

    @staticmethod
    def _spooled(body: Body) -> SpooledBody:
        """A body this store made (``new_body``): the only kind it is handed back."""
        assert isinstance(body, SpooledBody), "a body from another store"
        return body

    def _place(self, body: Body, final: Path) -> None:
        """temp + fsync + rename + fsync(dir): ``final`` exists only complete and durable."""
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self._spooled(body).durable_file()
        os.replace(tmp, final)
        fsync_dir(final.parent)

    def chunk_path(self, session: str, seq: int) -> Path:
        return self.chunks_dir / session / chunk_name(seq)

    def blob_path(self, sha: str) -> Path:
        return self.blobs_dir / sha[:2] / sha

    def session_owner(self, session: str) -> str | None:
        cached = self._owners.get(session)
        if cached is not None:
            return cached
        with self._read_lock:  # the reader: never waits for a commit in progress
            row = self._reader.execute(
                "SELECT device FROM sessions WHERE session=?", (session,)
            ).fetchone()
        if row is None:
            return None
        if len(self._owners) > CACHE_MAX:
            self._owners.clear()
        self._owners[session] = str(row[0])
        return str(row[0])

    def chunk_digest(self, session: str, seq: int) -> str | None:
        """The digest of a committed chunk (read without waiting for a commit in progress)."""
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT sha256 FROM chunks WHERE session=? AND seq=?", (session, seq)
            ).fetchall()
        return str(rows[0][0]) if rows else None

    def put_chunk_claimed(
        self, device: str, session: str, seq: int, claimed: str, body: Body
    ) -> PutResult:
        """Store a chunk whose body should have the ``claimed`` sha256 (blocking).

        The HTTP route uses ``self.ingest.put_async``; both go through the
        same pipeline (``ingest.py``), which owns ``body`` from here on.
        """
        return self.ingest.put(device, session, seq, claimed, body)

    def prepare_chunk(self, job: Job) -> bool:
        """Validator thread: check ``job``'s body and write its temp file; True if answered.

        Digest check, duplicate check, bounded validation, then the body is
        written to its temp file. The fsyncs, the rename into place and the
        index row are the committer's (``commit_chunks``); until then the
        chunk is not acknowledged, and a crash leaves at most a file that the
        device's retry writes again.
        """
        body = self._spooled(job.body)
        sha = body.sha256()
        if sha != job.claimed:
            raise Rejected(400, f"body sha256 {sha} does not match the header")
        job.sha = sha
        owner = self.session_owner(job.session)
        if owner is not None and owner != job.device:
            raise Rejected(403, f"session {job.session} belongs to another device")
        existing = self.chunk_digest(job.session, job.seq)
        if existing is not None:
            outcome = self._duplicate(job, existing)
            if isinstance(outcome, Rejected):
                raise outcome
            job.result = outcome
            return True
        try:
            info = validate_chunk(
                body.source(),
                max_output=self.limits.max_decompressed_bytes,
                max_line=self.limits.max_line_bytes,
            )
        except FormatError as exc:
            raise Rejected(422, f"not a valid chunk: {exc}") from exc
        self._check_header(info, job.device, job.session, job.seq)
        job.records = info.records
        job.user = str(info.header.get("user") or "")
        job.blobs = tuple(info.blobs)
        job.folder = self._session_folder(job.session)
        body.write_temp()  # the committer fsyncs it, renames it into place, fsyncs the folder
        return False

    def _session_folder(self, session: str) -> str:
        """``chunks/<session>`` as a string, created once (and remembered)."""
        folder = self._folders.get(session)
        if folder is None:
            folder = os.path.join(self.chunks_dir, session)
            os.makedirs(folder, mode=0o700, exist_ok=True)
            if len(self._folders) > CACHE_MAX:
                self._folders.clear()
            self._folders[session] = folder
        return folder

    def commit_chunks(self, batch: list[Job]) -> None:
        """Committer thread: make a batch of validated chunks durable and index them.

        temp files fsynced, renamed into place, their folders fsynced, then
        every row in one transaction (one WAL fsync). One thread doing this
        for many PUTs costs far fewer GIL hand-offs and journal commits than
        each PUT doing it alone. Sets each job's result (or its 409 when the
        same chunk was committed in between, which ``Ingest`` normally
        prevents); raises on an I/O or index error, which answers the batch.
        """
        for job in batch:
            self._spooled(job.body).sync()
        now = time.time()
        outcomes: list[tuple[Job, PutResult | Rejected]] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # a few multi-row statements per batch, not a few per chunk: every
                # statement hands the GIL over twice, and the validators want it
                stored = self._stored_digests([(job.session, job.seq) for job in batch])
                placed: list[Job] = []
                for job in batch:
                    if (job.session, job.seq) in stored:
                        outcomes.append((job, self._duplicate(job, stored[job.session, job.seq])))
                        continue
                    final = os.path.join(job.folder, chunk_name(job.seq))
                    os.replace(self._spooled(job.body).take(), final)
                    placed.append(job)
                for folder in {job.folder for job in placed}:
                    fsync_dir(folder)
                self._insert_rows(
                    "INSERT OR IGNORE INTO sessions(session, device, user, first_seen)",
                    [(job.session, job.device, job.user, now) for job in placed],
                )
                self._insert_rows(
                    "INSERT INTO chunks(session, seq, sha256, bytes, records, received)",
                    [
                        (job.session, job.seq, job.sha, job.body.size, job.records, now)
                        for job in placed
                    ],
                )
                self._insert_rows(
                    "INSERT OR IGNORE INTO chunk_blobs(session, seq, sha256)",
                    [(job.session, job.seq, sha) for job in placed for sha in job.blobs],
                )
                outcomes += [(job, PutResult(job.sha, created=True)) for job in placed]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        for job, outcome in outcomes:
            if isinstance(outcome, PutResult):
                job.result = outcome
            else:
                job.error = outcome

    _ROWS_PER_STATEMENT = 200  # well under SQLite's limit of bound variables

    def _stored_digests(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """Digests of the chunks among ``keys`` already indexed (``self._lock`` held)."""
        out: dict[tuple[str, int], str] = {}
        step = self._ROWS_PER_STATEMENT
        for i in range(0, len(keys), step):
            part = keys[i : i + step]
            values = ",".join(["(?,?)"] * len(part))
            # The keys drive the join, so each is one primary-key search: a
            # row-value ``IN (VALUES ...)`` made SQLite scan the whole table.
            rows = self._db.execute(
                f"SELECT c.session, c.seq, c.sha256 FROM (VALUES {values}) AS k "
                "CROSS JOIN chunks AS c ON c.session = k.column1 AND c.seq = k.column2",
                [v for key in part for v in key],  # placeholders only
            ).fetchall()
            out.update(((str(r[0]), int(r[1])), str(r[2])) for r in rows)
        return out

    def _insert_rows(self, head: str, rows: list[tuple[Any, ...]]) -> None:
        """``head VALUES (...),(...)``: many rows per statement (``self._lock`` held)."""
        step = self._ROWS_PER_STATEMENT
        for i in range(0, len(rows), step):
            part = rows[i : i + step]
            one = "(" + ",".join("?" * len(part[0])) + ")"
            self._db.execute(
                f"{head} VALUES {','.join([one] * len(part))}",
                [v for row in part for v in row],
            )

    @staticmethod
    def _duplicate(job: Job, stored: str) -> PutResult | Rejected:
        """The answer to a PUT of a chunk already indexed with digest ``stored``."""
        if stored == job.sha:
            return PutResult(job.sha, created=False)
        return Rejected(
            409, f"chunk {job.session}/{job.seq:06d} already stored with another digest"
        )

    def _check_header(self, info: ChunkInfo, device: str, session: str, seq: int) -> None:
        header = info.header
        if header.get("session") != session:
            raise Rejected(422, f"chunk header names session {header.get('session')!r}")
        if header.get("seq") != seq:
            raise Rejected(422, f"chunk header names seq {header.get('seq')!r}")
        if header.get("device") != device:
            raise Rejected(403, "chunk header names another device than the token's")
        user = header.get("user")
        if not isinstance(user, str) or not valid_user(user):
            raise Rejected(422, "chunk header has no valid user pseudonym")

    def has_blob(self, device: str, sha: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM blobs WHERE sha256=? AND device=?", (sha, device)
            ).fetchone()
        return row is not None and self.blob_path(sha).exists()

    def put_blob(self, device: str, sha: str, body: Body) -> PutResult:
        size = body.size
        final = self.blob_path(sha)
        if not final.exists():
            self._place(body, final)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO blobs(sha256, device, bytes, received) VALUES (?,?,?,?)",
                (sha, device, size, time.time()),
            )
        return PutResult(sha, created=cur.rowcount > 0)

    # -- consent receipts ------------------------------------------------------------
    def add_receipt(self, device: str, user: str, body: dict[str, Any]) -> tuple[int, bool]:
        """Store a receipt; the same receipt again from the same device is not duplicated."""
        text = json.dumps(body, sort_keys=True)
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM receipts WHERE device=? AND body=?", (device, text)
            ).fetchone()
            if row is not None:
                return int(row[0]), False
            cur = self._db.execute(
                "INSERT INTO receipts(device, user, body, received) VALUES (?,?,?,?)",
                (device, user, text, time.time()),
            )
        return int(cur.lastrowid or 0), True

    # -- admin -------------------------------------------------------------------------
    def sessions(self, user: str | None = None) -> list[dict[str, Any]]:
        query = (
            "SELECT s.session, s.device, s.user, s.first_seen, COUNT(c.seq), "
            "COALESCE(SUM(c.bytes),0), COALESCE(SUM(c.records),0), MAX(c.received) "
            "FROM sessions s LEFT JOIN chunks c ON c.session = s.session "
        )
        args: tuple[Any, ...] = ()
        if user is not None:
            query += "WHERE s.user=? "
            args = (user,)
        query += "GROUP BY s.session ORDER BY s.session"
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [
            {
                "session": r[0],
                "device": r[1],
                "user": r[2],
                "first_seen": r[3],
                "chunks": r[4],
                "bytes": r[5],
                "records": r[6],
                "last_received": r[7],
            }
            for r in rows
        ]

    def session(self, session: str) -> dict[str, Any] | None:
        rows = [s for s in self.sessions() if s["session"] == session]
        if not rows:
            return None
        with self._lock:
            chunks = self._db.execute(
                "SELECT seq, sha256, bytes, records, received FROM chunks WHERE session=? "
                "ORDER BY seq",
                (session,),
            ).fetchall()
        out = rows[0]
        out["chunk_list"] = [
            {"seq": c[0], "sha256": c[1], "bytes": c[2], "records": c[3], "received": c[4]}
            for c in chunks
        ]
        return out

    def receipts(self, user: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, device, body, received FROM receipts WHERE user=? ORDER BY id",
                (user,),
            ).fetchall()
        return [
            {"id": r[0], "device": r[1], "receipt": json.loads(r[2]), "received": r[3]}
            for r in rows
        ]

    def export_user(self, user: str) -> Iterator[bytes]:
        """JSON Lines: one line per session, receipt and record of ``user``."""
        for receipt in self.receipts(user):
            yield (json.dumps({"receipt": receipt}) + "\n").encode()
        for info in self.sessions(user):
            yield (json.dumps({"session": info}) + "\n").encode()
            detail = self.session(info["session"]) or {"chunk_list": []}
            for chunk in detail["chunk_list"]:
                path = self.chunk_path(info["session"], chunk["seq"])
                with open(path, "rb") as fh:
                    for line in iter_lines(fh, max_output=self.limits.max_decompressed_bytes):
                        yield line + b"\n"

    def erase_user(self, user: str) -> dict[str, int]:
        """Delete every session, chunk, blob reference and receipt of ``user``."""
        sessions = [s["session"] for s in self.sessions(user)]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            chunks = 0
            blob_shas: set[str] = set()
            for session in sessions:
                chunks += self._db.execute(
                    "SELECT COUNT(*) FROM chunks WHERE session=?", (session,)
                ).fetchone()[0]
                blob_shas.update(
                    r[0]
                    for r in self._db.execute(
                        "SELECT sha256 FROM chunk_blobs WHERE session=?", (session,)
                    )
                )
                for table in ("chunks", "chunk_blobs", "sessions"):
                    self._db.execute(f"DELETE FROM {table} WHERE session=?", (session,))
            for session in sessions:
                self._owners.pop(session, None)
                self._folders.pop(session, None)
            receipts = self._db.execute("DELETE FROM receipts WHERE user=?", (user,)).rowcount
            orphans = [
                sha
                for sha in blob_shas
                if self._db.execute(
                    "SELECT 1 FROM chunk_blobs WHERE sha256=? LIMIT 1", (sha,)
                ).fetchone()
                is None
            ]
            for sha in orphans:
                self._db.execute("DELETE FROM blobs WHERE sha256=?", (sha,))
            self._db.execute("COMMIT")
        for session in sessions:
            folder = self.chunks_dir / session
            for path in folder.glob("*"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        for sha in orphans:
            self.blob_path(sha).unlink(missing_ok=True)
        return {
            "sessions": len(sessions),
            "chunks": chunks,
            "blobs": len(orphans),
            "receipts": receipts,
        }

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("devices", "sessions", "chunks", "blobs", "receipts")
            }
