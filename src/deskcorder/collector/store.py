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

import base64
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

from .base import (
    REVOKED,
    Body,
    DeviceAuth,
    Enrollment,
    Job,
    Limits,
    PutResult,
    Rejected,
    revoked_error,
)
from .ingest import Ingest
from .validate import ChunkInfo, validate_chunk

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


CACHE_MAX = 100_000
TOKEN_CACHE_S = 60.0  # the chunk PUT's token cache (revocation is checked at commit too)
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


DEVICE_COLUMNS = (
    "device, public_key, mode, user, machine, person, agent, enrolled, last_auth, revoked, released"
)


def _device_row(r: tuple[Any, ...]) -> dict[str, Any]:
    keys = [k.strip() for k in DEVICE_COLUMNS.split(",")]
    return dict(zip(keys, r, strict=True))


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
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(devices)")}
            if "token_sha256" in columns:
                self._db.execute(LEGACY_DEVICES)
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
        self._tokens: dict[str, tuple[DeviceAuth, float]] = {}  # digest -> (auth, until)
        self._owners: dict[str, str] = {}  # session -> device
        self._folders: dict[str, str] = {}  # session -> its chunk folder (known to exist)
        self.ingest = Ingest(self, validators)

    def close(self) -> None:
        self.ingest.close()
        with self._lock:
            self._db.close()
        with self._read_lock:
            self._reader.close()

    # -- devices, tokens, revocation -------------------------------------------------
    def challenge_key(self) -> bytes:
        """The key that signs challenges: random, made once, shared by every instance."""
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
                f"SELECT {DEVICE_COLUMNS} FROM devices WHERE device=?", (device,)
            ).fetchone()
        return _device_row(row) if row else None

    def devices(self, **where: str) -> list[dict[str, Any]]:
        """Devices, optionally only those whose ``user``/``machine``/``person`` match."""
        clauses = [f"{k}=?" for k in where if k in ("user", "machine", "person", "device")]
        query = f"SELECT {DEVICE_COLUMNS} FROM devices"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY enrolled", list(where.values())).fetchall()
        return [_device_row(r) for r in rows]

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
        """Use a verified challenge for something other than a token (an erasure)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._use_challenge(device, issued)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def enroll(self, e: Enrollment, ttl_s: float) -> str:
        """Register (or re-register) a device whose signature was verified; a new token.

        Refused while the device is revoked, and while another device enrolled
        with the same user and machine pseudonyms is revoked (a wiped key
        does not undo a revocation) until an administrator readmits it.
        """
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
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
                        f"INSERT INTO devices({DEVICE_COLUMNS}) "
                        "VALUES (?,?,?,?,?,?,?,?,?,NULL,NULL)",
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
                action = "enroll" if row is None else "reenroll"
                self._audit(
                    f"device:{e.device}",
                    action,
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
                token = self._new_token(e.device, ttl_s, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return token

    def issue_token(self, device: str, challenge_issued: int, ttl_s: float) -> str:
        """A new token for an enrolled device whose signature was verified."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT revoked FROM devices WHERE device=?", (device,)
                ).fetchone()
                if row is None:
                    raise Rejected(401, f"device {device} is not enrolled", "not_enrolled")
                if row[0] is not None:
                    raise revoked_error(device)
                self._use_challenge(device, challenge_issued)
                token = self._new_token(device, ttl_s, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return token

    def public_key(self, device: str) -> str | None:
        row = self.device(device)
        return None if row is None else str(row["public_key"])

    def auth(self, token: str, *, cached: bool = False) -> DeviceAuth | None:
        """The device a token stands for (None: unknown, expired or revoked).

        ``cached`` (the chunk PUT, on the event loop) may answer from memory for
        up to a minute: a revocation made on another collector instance is
        still caught there, because the commit of every chunk batch checks
        the device in the index, in the transaction that stores it.
        """
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
        """Revoke ``device``: its tokens go at once, and it cannot enroll or get a token."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "UPDATE devices SET revoked=?, released=NULL WHERE device=?", (now, device)
                )
                found = cur.rowcount > 0
                if found:
                    self._db.execute("DELETE FROM tokens WHERE device=?", (device,))
                    self._audit(actor, "revoke", device, {}, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._tokens = {k: v for k, v in self._tokens.items() if v[0].device != device}
        return found

    def readmit(self, device: str, actor: str, *, new_key: bool = False) -> bool:
        """Lift a revocation. ``new_key``: keep this key revoked, but let the same user on
        the same machine enroll with a new key (the old key was lost or stolen)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
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
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return found

    # -- audit log and admin tokens ---------------------------------------------------
    def _audit(
        self, actor: str, action: str, target: str, detail: dict[str, Any], now: float
    ) -> None:
        """Append to the audit log (``self._lock`` held; in the caller's transaction)."""
        self._db.execute(
            "INSERT INTO audit(at, actor, action, target, detail) VALUES (?,?,?,?,?)",
            (now, actor, action, target, json.dumps(detail, sort_keys=True)),
        )

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        with self._lock:
            self._audit(actor, action, target, detail, time.time())

    def audit_log(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, actor, action, target, detail FROM audit WHERE id>? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            {
                "id": r[0],
                "at": r[1],
                "actor": r[2],
                "action": r[3],
                "target": r[4],
                "detail": json.loads(r[5]),
            }
            for r in rows
        ]

    def admin_actor(self, token: str) -> str | None:
        """The name of a live named admin token (None: unknown or revoked)."""
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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO admin_tokens(name, token_sha256, created, created_by) "
                    "VALUES (?,?,?,?)",
                    (name, token_digest(token), now, actor),
                )
                if cur.rowcount:
                    self._audit(actor, "admin_token_create", name, {}, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return token if cur.rowcount else None

    def revoke_admin_token(self, name: str, actor: str) -> bool:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "UPDATE admin_tokens SET revoked=? WHERE name=? AND revoked IS NULL",
                    (now, name),
                )
                if cur.rowcount:
                    self._audit(actor, "admin_token_revoke", name, {}, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return cur.rowcount > 0

    def admin_tokens(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, created, created_by, revoked FROM admin_tokens ORDER BY name"
            ).fetchall()
        return [{"name": r[0], "created": r[1], "created_by": r[2], "revoked": r[3]} for r in rows]

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
        found = self.device(device) or {"user": "", "machine": ""}
        return self.ingest.put(
            device, session, seq, claimed, body, user=found["user"], machine=found["machine"]
        )

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
        self._check_header(info, job)
        job.records = info.records
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
                revoked = self._revoked({job.device for job in batch})
                placed: list[Job] = []
                for job in batch:
                    if job.device in revoked:  # revoked while this PUT was on its way
                        outcomes.append((job, revoked_error(job.device)))
                        continue
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

    def _revoked(self, devices: set[str]) -> set[str]:
        """Those of ``devices`` that are revoked (or unknown) now (``self._lock`` held)."""
        listed = sorted(devices)
        rows = self._db.execute(
            f"SELECT device FROM devices WHERE revoked IS NULL AND device IN "
            f"({','.join('?' * len(listed))})",
            listed,  # placeholders only; a batch has a few devices
        ).fetchall()
        return devices - {str(r[0]) for r in rows}

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

    @staticmethod
    def _check_header(info: ChunkInfo, job: Job) -> None:
        """The header names this session, seq and device; its pseudonyms, if any, are the
        ones the collector gave this device (it stores the chunk under those, not a claim)."""
        header = info.header
        if header.get("session") != job.session:
            raise Rejected(422, f"chunk header names session {header.get('session')!r}")
        if header.get("seq") != job.seq:
            raise Rejected(422, f"chunk header names seq {header.get('seq')!r}")
        if header.get("device") != job.device:
            raise Rejected(403, "chunk header names another device than the token's")
        for field, registered in (("user", job.user), ("machine", job.machine)):
            claimed = header.get(field)
            if claimed is not None and claimed != registered:
                raise Rejected(
                    422,
                    f"chunk header names {field} {str(claimed)[:80]!r}, but this device is "
                    f"enrolled as {registered!r}",
                    "identity_mismatch",
                )

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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._revoked({device}):
                    raise revoked_error(device)
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO blobs(sha256, device, bytes, received) VALUES (?,?,?,?)",
                    (sha, device, size, time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
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
    def sessions(
        self, user: str | None = None, *, device: str | None = None, person: str | None = None
    ) -> list[dict[str, Any]]:
        """Sessions with their chunk totals, optionally only one user's, device's or person's.

        ``user`` and ``machine`` are the pseudonyms the collector gave the
        uploading device (for sessions stored before devices had keys: the
        header's ``user``, and no machine).
        """
        query = (
            "SELECT s.session, s.device, s.user, d.machine, s.first_seen, COUNT(c.seq), "
            "COALESCE(SUM(c.bytes),0), COALESCE(SUM(c.records),0), MAX(c.received) "
            "FROM sessions s LEFT JOIN devices d ON d.device = s.device "
            "LEFT JOIN chunks c ON c.session = s.session "
        )
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("s.user", user), ("s.device", device), ("d.person", person)):
            if value is not None:
                clauses.append(f"{column}=?")
                args.append(value)
        if clauses:
            query += "WHERE " + " AND ".join(clauses) + " "
        query += "GROUP BY s.session ORDER BY s.session"
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [
            {
                "session": r[0],
                "device": r[1],
                "user": r[2],
                "machine": r[3],
                "first_seen": r[4],
                "chunks": r[5],
                "bytes": r[6],
                "records": r[7],
                "last_received": r[8],
            }
            for r in rows
        ]

    def session(self, session: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._db.execute(
                "SELECT device FROM sessions WHERE session=?", (session,)
            ).fetchone()
        if found is None:
            return None
        rows = [s for s in self.sessions(device=found[0]) if s["session"] == session]
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

    def receipts(
        self, user: str | None = None, *, devices: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Consent receipts of a user pseudonym, or of the given devices."""
        if devices is not None:
            marks = ",".join("?" * len(devices))
            where, args = f"device IN ({marks})", list(devices)
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

    def export_user(self, user: str) -> Iterator[bytes]:
        """JSON Lines: every receipt, session, record and screenshot of a user pseudonym."""
        return self._export(self.receipts(user), self.sessions(user))

    def export_person(self, person: str) -> Iterator[bytes]:
        """JSON Lines: the same for every device of a person (every machine they used)."""
        devices = [d["device"] for d in self.devices(person=person)]
        return self._export(self.receipts(devices=devices), self.sessions(person=person))

    def _export(
        self, receipts: list[dict[str, Any]], sessions: list[dict[str, Any]]
    ) -> Iterator[bytes]:
        """Receipts, then per session a summary and its chunks' lines, then the screenshots
        those chunks reference (``{"blob": {"sha256", "bytes", "base64"}}``, one a line)."""
        for receipt in receipts:
            yield (json.dumps({"receipt": receipt}) + "\n").encode()
        shas: set[str] = set()
        for info in sessions:
            yield (json.dumps({"session": info}) + "\n").encode()
            detail = self.session(info["session"]) or {"chunk_list": []}
            for chunk in detail["chunk_list"]:
                path = self.chunk_path(info["session"], chunk["seq"])
                with open(path, "rb") as fh:
                    for line in iter_lines(fh, max_output=self.limits.max_decompressed_bytes):
                        yield line + b"\n"
            with self._lock:
                shas.update(
                    str(r[0])
                    for r in self._db.execute(
                        "SELECT sha256 FROM chunk_blobs WHERE session=?", (info["session"],)
                    )
                )
        for sha in sorted(shas):
            try:
                data = self.blob_path(sha).read_bytes()
            except FileNotFoundError:
                continue  # referenced but never uploaded (the agent counts it as missing)
            blob = {"sha256": sha, "bytes": len(data), "base64": base64.b64encode(data).decode()}
            yield (json.dumps({"blob": blob}) + "\n").encode()

    def erase_user(self, user: str, actor: str = "admin") -> dict[str, int]:
        """Delete every session, chunk, blob reference and receipt of a user pseudonym."""
        sessions = [s["session"] for s in self.sessions(user)]
        return self._erase(sessions, ("user=?", [user]), actor, "erase_user", user)

    def erase_person(self, person: str, actor: str) -> dict[str, int]:
        """The same for every device of a person."""
        devices = [d["device"] for d in self.devices(person=person)]
        sessions = [s["session"] for s in self.sessions(person=person)]
        where = (f"device IN ({','.join('?' * len(devices))})", list(devices))
        return self._erase(sessions, where, actor, "erase_person", person)

    def erase_device_data(self, device: str) -> dict[str, int]:
        """A device's own erasure request (its user withdrew consent): every session it
        uploaded. Its consent receipts stay: they record the consent and its withdrawal.
        Only this device's data: a device cannot erase what another device uploaded,
        even one claiming the same user (docs/security.md)."""
        sessions = [s["session"] for s in self.sessions(device=device)]
        return self._erase(sessions, None, f"device:{device}", "erase_device_data", device)

    def _erase(
        self,
        sessions: list[str],
        receipts_where: tuple[str, list[Any]] | None,
        actor: str,
        action: str,
        target: str,
    ) -> dict[str, int]:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
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
                receipts = 0
                if receipts_where is not None:
                    receipts = self._db.execute(
                        f"DELETE FROM receipts WHERE {receipts_where[0]}", receipts_where[1]
                    ).rowcount
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
                counts = {
                    "sessions": len(sessions),
                    "chunks": chunks,
                    "blobs": len(orphans),
                    "receipts": receipts,
                }
                self._audit(actor, action, target, counts, now)  # the erasure record
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for session in sessions:
                self._owners.pop(session, None)
                self._folders.pop(session, None)
        for session in sessions:
            folder = self.chunks_dir / session
            for path in folder.glob("*"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
        for sha in orphans:
            self.blob_path(sha).unlink(missing_ok=True)
        return counts

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("devices", "sessions", "chunks", "blobs", "receipts", "audit")
            }
