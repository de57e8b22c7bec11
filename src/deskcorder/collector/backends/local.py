"""The local backend: files on local disk plus a SQLite index (the default, zero set-up).

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
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from deskcorder.errors import DeskcorderError
from deskcorder.storage.chunk import chunk_name, fsync_dir

from ..base import (
    REVOKED,
    Body,
    DeviceAuth,
    Enrollment,
    Job,
    Limits,
    Rejected,
    revoked_error,
)
from ..body import SpooledBody
from ..store import Erasure, Store, StoreReader, token_digest

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
  device TEXT PRIMARY KEY, public_key TEXT NOT NULL, mode TEXT NOT NULL,
  user TEXT NOT NULL, machine TEXT NOT NULL, person TEXT NOT NULL DEFAULT '',
  agent TEXT NOT NULL DEFAULT '', enrolled REAL NOT NULL, last_auth INTEGER NOT NULL DEFAULT 0,
  revoked REAL, released REAL);
CREATE INDEX IF NOT EXISTS devices_user ON devices(user, machine);
CREATE INDEX IF NOT EXISTS devices_person ON devices(person);
CREATE TABLE IF NOT EXISTS tokens (
  token_sha256 TEXT PRIMARY KEY, device TEXT NOT NULL, issued REAL NOT NULL,
  expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_device ON tokens(device);
CREATE TABLE IF NOT EXISTS admin_tokens (
  name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL,
  created_by TEXT NOT NULL, revoked REAL);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  session TEXT PRIMARY KEY, device TEXT NOT NULL, user TEXT NOT NULL, first_seen REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE INDEX IF NOT EXISTS sessions_device ON sessions(device);
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
# The first schema's devices table (a shared-secret token per device, no key) is kept
# as devices_v1 for the record: those devices enroll again with a key (docs/security.md).
LEGACY_DEVICES = "ALTER TABLE devices RENAME TO devices_v1"

# the device inventory's columns (issue 14), added to an index made before them
INVENTORY_COLUMNS = {
    "last_seen": "REAL",
    "backlog_chunks": "INTEGER",
    "backlog_bytes": "INTEGER",
}

DEVICE_COLUMNS = (
    "device, public_key, mode, user, machine, person, agent, enrolled, last_auth, revoked, released"
)
INVENTORY_SELECT = (
    "d.device, d.public_key, d.mode, d.user, d.machine, d.person, d.agent, d.enrolled, "
    "d.last_auth, d.revoked, d.released, d.last_seen, d.backlog_chunks, d.backlog_bytes, "
    "(SELECT COUNT(*) FROM sessions s WHERE s.device = d.device)"
)
TOKEN_CACHE_S = 60.0  # the chunk PUT's token cache (revocation is checked at commit too)

CACHE_MAX = 100_000


def open_local(root: Path, limits: Limits | None = None, *, validators: int = 3) -> Store:
    """The local backend's store on the data folder ``root`` (created, mode 0700)."""
    objects = LocalObjects(Path(root))
    try:
        index = LocalIndex(Path(root) / "index.sqlite3")
    except BaseException:
        objects.close()
        raise
    return Store(index, objects, limits, validators=validators)


def open_local_reader(root: Path) -> StoreReader:
    """The local backend's data folder opened to read only (``dataset build --from DIR``).

    The index through a read-only SQLite connection (``mode=ro``), the files
    where they are: nothing is created, nothing deleted (``tmp/`` holds the
    bodies of requests a running collector is receiving), no threads started.
    """
    root = Path(root)
    path = root / "index.sqlite3"
    if not path.is_file():
        raise DeskcorderError(f"{root}: not a collector data folder (no index.sqlite3)")
    try:
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise DeskcorderError(f"{path}: cannot open the index: {exc}") from exc
    try:
        index = LocalReadIndex(db)
    except sqlite3.Error as exc:
        db.close()
        raise DeskcorderError(f"{path}: cannot read the index: {exc}") from exc
    return StoreReader(index, LocalFiles(root), "local", str(root))


class LocalFiles:
    """Chunks and blobs as files under the data folder, to read (no folder made)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.chunks_dir = root / "chunks"
        self.blobs_dir = root / "blobs"

    def chunk_path(self, session: str, seq: int) -> Path:
        return self.chunks_dir / session / chunk_name(seq)

    def blob_path(self, sha: str) -> Path:
        return self.blobs_dir / sha[:2] / sha

    def open_chunk(self, session: str, seq: int, sha: str) -> IO[bytes]:
        return open(self.chunk_path(session, seq), "rb")

    def has_blob(self, sha: str) -> bool:
        return self.blob_path(sha).exists()

    def read_blob(self, sha: str) -> bytes | None:
        try:
            return self.blob_path(sha).read_bytes()
        except FileNotFoundError:
            return None

    def blob_file(self, sha: str) -> Path | None:
        path = self.blob_path(sha)
        return path if path.is_file() else None

    def close(self) -> None:
        pass


class LocalObjects(LocalFiles):
    """Chunks and blobs as files under the data folder (``Objects``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.tmp_dir = root / "tmp"
        for path in (self.root, self.chunks_dir, self.blobs_dir, self.tmp_dir):
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise DeskcorderError(f"{path}: cannot create folder: {exc.strerror}") from exc
        for stale in self.tmp_dir.iterdir():  # bodies of requests cut by a crash
            with contextlib.suppress(OSError):
                stale.unlink()
        self._folders: dict[str, str] = {}  # session -> its chunk folder (known to exist)

    def describe(self) -> str:
        return f"data in {self.root}"

    def ping(self) -> None:
        """The data folder still accepts a file (not gone, not read-only)."""
        probe = self.tmp_dir / f".ready-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()

    def new_body(self) -> SpooledBody:
        return SpooledBody(self.tmp_dir)

    @staticmethod
    def _spooled(body: Body) -> SpooledBody:
        """A body this backend made (``new_body``): the only kind it is handed back."""
        assert isinstance(body, SpooledBody), "a body from another store"
        return body

    def _place(self, body: Body, final: Path) -> None:
        """temp + fsync + rename + fsync(dir): ``final`` exists only complete and durable."""
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self._spooled(body).durable_file()
        os.replace(tmp, final)
        fsync_dir(final.parent)

    # -- chunks: staged by the validators, placed by the committer ----------------------
    def stage_chunk(self, job: Job) -> None:
        """The body in its temp file; the committer fsyncs it, renames it, fsyncs the folder."""
        job.folder = self._session_folder(job.session)
        self._spooled(job.body).write_temp()

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

    def settle(self, batch: list[Job]) -> None:
        for job in batch:
            self._spooled(job.body).sync()

    def place_chunks(self, jobs: list[Job]) -> None:
        """Rename each fsynced temp file into place, then fsync each folder once."""
        for job in jobs:
            final = os.path.join(job.folder, chunk_name(job.seq))
            os.replace(self._spooled(job.body).take(), final)
        for folder in {job.folder for job in jobs}:
            fsync_dir(folder)

    def drop_staged(self, jobs: list[Job]) -> None:
        """Nothing: a refused body's temp file is discarded with the body."""

    # -- blobs -------------------------------------------------------------------------
    def put_blob(self, sha: str, body: Body) -> None:
        self._place(body, self.blob_path(sha))

    def remove(self, erasure: Erasure) -> None:
        for session in erasure.sessions:
            self._folders.pop(session, None)
            folder = self.chunks_dir / session
            for path in folder.glob("*"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        for sha in erasure.blobs:
            self.blob_path(sha).unlink(missing_ok=True)


class LocalIndex:
    """The index in one SQLite file (``Index``): WAL, synchronous FULL.

    One writer connection (``_db``, under ``_lock``) and one reader
    (``_reader``): WAL readers never wait for a commit (and its fsyncs) in
    progress on the writer, so validation overlaps the group commit. Tokens
    and session owners are cached in memory: this process is the only
    writer, so it updates the caches itself when it revokes or erases.
    """

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    blocking_lookups = False

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(devices)")}
            if "token_sha256" in columns:
                self._db.execute(LEGACY_DEVICES)
            self._db.executescript(SCHEMA)
            have = {str(r[1]) for r in self._db.execute("PRAGMA table_info(devices)")}
            for column, kind in INVENTORY_COLUMNS.items():
                if column not in have:
                    self._db.execute(f"ALTER TABLE devices ADD COLUMN {column} {kind}")
            self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise DeskcorderError(f"{path.parent}: cannot open the index: {exc}") from exc
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        # read on the event loop: never wait there for a lock held across a commit
        self._tokens: dict[str, tuple[DeviceAuth, float]] = {}  # digest -> (auth, until)
        self._owners: dict[str, str] = {}  # session -> device

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._read_lock:
            self._reader.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction (``self._lock`` held)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- devices, tokens, revocation -------------------------------------------------
    def challenge_key(self) -> bytes:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('challenge_key', ?)",
                (secrets.token_hex(32),),
            )
            row = self._db.execute("SELECT value FROM meta WHERE key='challenge_key'").fetchone()
        return bytes.fromhex(str(row[0]))

    def device(self, device: str) -> dict[str, Any] | None:
        with self._read_lock:
            row = self._reader.execute(
                f"SELECT {INVENTORY_SELECT} FROM devices d WHERE d.device=?", (device,)
            ).fetchone()
        return device_row(row) if row else None

    def devices(self, **where: str) -> list[dict[str, Any]]:
        clauses = [f"d.{k}=?" for k in where if k in ("user", "machine", "person", "device")]
        query = f"SELECT {INVENTORY_SELECT} FROM devices d"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY d.enrolled", list(where.values())).fetchall()
        return [device_row(r) for r in rows]

    def _new_token(self, device: str, ttl_s: float, now: float) -> str:
        """Insert a new token for ``device`` (``self._lock`` held, in a transaction)."""
        token = secrets.token_urlsafe(32)
        self._db.execute("DELETE FROM tokens WHERE device=? AND expires<?", (device, now))
        self._db.execute(
            "INSERT INTO tokens(token_sha256, device, issued, expires) VALUES (?,?,?,?)",
            (token_digest(token), device, now, now + ttl_s),
        )
        return token

    def _use_challenge(self, device: str, issued: int) -> None:
        """Record the challenge as used; refuse one not newer than the last (``_lock`` held)."""
        cur = self._db.execute(
            "UPDATE devices SET last_auth=? WHERE device=? AND last_auth<?",
            (issued, device, issued),
        )
        if cur.rowcount != 1:
            raise Rejected(401, "challenge already used; ask for a new one", "challenge_used")

    def consume_challenge(self, device: str, issued: int) -> None:
        with self._write():
            self._use_challenge(device, issued)

    def enroll(self, e: Enrollment, ttl_s: float) -> str:
        """Refused while the device is revoked, and while another device enrolled with the
        same user and machine pseudonyms is revoked (a wiped key does not undo a
        revocation) until an administrator readmits it."""
        now = time.time()
        with self._write():
            row = self._db.execute(
                "SELECT public_key, revoked, user, machine FROM devices WHERE device=?",
                (e.device,),
            ).fetchone()
            if row is not None and row[1] is not None:
                raise revoked_error(e.device)
            if row is not None and row[0] != e.public_key:  # a hash collision: never
                raise Rejected(403, "device id registered with another key", "key_mismatch")
            blocked = self._db.execute(
                "SELECT device FROM devices WHERE user=? AND machine=? AND device<>? "
                "AND revoked IS NOT NULL AND released IS NULL LIMIT 1",
                (e.user, e.machine, e.device),
            ).fetchone()
            if blocked is not None:
                raise Rejected(
                    403,
                    f"this user on this machine was revoked (device {blocked[0]}); "
                    "an administrator must readmit it",
                    REVOKED,
                )
            if row is None:
                self._db.execute(
                    f"INSERT INTO devices({DEVICE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,NULL,NULL)",
                    (
                        e.device, e.public_key, e.mode, e.user, e.machine, e.person,
                        e.agent, now, e.challenge_issued,
                    ),
                )  # fmt: skip
            else:
                self._use_challenge(e.device, e.challenge_issued)
                self._db.execute(
                    "UPDATE devices SET mode=?, user=?, machine=?, person=?, agent=? "
                    "WHERE device=?",
                    (e.mode, e.user, e.machine, e.person, e.agent, e.device),
                )
            changed = row is not None and (row[2], row[3]) != (e.user, e.machine)
            self._audit(
                f"device:{e.device}",
                "enroll" if row is None else "reenroll",
                e.device,
                {"mode": e.mode, "user": e.user, "machine": e.machine, "changed": changed},
                now,
            )
            shared = self._db.execute(
                "SELECT COUNT(*) FROM devices WHERE user=? AND machine=? AND device<>? "
                "AND revoked IS NULL",
                (e.user, e.machine, e.device),
            ).fetchone()[0]
            if row is None and shared:
                # two live devices claim one user on one machine: a reinstall that lost
                # its key, or someone claiming a colleague's login (docs/security.md)
                self._audit(
                    f"device:{e.device}",
                    "identity_shared",
                    e.device,
                    {"user": e.user, "machine": e.machine, "other_devices": shared},
                    now,
                )
            return self._new_token(e.device, ttl_s, now)

    def issue_token(self, device: str, challenge_issued: int, ttl_s: float) -> str:
        now = time.time()
        with self._write():
            row = self._db.execute(
                "SELECT revoked FROM devices WHERE device=?", (device,)
            ).fetchone()
            if row is None:
                raise Rejected(401, f"device {device} is not enrolled", "not_enrolled")
            if row[0] is not None:
                raise revoked_error(device)
            self._use_challenge(device, challenge_issued)
            return self._new_token(device, ttl_s, now)

    def auth(self, token: str, *, cached: bool = False) -> DeviceAuth | None:
        """``cached`` (the chunk PUT, on the event loop) may answer from memory for up to a
        minute: a revocation is still caught there, because the commit of every chunk
        batch checks the device in the index, in the transaction that stores it."""
        digest = token_digest(token)
        now = time.time()
        if cached:
            hit = self._tokens.get(digest)
            if hit is not None and hit[1] > now and hit[0].expires > now:
                return hit[0]
        with self._read_lock:  # the reader: never waits for a commit in progress
            row = self._reader.execute(
                "SELECT t.device, d.user, d.machine, t.expires FROM tokens t "
                "JOIN devices d ON d.device = t.device "
                "WHERE t.token_sha256=? AND t.expires>? AND d.revoked IS NULL",
                (digest, now),
            ).fetchone()
        if row is None:
            self._tokens.pop(digest, None)
            return None
        found = DeviceAuth(str(row[0]), str(row[1]), str(row[2]), float(row[3]))
        if len(self._tokens) > CACHE_MAX:
            self._tokens.clear()
        self._tokens[digest] = (found, now + TOKEN_CACHE_S)
        return found

    def revoke(self, device: str, actor: str) -> bool:
        """Its tokens go at once, and it cannot enroll or get a token."""
        now = time.time()
        with self._write():
            cur = self._db.execute(
                "UPDATE devices SET revoked=?, released=NULL WHERE device=?", (now, device)
            )
            found = cur.rowcount > 0
            if found:
                self._db.execute("DELETE FROM tokens WHERE device=?", (device,))
                self._audit(actor, "revoke", device, {}, now)
        self._tokens = {k: v for k, v in self._tokens.items() if v[0].device != device}
        return found

    def readmit(self, device: str, actor: str, *, new_key: bool = False) -> bool:
        """``new_key``: keep this key revoked, but let the same user on the same machine
        enroll with a new key (the old key was lost or stolen)."""
        now = time.time()
        with self._write():
            if new_key:
                cur = self._db.execute(
                    "UPDATE devices SET released=? WHERE device=? AND revoked IS NOT NULL",
                    (now, device),
                )
            else:
                cur = self._db.execute(
                    "UPDATE devices SET revoked=NULL, released=NULL WHERE device=?", (device,)
                )
            found = cur.rowcount > 0
            if found:
                self._audit(actor, "readmit", device, {"new_key": new_key}, now)
        return found

    # -- audit log and admin tokens ---------------------------------------------------
    def _audit(
        self,
        actor: str,
        action: str,
        target: str,
        detail: dict[str, Any],
        now: float | None = None,
    ) -> None:
        """Append to the audit log (``self._lock`` held; in the caller's transaction)."""
        self._db.execute(
            "INSERT INTO audit(at, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (now or time.time(), actor, action, target, json.dumps(detail, sort_keys=True)),
        )

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._audit(actor, action, target, detail)

    def audit_log(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, actor, action, target, detail FROM audit WHERE id>? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [audit_row(r) for r in rows]

    def admin_actor(self, token: str) -> str | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT name FROM admin_tokens WHERE token_sha256=? AND revoked IS NULL",
                (token_digest(token),),
            ).fetchone()
        return None if row is None else f"admin:{row[0]}"

    def create_admin_token(self, name: str, actor: str) -> str | None:
        """A new named admin token (None if the name is taken, even by a revoked one)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._write():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO admin_tokens(name, token_sha256, created, created_by) "
                "VALUES (?,?,?,?)",
                (name, token_digest(token), now, actor),
            )
            if cur.rowcount:
                self._audit(actor, "admin_token_create", name, {}, now)
        return token if cur.rowcount else None

    def revoke_admin_token(self, name: str, actor: str) -> bool:
        now = time.time()
        with self._write():
            cur = self._db.execute(
                "UPDATE admin_tokens SET revoked=? WHERE name=? AND revoked IS NULL", (now, name)
            )
            if cur.rowcount:
                self._audit(actor, "admin_token_revoke", name, {}, now)
        return cur.rowcount > 0

    def admin_tokens(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, created, created_by, revoked FROM admin_tokens ORDER BY name"
            ).fetchall()
        return [{"name": r[0], "created": r[1], "created_by": r[2], "revoked": r[3]} for r in rows]

    # -- sessions and chunks -----------------------------------------------------------
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
        with self._read_lock:
            return select_chunk_digest(self._reader, session, seq)

    def chunk_state(self, job: Job) -> tuple[str | None, str | None]:
        return self.session_owner(job.session), self.chunk_digest(job.session, job.seq)

    def purging(self, sessions: list[str]) -> contextlib.nullcontext[None]:
        """Nothing to hold: a refused body's temp file is discarded with the body."""
        return contextlib.nullcontext()

    def commit_chunks(
        self, batch: list[Job], place: Callable[[list[Job]], None]
    ) -> dict[tuple[str, int], str | Rejected]:
        """One transaction (one WAL fsync): look-ups, ``place`` (renames), then every row.

        A few multi-row statements per batch, not a few per chunk: every
        statement hands the GIL over twice, and the validators want it.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored = self._stored_digests([(job.session, job.seq) for job in batch])
                revoked = self._revoked({job.device for job in batch})
                placed = []
                for job in batch:
                    if job.device in revoked:  # revoked while this PUT was on its way
                        stored[job.session, job.seq] = revoked_error(job.device)
                    elif (job.session, job.seq) not in stored:
                        placed.append(job)
                place(placed)
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
                self._db.executemany(
                    "UPDATE devices SET last_seen=?, agent=COALESCE(NULLIF(?, ''), agent), "
                    "backlog_chunks=COALESCE(?, backlog_chunks), "
                    "backlog_bytes=COALESCE(?, backlog_bytes) WHERE device=?",
                    inventory_rows(placed, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    _ROWS_PER_STATEMENT = 200  # well under SQLite's limit of bound variables

    def _revoked(self, devices: set[str]) -> set[str]:
        """Those of ``devices`` that are revoked (or unknown) now (``self._lock`` held)."""
        listed = sorted(devices)
        rows = self._db.execute(
            f"SELECT device FROM devices WHERE revoked IS NULL AND device IN "
            f"({','.join('?' * len(listed))})",
            listed,  # placeholders only; a batch has a few devices
        ).fetchall()
        return devices - {str(r[0]) for r in rows}

    def _stored_digests(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str | Rejected]:
        """Digests of the chunks among ``keys`` already indexed (``self._lock`` held)."""
        out: dict[tuple[str, int], str | Rejected] = {}
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

    # -- blobs and receipts ------------------------------------------------------------
    def has_blob(self, device: str, sha: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM blobs WHERE sha256=? AND device=?", (sha, device)
            ).fetchone()
        return row is not None

    def add_blob(self, device: str, sha: str, size: int) -> bool:
        with self._write():
            if self._revoked({device}):
                raise revoked_error(device)
            cur = self._db.execute(
                "INSERT OR IGNORE INTO blobs(sha256, device, bytes, received) VALUES (?,?,?,?)",
                (sha, device, size, time.time()),
            )
        return cur.rowcount > 0

    def add_receipt(self, device: str, user: str, text: str) -> tuple[int, bool]:
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

    def receipts(
        self, user: str | None = None, *, devices: list[str] | None = None
    ) -> list[dict[str, Any]]:
        if devices is not None:
            where, args = f"device IN ({','.join('?' * len(devices))})", list(devices)
        else:
            where, args = "user=?", [user or ""]
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, device, body, received FROM receipts WHERE {where} ORDER BY id",
                args,
            ).fetchall()
        return [
            {"id": r[0], "device": r[1], "receipt": json.loads(r[2]), "received": r[3]}
            for r in rows
        ]

    # -- admin -------------------------------------------------------------------------
    def sessions(
        self, user: str | None = None, *, device: str | None = None, person: str | None = None
    ) -> list[dict[str, Any]]:
        """``user`` and ``machine`` are the pseudonyms the collector gave the uploading
        device (for sessions stored before devices had keys: the header's ``user``, and
        no machine)."""
        with self._lock:
            return select_sessions(self._db, user, device, person)

    def chunks(self, session: str) -> list[dict[str, Any]]:
        with self._lock:
            return select_chunks(self._db, session)

    def chunk_blobs(self, session: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT sha256 FROM chunk_blobs WHERE session=?", (session,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def erase(self, erasure: Erasure, remove: Callable[[Erasure], None]) -> Erasure:
        """Rows deleted and the erasure audited in one transaction; then the files."""
        with self._write():
            self._erase_rows(erasure)
            self._audit(erasure.actor, erasure.action, erasure.target, erasure.counts())
        for session in erasure.sessions:
            self._owners.pop(session, None)
        remove(erasure)
        return erasure

    def expire(self, cutoff: float, remove: Callable[[Erasure], None]) -> Erasure:
        """Sessions whose last chunk (or, without one, whose start) is older than ``cutoff``:
        rows deleted and the deletion audited in one transaction, then the files."""
        out = Erasure("", actor="retention", action="expire", target="sessions")
        with self._lock:
            out.sessions = [
                str(r[0])
                for r in self._db.execute(
                    "SELECT s.session FROM sessions s LEFT JOIN chunks c ON c.session = s.session "
                    "GROUP BY s.session HAVING COALESCE(MAX(c.received), s.first_seen) < ? "
                    "ORDER BY s.session",
                    (cutoff,),
                )
            ]
        if not out.sessions:
            return out
        with self._write():
            self._erase_rows(out)
            self._audit("retention", "expire", "sessions", {"cutoff": cutoff, **out.counts()})
        for session in out.sessions:
            self._owners.pop(session, None)
        remove(out)
        return out

    def _erase_rows(self, out: Erasure) -> None:
        """Delete the rows of ``out.sessions`` and the receipts it selects (in a transaction)."""
        blob_shas: set[str] = set()
        for session in out.sessions:
            out.chunks += [
                (session, int(r[0]), str(r[1]))
                for r in self._db.execute(
                    "SELECT seq, sha256 FROM chunks WHERE session=?", (session,)
                )
            ]
            blob_shas.update(
                r[0]
                for r in self._db.execute(
                    "SELECT sha256 FROM chunk_blobs WHERE session=?", (session,)
                )
            )
            for table in ("chunks", "chunk_blobs", "sessions"):
                self._db.execute(f"DELETE FROM {table} WHERE session=?", (session,))
        if out.receipt_devices is not None:
            if out.receipt_devices:
                marks = ",".join("?" * len(out.receipt_devices))
                out.receipts = self._db.execute(
                    f"DELETE FROM receipts WHERE device IN ({marks})", out.receipt_devices
                ).rowcount
        elif out.user:
            out.receipts = self._db.execute(
                "DELETE FROM receipts WHERE user=?", (out.user,)
            ).rowcount
        out.blobs = sorted(
            sha
            for sha in blob_shas
            if self._db.execute(
                "SELECT 1 FROM chunk_blobs WHERE sha256=? LIMIT 1", (sha,)
            ).fetchone()
            is None
        )
        for sha in out.blobs:
            self._db.execute("DELETE FROM blobs WHERE sha256=?", (sha,))

    def gauges(self) -> dict[str, float]:
        return {}

    def ping(self) -> None:
        with self._read_lock:
            self._reader.execute("SELECT 1 FROM devices LIMIT 1").fetchall()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("devices", "sessions", "chunks", "blobs", "receipts", "audit")
            }


class LocalReadIndex:
    """The index read through a read-only connection (``ReadIndex``): sessions, chunks."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._lock = threading.Lock()
        columns = {str(r[1]) for r in db.execute("PRAGMA table_info(devices)")}
        # an index no collector with device keys has opened yet: no machine pseudonyms
        self._machine = "machine" in columns
        db.execute("SELECT session, device, user FROM sessions LIMIT 1").fetchall()
        db.execute("SELECT session, seq, sha256 FROM chunks LIMIT 1").fetchall()

    def sessions(
        self, user: str | None = None, *, device: str | None = None, person: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            return select_sessions(self._db, user, device, person, machine=self._machine)

    def chunks(self, session: str) -> list[dict[str, Any]]:
        with self._lock:
            return select_chunks(self._db, session)

    def chunk_digest(self, session: str, seq: int) -> str | None:
        with self._lock:
            return select_chunk_digest(self._db, session, seq)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def select_sessions(
    db: sqlite3.Connection,
    user: str | None,
    device: str | None,
    person: str | None,
    *,
    machine: bool = True,
) -> list[dict[str, Any]]:
    """Session rows (``session_row``), optionally one user's, device's or person's."""
    query = (
        f"SELECT s.session, s.device, s.user, {'d.machine' if machine else 'NULL'}, "
        "s.first_seen, COUNT(c.seq), COALESCE(SUM(c.bytes),0), COALESCE(SUM(c.records),0), "
        "MAX(c.received) FROM sessions s "
        + ("LEFT JOIN devices d ON d.device = s.device " if machine else "")
        + "LEFT JOIN chunks c ON c.session = s.session "
    )
    where, args = where_equal((("s.user", user), ("s.device", device), ("d.person", person)))
    query += where + "GROUP BY s.session ORDER BY s.session"
    return [session_row(r) for r in db.execute(query, args).fetchall()]


def where_equal(pairs: tuple[tuple[str, Any], ...], mark: str = "?") -> tuple[str, list[Any]]:
    """``WHERE a=? AND b=? `` for the pairs whose value is not None, and their values."""
    given = [(column, value) for column, value in pairs if value is not None]
    if not given:
        return "", []
    where = "WHERE " + " AND ".join(f"{column}={mark}" for column, _ in given) + " "
    return where, [value for _, value in given]


def select_chunks(db: sqlite3.Connection, session: str) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT seq, sha256, bytes, records, received FROM chunks WHERE session=? ORDER BY seq",
        (session,),
    ).fetchall()
    return [chunk_row(r) for r in rows]


def select_chunk_digest(db: sqlite3.Connection, session: str, seq: int) -> str | None:
    rows = db.execute(
        "SELECT sha256 FROM chunks WHERE session=? AND seq=?", (session, seq)
    ).fetchall()
    return str(rows[0][0]) if rows else None


def inventory_rows(jobs: list[Job], now: float) -> list[tuple[Any, ...]]:
    """One (last_seen, agent, backlog chunks, backlog bytes, device) per device: its last job."""
    last = {job.device: job for job in jobs}
    return [
        (now, job.agent, *(job.backlog or (None, None)), device) for device, job in last.items()
    ]


DEVICE_KEYS = (
    "device", "public_key", "mode", "user", "machine", "person", "agent", "enrolled",
    "last_auth", "revoked", "released", "last_seen",
)  # fmt: skip


def device_row(r: tuple[Any, ...] | Any) -> dict[str, Any]:
    """A device (``INVENTORY_SELECT``): its identity, then what its latest chunk said: when
    (``last_seen``), the agent version (``agent``) and what it still had to send."""
    out = dict(zip(DEVICE_KEYS, r[:12], strict=True))
    out["backlog"] = None if r[12] is None else {"chunks": r[12], "bytes": r[13]}
    out["sessions"] = r[14]
    return out


def session_row(r: tuple[Any, ...] | Any) -> dict[str, Any]:
    """A ``sessions`` answer row: session, device, user, machine, first_seen, chunk totals."""
    keys = (
        "session", "device", "user", "machine", "first_seen", "chunks", "bytes", "records",
        "last_received",
    )  # fmt: skip
    return dict(zip(keys, r, strict=True))


def audit_row(r: tuple[Any, ...] | Any) -> dict[str, Any]:
    keys = ("id", "at", "actor", "action", "target")
    return {**dict(zip(keys, r[:5], strict=True)), "detail": json.loads(r[5])}


def chunk_row(r: tuple[Any, ...] | Any) -> dict[str, Any]:
    return {"seq": r[0], "sha256": r[1], "bytes": r[2], "records": r[3], "received": r[4]}
