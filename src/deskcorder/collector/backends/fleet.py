"""The fleet backend: objects in an S3-compatible bucket, the index in PostgreSQL.

Any number of collector instances serve the same fleet from one bucket and
one database; none keeps state another needs (no cache of tokens, owners or
digests: every look-up reads PostgreSQL, so a revocation or an erasure is
seen by every instance at once).

Object keys under ``s3://BUCKET/PREFIX/``::

    chunks/<session>/<seq:06d>.<sha256>.jsonl.zst   a chunk as the agent sealed it
    blobs/<sha[:2]>/<sha256>                         a screenshot, content-addressed

A chunk's key carries its digest, so an object is written once and never
overwritten: two different bodies for one (session, seq) are two objects,
and the index row decides which one was acknowledged.

**The order of a chunk PUT** (docs/collector.md, "Idempotency and order"):

1. validator: digest, format and header checked; the session's owner, the
   digest already indexed (200 or 409 at once) and the session's purge mark
   read from PostgreSQL;
2. validator: the object written with ``If-None-Match: *`` (a 412 means the
   same bytes are already there: same key, same digest);
3. committer, one transaction per batch: a *shared* advisory lock per
   session; owners, revocations and digests checked again (another instance
   may have committed meanwhile: ``INSERT ... ON CONFLICT DO NOTHING`` and
   the row that won decide 200 or 409); for each job whose object existed
   before (2) or whose session was purged since (1), the object is checked,
   and written again if gone; then every row; COMMIT; only then the answer.

Deleting a session's objects (erasure, retention, the losing body of a 409)
holds the session's advisory lock *exclusively* and bumps its purge mark in
the same transaction. So a committer either runs before the deletion (its
rows are then deleted with the objects) or after it (it sees the new mark
and writes its object again): an acknowledged chunk always has its object.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deskcorder.errors import DeskcorderError, UsageError

from ..base import REVOKED, Body, DeviceAuth, Enrollment, Job, Limits, Rejected, revoked_error
from ..body import SpooledBody
from ..metrics import INDEX_SECONDS, OBJECT_SECONDS
from ..store import Erasure, Store, StoreReader, token_digest
from .local import INVENTORY_SELECT, device_row, inventory_rows, where_equal
from .migrations import LATEST, schema_version

if TYPE_CHECKING:
    import psycopg
    from obstore.store import ClientConfig
    from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

PURGE_LOCK_CLASS = 0x64637300  # advisory lock namespace of a session's objects ("dcs")
ENROLL_LOCK_CLASS = 0x64636501  # advisory lock namespace of a user on a machine ("dce")
RETENTION_LOCK = 0x64637201  # the advisory lock retention holds: one instance at a time


@dataclass(frozen=True)
class FleetConfig:
    """Where a fleet collector keeps its data; secrets never come from the command line."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    db: str
    db_password: str | None
    pool_size: int = 10
    tmp_dir: Path | None = None

    @staticmethod
    def parse_store(url: str, flag: str = "--store") -> tuple[str, str]:
        """``s3://BUCKET[/PREFIX]`` -> (bucket, prefix); a one-line error otherwise."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise UsageError(f"{flag} {url!r}: expected s3://BUCKET/PREFIX")
        return parts.netloc, parts.path.strip("/")

    @classmethod
    def from_args(
        cls,
        store: str,
        endpoint: str | None,
        db: str,
        *,
        region: str | None = None,
        credentials_file: Path | None = None,
        db_password_file: Path | None = None,
        environ: dict[str, str] | None = None,
        store_flag: str = "--store",
    ) -> FleetConfig:
        env = dict(os.environ if environ is None else environ)
        bucket, prefix = cls.parse_store(store, store_flag)
        if credentials_file is not None:
            env.update(_read_env_file(credentials_file))
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise UsageError(
                "S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the "
                "environment or in --s3-credentials-file"
            )
        if endpoint is not None:
            ep = urlsplit(endpoint)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise UsageError(f"--s3-endpoint {endpoint!r}: expected http(s)://HOST[:PORT]")
        dsn = urlsplit(db)
        if dsn.scheme not in ("postgresql", "postgres"):
            raise UsageError(f"--db: expected postgresql://USER@HOST:PORT/DATABASE, got {db!r}")
        if dsn.password is not None:
            raise UsageError(
                "--db: no password on the command line (every user of the machine can read it): "
                "use PGPASSWORD, a ~/.pgpass file or --db-password-file"
            )
        password = env.get("PGPASSWORD")  # libpq reads it too; here for a given ``environ``
        if db_password_file is not None:
            try:
                password = db_password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UsageError(f"{db_password_file}: cannot read: {exc.strerror}") from exc
        return cls(
            bucket=bucket,
            prefix=prefix,
            endpoint=endpoint,
            region=region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=key,
            secret_access_key=secret,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            db=db,
            db_password=password,
        )

    @classmethod
    def from_options(cls, store: str, args: Any, store_flag: str = "--store") -> FleetConfig:
        """From the fleet options on the command line (``--db``, ``--s3-endpoint`` ...)."""
        if args.db is None:
            raise UsageError(f"{store_flag} {store}: needs --db postgresql://USER@HOST:PORT/DB")
        return cls.from_args(
            store,
            args.s3_endpoint,
            args.db,
            region=args.s3_region,
            credentials_file=args.s3_credentials_file,
            db_password_file=args.db_password_file,
            store_flag=store_flag,
        )

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        db = urlsplit(self.db)
        return (
            f"objects in s3://{self.bucket}/{self.prefix}{where}, index in {db.hostname}{db.path}"
        )


def _read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments, blank lines ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the credentials: {exc.strerror}") from exc
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{path}:{n}: expected NAME=value")
        out[name.strip()] = value.strip().strip("\"'")
    return out


def open_pool(config: FleetConfig, *, min_size: int = 1) -> ConnectionPool[Any]:
    """A psycopg pool on the fleet database (autocommit connections)."""
    from psycopg_pool import ConnectionPool

    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 10}
    if config.db_password is not None:
        kwargs["password"] = config.db_password
    pool: ConnectionPool[Any] = ConnectionPool(
        config.db,
        kwargs=kwargs,
        min_size=min_size,
        max_size=max(min_size, config.pool_size),
        timeout=10,
        name="deskcorder-index",
        open=False,
    )
    try:
        pool.open(wait=True, timeout=15)
    except Exception as exc:
        pool.close()
        raise DeskcorderError(f"{_safe_dsn(config.db)}: cannot connect: {exc}") from exc
    return pool


def _safe_dsn(db: str) -> str:
    parts = urlsplit(db)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 5432}{parts.path}"


def open_parts(config: FleetConfig, min_size: int) -> tuple[ConnectionPool[Any], S3Objects]:
    """The pool and the bucket, both checked; refuses a database whose schema is not
    migrated (a newer one is fine: migrations keep the previous release working)."""
    import psycopg

    pool = open_pool(config, min_size=min_size)
    try:
        with pool.connection() as conn:
            version = schema_version(conn)
        if version < LATEST:
            raise DeskcorderError(
                f"{_safe_dsn(config.db)}: schema version {version}, this deskcorder needs "
                f"{LATEST}: run 'deskcorder collector migrate --db ...' first"
            )
        objects = S3Objects(config)
        objects.check()
    except psycopg.Error as exc:
        pool.close()
        first = str(exc).strip().splitlines()[0]
        raise DeskcorderError(f"{_safe_dsn(config.db)}: {first}") from exc
    except DeskcorderError:
        pool.close()
        raise
    return pool, objects


def open_fleet(config: FleetConfig, limits: Limits | None = None, *, validators: int = 8) -> Store:
    """The fleet backend's store; refuses a database whose schema is not migrated."""
    pool, objects = open_parts(config, min_size=2)
    # a commit is a few database round trips: let it gather the PUTs validators are
    # finishing (~3 ms at most), a group about 3x larger under load (docs/performance.md)
    return Store(
        PgIndex(pool), objects, limits, validators=validators, backend="fleet", linger_s=0.003
    )


def open_fleet_reader(config: FleetConfig) -> StoreReader:
    """The fleet backend's data opened to read only (``dataset build --from s3://...``):
    a pool of two connections, no PUT pipeline, nothing written."""
    pool, objects = open_parts(replace(config, pool_size=2), min_size=1)
    return StoreReader(PgIndex(pool), objects, "fleet", f"s3://{config.bucket}/{config.prefix}")


# -- objects -----------------------------------------------------------------------------


@dataclass
class Ticket:
    """The fleet backend's notes on one chunk PUT (``Job.ticket``)."""

    purge: int  # the session's purge mark when the validator looked (0: never purged)
    key: str = ""  # the chunk's object key, once written
    existed: bool = False  # the conditional PUT found the object already there (412)
    recheck: bool = False  # set at commit: the object must be checked (and rewritten)


def chunk_key(session: str, seq: int, sha: str) -> str:
    return f"chunks/{session}/{seq:06d}.{sha}.jsonl.zst"


def blob_key(sha: str) -> str:
    return f"blobs/{sha[:2]}/{sha}"


def brief(exc: BaseException) -> str:
    """One line for an object store error (obstore's messages are multi-line dumps)."""
    text = str(exc)
    status = re.search(r"status: (\d{3})", text)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    if status or code:
        return " ".join(
            x for x in ("HTTP " + status[1] if status else "", code[1] if code else "") if x
        )
    message = re.search(r'message: "([^"]+)"', text)
    if message:
        return message[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line for line in lines if "error" in line.lower() or "refused" in line.lower()]
    return (causes[-1] if causes else lines[0] if lines else type(exc).__name__)[:200]


def _io_error(what: str, exc: Exception) -> OSError:
    """An object store failure as an OSError (the HTTP layer answers it 503)."""
    return OSError(errno.EIO, f"object store: {what}: {brief(exc)}")


class S3Objects:
    """Chunks and blobs in an S3-compatible bucket through obstore (``Objects``)."""

    def __init__(self, config: FleetConfig) -> None:
        from obstore.store import S3Store

        self.config = config
        options: ClientConfig = {"timeout": "30s", "connect_timeout": "5s"}
        if config.endpoint and config.endpoint.startswith("http://"):
            options["allow_http"] = True
        extra: dict[str, str] = {}  # obstore takes no None for these
        if config.endpoint:
            extra["endpoint"] = config.endpoint
        if config.session_token:
            extra["session_token"] = config.session_token
        self.s3 = S3Store(
            config.bucket,
            prefix=config.prefix or None,
            region=config.region,
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            virtual_hosted_style_request=False,
            client_options=options,
            # a few quick retries, then the PUT is answered 503 and the agent retries later
            retry_config={
                "max_retries": 3,
                "retry_timeout": timedelta(seconds=10),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=50),
                    "max_backoff": timedelta(seconds=1),
                },
            },
            **extra,  # type: ignore[arg-type]
        )
        tmp = config.tmp_dir or Path(tempfile.gettempdir())
        self._tmp = Path(tempfile.mkdtemp(prefix="deskcorder-collector-", dir=tmp))

    def describe(self) -> str:
        return self.config.describe()

    def close(self) -> None:
        import shutil

        shutil.rmtree(self._tmp, ignore_errors=True)

    def ping(self) -> None:
        import obstore

        with OBJECT_SECONDS.time("ping"):
            obstore.list(self.s3, "chunks/", chunk_size=1).collect()

    def check(self) -> None:
        """The bucket answers a listing (credentials and endpoint work); else a one-line error."""
        try:
            self.ping()
        except Exception as exc:
            where = self.config.endpoint or "AWS"
            raise DeskcorderError(
                f"s3://{self.config.bucket}/{self.config.prefix} at {where}: {brief(exc)}"
            ) from exc

    def new_body(self) -> SpooledBody:
        return SpooledBody(self._tmp)

    @staticmethod
    def _bytes(body: Body) -> bytes:
        source = body.source()
        return source if isinstance(source, bytes) else source.read()

    def _create(self, key: str, data: bytes) -> bool:
        """Write ``key`` unless it exists (``If-None-Match: *``); True if this call wrote it."""
        import obstore
        from obstore.exceptions import AlreadyExistsError

        try:
            with OBJECT_SECONDS.time("put"):
                obstore.put(self.s3, key, data, mode="create", use_multipart=False)
        except AlreadyExistsError:
            return False
        except Exception as exc:
            raise _io_error(f"PUT {key}", exc) from exc
        return True

    def _exists(self, key: str) -> bool:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            with OBJECT_SECONDS.time("head"):
                obstore.head(self.s3, key)
        except NotFoundError:
            return False
        except Exception as exc:
            if "status: 404" in str(exc):  # a HEAD's 404 has no body to classify it by
                return False
            raise _io_error(f"HEAD {key}", exc) from exc
        return True

    # -- chunks ------------------------------------------------------------------------
    def stage_chunk(self, job: Job) -> None:
        ticket = job.ticket
        assert isinstance(ticket, Ticket), "chunk_state first"
        ticket.key = chunk_key(job.session, job.seq, job.sha)
        ticket.existed = not self._create(ticket.key, self._bytes(job.body))

    def settle(self, batch: list[Job]) -> None:
        """Nothing: a conditional PUT is durable when it returns."""

    def place_chunks(self, jobs: list[Job]) -> None:
        """Under the sessions' shared locks: make sure every object to index is there."""
        for job in jobs:
            ticket = job.ticket
            assert isinstance(ticket, Ticket)
            if (ticket.existed or ticket.recheck) and not self._exists(ticket.key):
                self._create(ticket.key, self._bytes(job.body))

    def drop_staged(self, jobs: list[Job]) -> None:
        import obstore

        keys = [
            job.ticket.key
            for job in jobs
            if isinstance(job.ticket, Ticket) and job.ticket.key and not job.ticket.existed
        ]
        if keys:
            try:
                obstore.delete(self.s3, keys)
            except Exception as exc:
                log.warning("could not delete %d refused chunk objects: %s", len(keys), exc)

    def open_chunk(self, session: str, seq: int, sha: str) -> IO[bytes]:
        import obstore

        key = chunk_key(session, seq, sha)
        try:
            with OBJECT_SECONDS.time("get"):
                return io.BytesIO(bytes(obstore.get(self.s3, key).bytes()))
        except Exception as exc:
            raise _io_error(f"GET {key}", exc) from exc

    # -- blobs -------------------------------------------------------------------------
    def has_blob(self, sha: str) -> bool:
        return self._exists(blob_key(sha))

    def put_blob(self, sha: str, body: Body) -> None:
        self._create(blob_key(sha), self._bytes(body))

    def read_blob(self, sha: str) -> bytes | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            with OBJECT_SECONDS.time("get"):
                return bytes(obstore.get(self.s3, blob_key(sha)).bytes())
        except NotFoundError:
            return None
        except Exception as exc:
            raise _io_error(f"GET {blob_key(sha)}", exc) from exc

    def blob_file(self, sha: str) -> Path | None:
        """None: a blob in a bucket is no local file."""
        return None

    # -- deletion ----------------------------------------------------------------------
    def list_keys(self, prefix: str) -> list[str]:
        import obstore

        try:
            return [str(meta["path"]) for batch in obstore.list(self.s3, prefix) for meta in batch]
        except Exception as exc:
            raise _io_error(f"LIST {prefix}", exc) from exc

    def remove(self, erasure: Erasure) -> None:
        """Delete every object of the erased sessions (orphans too) and the orphaned blobs,
        then list and look again: anything still there is an error (the erasure is retried)."""
        import obstore

        keys = [key for session in erasure.sessions for key in self.list_keys(f"chunks/{session}/")]
        keys += [blob_key(sha) for sha in erasure.blobs]
        for i in range(0, len(keys), 1000):
            try:
                with OBJECT_SECONDS.time("delete"):
                    obstore.delete(self.s3, keys[i : i + 1000])
            except Exception as exc:
                raise _io_error("DELETE", exc) from exc
        left = [key for session in erasure.sessions for key in self.list_keys(f"chunks/{session}/")]
        left += [blob_key(sha) for sha in erasure.blobs if self._exists(blob_key(sha))]
        if left:
            raise OSError(errno.EIO, f"object store: {len(left)} objects still there: {left[0]}")


# -- index -------------------------------------------------------------------------------


def _lock_sessions(conn: psycopg.Connection[Any], sessions: list[str], *, shared: bool) -> None:
    """Advisory locks on ``sessions`` (sorted: two lockers never wait on each other in turn)."""
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(
        f"SELECT {fn}(%s, hashtext(s)) FROM unnest(%s::text[]) AS s ORDER BY s",
        (PURGE_LOCK_CLASS, sorted(set(sessions))),
    ).fetchall()


def _audit(
    conn: psycopg.Connection[Any], actor: str, action: str, target: str, detail: dict[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO audit(at, actor, action, target, detail) VALUES (%s,%s,%s,%s,%s)",
        (time.time(), actor, action, target, json.dumps(detail, sort_keys=True)),
    )


def _bump_purges(conn: psycopg.Connection[Any], sessions: list[str]) -> None:
    conn.execute(
        "INSERT INTO purges(session, n) SELECT s, nextval('purge_seq') FROM unnest(%s::text[]) s "
        "ON CONFLICT (session) DO UPDATE SET n = excluded.n",
        (sorted(set(sessions)),),
    )


class PgIndex:
    """The index in PostgreSQL through a psycopg pool (``Index``)."""

    blocking_lookups = True

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        import psycopg

        self.pool = pool
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        # session -> the purge mark its last commit here saw (only ever behind the truth)
        self._purges: dict[str, int] = {}

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def _tx(self, op: str = "transaction") -> Iterator[psycopg.Connection[Any]]:
        with INDEX_SECONDS.time(op), self.pool.connection() as conn, conn.transaction():
            yield conn

    def _one(self, query: str, args: Any = (), op: str = "read") -> tuple[Any, ...] | None:
        with INDEX_SECONDS.time(op), self.pool.connection() as conn:
            row: tuple[Any, ...] | None = conn.execute(query, args).fetchone()
        return row

    def _all(self, query: str, args: Any = (), op: str = "read") -> list[tuple[Any, ...]]:
        with INDEX_SECONDS.time(op), self.pool.connection() as conn:
            return list(conn.execute(query, args).fetchall())

    def ping(self) -> None:
        self._one("SELECT 1", op="ping")

    def gauges(self) -> dict[str, float]:
        """The connection pool: its size, idle connections, requests waiting for one."""
        stats = self.pool.get_stats()
        return {
            "db_pool_connections": stats.get("pool_size", 0),
            "db_pool_idle": stats.get("pool_available", 0),
            "db_pool_waiting": stats.get("requests_waiting", 0),
            "db_pool_max": self.pool.max_size,
        }

    # -- devices, tokens, revocation (the local backend's rules, in PostgreSQL) ----------
    def challenge_key(self) -> bytes:
        with self._tx("meta") as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('challenge_key', %s) "
                "ON CONFLICT (key) DO NOTHING",
                (secrets.token_hex(32),),
            )
            row = conn.execute("SELECT value FROM meta WHERE key='challenge_key'").fetchone()
        assert row is not None
        return bytes.fromhex(str(row[0]))

    def device(self, device: str) -> dict[str, Any] | None:
        row = self._one(f"SELECT {INVENTORY_SELECT} FROM devices d WHERE d.device=%s", (device,))
        return device_row(row) if row else None

    def devices(self, **where: str) -> list[dict[str, Any]]:
        columns = {"user": 'd."user"', "machine": "d.machine", "person": "d.person"}
        columns["device"] = "d.device"
        clauses = [f"{columns[k]}=%s" for k in where if k in columns]
        query = f"SELECT {INVENTORY_SELECT} FROM devices d"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        args = [v for k, v in where.items() if k in columns]
        return [device_row(r) for r in self._all(query + " ORDER BY d.enrolled", args)]

    @staticmethod
    def _new_token(conn: psycopg.Connection[Any], device: str, ttl_s: float, now: float) -> str:
        token = secrets.token_urlsafe(32)
        conn.execute("DELETE FROM tokens WHERE device=%s AND expires<%s", (device, now))
        conn.execute(
            "INSERT INTO tokens(token_sha256, device, issued, expires) VALUES (%s,%s,%s,%s)",
            (token_digest(token), device, now, now + ttl_s),
        )
        return str(token)

    @staticmethod
    def _use_challenge(conn: psycopg.Connection[Any], device: str, issued: int) -> None:
        """Record the challenge as used; refuse one not newer than the last (the row is
        locked by the UPDATE: two instances cannot both use one challenge)."""
        cur = conn.execute(
            "UPDATE devices SET last_auth=%s WHERE device=%s AND last_auth<%s",
            (issued, device, issued),
        )
        if cur.rowcount != 1:
            raise Rejected(401, "challenge already used; ask for a new one", "challenge_used")

    def consume_challenge(self, device: str, issued: int) -> None:
        with self._tx("challenge") as conn:
            self._use_challenge(conn, device, issued)

    def enroll(self, e: Enrollment, ttl_s: float) -> str:
        """As the local index (LocalIndex.enroll); the device row is locked while decided."""
        now = time.time()
        with self._tx("enroll") as conn:
            # one enrollment of a user on a machine at a time, across instances
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                (ENROLL_LOCK_CLASS, f"{e.user}/{e.machine}"),
            )
            row = conn.execute(
                'SELECT public_key, revoked, "user", machine FROM devices WHERE device=%s '
                "FOR UPDATE",
                (e.device,),
            ).fetchone()
            if row is not None and row[1] is not None:
                raise revoked_error(e.device)
            if row is not None and row[0] != e.public_key:  # a hash collision: never
                raise Rejected(403, "device id registered with another key", "key_mismatch")
            blocked = conn.execute(
                'SELECT device FROM devices WHERE "user"=%s AND machine=%s AND device<>%s '
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
                conn.execute(
                    'INSERT INTO devices(device, public_key, mode, "user", machine, person, '
                    "agent, enrolled, last_auth) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (
                        e.device, e.public_key, e.mode, e.user, e.machine, e.person,
                        e.agent, now, e.challenge_issued,
                    ),
                )  # fmt: skip
            else:
                self._use_challenge(conn, e.device, e.challenge_issued)
                conn.execute(
                    'UPDATE devices SET mode=%s, "user"=%s, machine=%s, person=%s, agent=%s '
                    "WHERE device=%s",
                    (e.mode, e.user, e.machine, e.person, e.agent, e.device),
                )
            changed = row is not None and (row[2], row[3]) != (e.user, e.machine)
            _audit(
                conn,
                f"device:{e.device}",
                "enroll" if row is None else "reenroll",
                e.device,
                {"mode": e.mode, "user": e.user, "machine": e.machine, "changed": changed},
            )
            shared = conn.execute(
                'SELECT COUNT(*) FROM devices WHERE "user"=%s AND machine=%s AND device<>%s '
                "AND revoked IS NULL",
                (e.user, e.machine, e.device),
            ).fetchone()
            if row is None and shared and shared[0]:
                _audit(
                    conn,
                    f"device:{e.device}",
                    "identity_shared",
                    e.device,
                    {"user": e.user, "machine": e.machine, "other_devices": int(shared[0])},
                )
            return self._new_token(conn, e.device, ttl_s, now)

    def issue_token(self, device: str, challenge_issued: int, ttl_s: float) -> str:
        now = time.time()
        with self._tx("token") as conn:
            row = conn.execute(
                "SELECT revoked FROM devices WHERE device=%s FOR UPDATE", (device,)
            ).fetchone()
            if row is None:
                raise Rejected(401, f"device {device} is not enrolled", "not_enrolled")
            if row[0] is not None:
                raise revoked_error(device)
            self._use_challenge(conn, device, challenge_issued)
            return self._new_token(conn, device, ttl_s, now)

    def auth(self, token: str, *, cached: bool = False) -> DeviceAuth | None:
        """Always asks PostgreSQL (``cached`` is ignored: the HTTP layer keeps its 1 s cache
        for the chunk PUT; no instance remembers a token longer)."""
        now = time.time()
        row = self._one(
            'SELECT t.device, d."user", d.machine, t.expires FROM tokens t '
            "JOIN devices d ON d.device = t.device "
            "WHERE t.token_sha256=%s AND t.expires>%s AND d.revoked IS NULL",
            (token_digest(token), now),
            op="token",
        )
        if row is None:
            return None
        return DeviceAuth(str(row[0]), str(row[1]), str(row[2]), float(row[3]))

    def revoke(self, device: str, actor: str) -> bool:
        now = time.time()
        with self._tx("revoke") as conn:
            cur = conn.execute(
                "UPDATE devices SET revoked=%s, released=NULL WHERE device=%s", (now, device)
            )
            found = cur.rowcount > 0
            if found:
                conn.execute("DELETE FROM tokens WHERE device=%s", (device,))
                _audit(conn, actor, "revoke", device, {})
        return found

    def readmit(self, device: str, actor: str, *, new_key: bool = False) -> bool:
        now = time.time()
        with self._tx("readmit") as conn:
            if new_key:
                cur = conn.execute(
                    "UPDATE devices SET released=%s WHERE device=%s AND revoked IS NOT NULL",
                    (now, device),
                )
            else:
                cur = conn.execute(
                    "UPDATE devices SET revoked=NULL, released=NULL WHERE device=%s", (device,)
                )
            found = cur.rowcount > 0
            if found:
                _audit(conn, actor, "readmit", device, {"new_key": new_key})
        return found

    def admin_actor(self, token: str) -> str | None:
        row = self._one(
            "SELECT name FROM admin_tokens WHERE token_sha256=%s AND revoked IS NULL",
            (token_digest(token),),
        )
        return None if row is None else f"admin:{row[0]}"

    def create_admin_token(self, name: str, actor: str) -> str | None:
        token = secrets.token_urlsafe(32)
        with self._tx("admin_token") as conn:
            cur = conn.execute(
                "INSERT INTO admin_tokens(name, token_sha256, created, created_by) "
                "VALUES (%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                (name, token_digest(token), time.time(), actor),
            )
            if cur.rowcount:
                _audit(conn, actor, "admin_token_create", name, {})
        return token if cur.rowcount else None

    def revoke_admin_token(self, name: str, actor: str) -> bool:
        with self._tx("admin_token") as conn:
            cur = conn.execute(
                "UPDATE admin_tokens SET revoked=%s WHERE name=%s AND revoked IS NULL",
                (time.time(), name),
            )
            if cur.rowcount:
                _audit(conn, actor, "admin_token_revoke", name, {})
        return cur.rowcount > 0

    def admin_tokens(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT name, created, created_by, revoked FROM admin_tokens ORDER BY name"
        )
        return [{"name": r[0], "created": r[1], "created_by": r[2], "revoked": r[3]} for r in rows]

    # -- sessions and chunks -----------------------------------------------------------
    def session_owner(self, session: str) -> str | None:
        row = self._one("SELECT device FROM sessions WHERE session=%s", (session,))
        return str(row[0]) if row else None

    def chunk_digest(self, session: str, seq: int) -> str | None:
        row = self._one("SELECT sha256 FROM chunks WHERE session=%s AND seq=%s", (session, seq))
        return str(row[0]) if row else None

    def chunk_state(self, job: Job) -> tuple[str | None, str | None]:
        """No query: the commit checks the owner and the digest already indexed under its
        locks (a retried duplicate costs one more object PUT, answered 412, and one HEAD).

        The session's purge mark comes from what this instance's commits last saw. A
        mark older than the truth is safe: the commit then finds a newer one and checks
        the object again (one HEAD); it can never be newer than the truth.
        """
        job.ticket = Ticket(purge=self._purges.get(job.session, 0))
        return None, None

    def commit_chunks(
        self, batch: list[Job], place: Callable[[list[Job]], None]
    ) -> dict[tuple[str, int], str | Rejected]:
        """One transaction, two calls (``dc_commit_check``, then ``dc_commit_insert``: the
        migrations' functions), ``place`` between them (docs/collector.md: the order)."""
        now = time.time()
        out: dict[tuple[str, int], str | Rejected] = {}
        with self._tx("commit_chunks") as conn:
            rows = conn.execute(
                "SELECT n, owner, revoked, stored, purge FROM dc_commit_check(%s,%s,%s,%s,%s)",
                (
                    [j.session for j in batch],
                    [j.seq for j in batch],
                    [j.device for j in batch],
                    [j.user for j in batch],
                    now,
                ),
            ).fetchall()
            new: list[Job] = []
            keys: set[tuple[str, int]] = set()
            if len(self._purges) > 100_000:
                self._purges.clear()
            for job, (_n, owner, revoked, stored, purge) in zip(batch, rows, strict=True):
                key = (job.session, job.seq)
                self._purges[job.session] = int(purge or 0)
                if revoked:  # revoked while this PUT was on its way
                    out[key] = revoked_error(job.device)
                elif owner != job.device:
                    out[key] = Rejected(403, f"session {job.session} belongs to another device")
                elif stored is not None:
                    out[key] = str(stored)
                elif key in keys:  # twice in one batch: the pipeline never does this
                    out[key] = Rejected(409, f"chunk {job.session}/{job.seq:06d} sent twice")
                else:
                    ticket = job.ticket
                    assert isinstance(ticket, Ticket)
                    ticket.recheck = int(purge or 0) != ticket.purge
                    keys.add(key)
                    new.append(job)
            place(new)
            if new:
                refs = [(j.session, j.seq, sha) for j in new for sha in j.blobs]
                inventory = inventory_rows(new, now)
                conn.execute(
                    "SELECT dc_commit_insert(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    (
                        [j.session for j in new],
                        [j.seq for j in new],
                        [j.sha for j in new],
                        [j.body.size for j in new],
                        [j.records for j in new],
                        now,
                        [r[0] for r in refs],
                        [r[1] for r in refs],
                        [r[2] for r in refs],
                        [r[4] for r in inventory],
                        [r[1] for r in inventory],
                        [r[2] for r in inventory],
                        [r[3] for r in inventory],
                    ),
                )
        return out

    @contextlib.contextmanager
    def purging(self, sessions: list[str]) -> Iterator[None]:
        with self._tx("purge") as conn:
            _lock_sessions(conn, sessions, shared=False)
            _bump_purges(conn, sessions)
            yield

    # -- blobs and receipts ------------------------------------------------------------
    def has_blob(self, device: str, sha: str) -> bool:
        return (
            self._one("SELECT 1 FROM blobs WHERE sha256=%s AND device=%s", (sha, device))
            is not None
        )

    def add_blob(self, device: str, sha: str, size: int) -> bool:
        with self._tx("add_blob") as conn:
            row = conn.execute(
                "SELECT revoked IS NULL FROM devices WHERE device=%s", (device,)
            ).fetchone()
            if row is None or not row[0]:
                raise revoked_error(device)
            cur = conn.execute(
                "INSERT INTO blobs(sha256, device, bytes, received) VALUES (%s,%s,%s,%s) "
                "ON CONFLICT DO NOTHING",
                (sha, device, size, time.time()),
            )
        return cur.rowcount > 0

    def add_receipt(self, device: str, user: str, text: str) -> tuple[int, bool]:
        with self._tx() as conn:
            row = conn.execute(
                'INSERT INTO receipts(device, "user", body, received) VALUES (%s,%s,%s,%s) '
                "ON CONFLICT (device, md5(body)) DO NOTHING RETURNING id",
                (device, user, text, time.time()),
            ).fetchone()
            if row is not None:
                return int(row[0]), True
            row = conn.execute(
                "SELECT id FROM receipts WHERE device=%s AND md5(body)=md5(%s)", (device, text)
            ).fetchone()
        assert row is not None
        return int(row[0]), False

    def receipts(
        self, user: str | None = None, *, devices: list[str] | None = None
    ) -> list[dict[str, Any]]:
        args: tuple[Any, ...]
        if devices is not None:
            where, args = "device = ANY(%s)", (list(devices),)
        else:
            where, args = '"user"=%s', (user or "",)
        rows = self._all(
            f"SELECT id, device, body, received FROM receipts WHERE {where} ORDER BY id", args
        )
        return [
            {"id": r[0], "device": r[1], "receipt": json.loads(r[2]), "received": r[3]}
            for r in rows
        ]

    # -- admin -------------------------------------------------------------------------
    def sessions(
        self, user: str | None = None, *, device: str | None = None, person: str | None = None
    ) -> list[dict[str, Any]]:
        from .local import session_row

        query = (
            'SELECT s.session, s.device, s."user", d.machine, s.first_seen, COUNT(c.seq), '
            "COALESCE(SUM(c.bytes),0)::bigint, COALESCE(SUM(c.records),0)::bigint, "
            "MAX(c.received) FROM sessions s LEFT JOIN devices d ON d.device = s.device "
            "LEFT JOIN chunks c ON c.session = s.session "
        )
        where, args = where_equal(
            (('s."user"', user), ("s.device", device), ("d.person", person)), "%s"
        )
        query += where + "GROUP BY s.session, d.machine ORDER BY s.session"
        return [session_row(r) for r in self._all(query, args)]

    def chunks(self, session: str) -> list[dict[str, Any]]:
        from .local import chunk_row

        rows = self._all(
            "SELECT seq, sha256, bytes, records, received FROM chunks WHERE session=%s "
            "ORDER BY seq",
            (session,),
        )
        return [chunk_row(r) for r in rows]

    def chunk_blobs(self, session: str) -> list[str]:
        rows = self._all("SELECT DISTINCT sha256 FROM chunk_blobs WHERE session=%s", (session,))
        return [str(r[0]) for r in rows]

    def erase(self, erasure: Erasure, remove: Callable[[Erasure], None]) -> Erasure:
        """Under each session's exclusive lock: rows deleted, objects deleted (and verified
        gone), purge marks bumped, the erasure audited, then COMMIT; a failure rolls the
        rows back (the erasure is then retried)."""
        with self._tx("erase") as conn:
            self._erase_rows(conn, erasure)
            remove(erasure)
            _audit(conn, erasure.actor, erasure.action, erasure.target, erasure.counts())
        return erasure

    @staticmethod
    def _erase_rows(conn: psycopg.Connection[Any], out: Erasure) -> None:
        """Delete ``out.sessions`` (locked, purge marks bumped) and ``out.user``'s receipts."""
        _lock_sessions(conn, out.sessions, shared=False)
        _bump_purges(conn, out.sessions)
        out.chunks = sorted(
            (str(r[0]), int(r[1]), str(r[2]))
            for r in conn.execute(
                "DELETE FROM chunks WHERE session = ANY(%s) RETURNING session, seq, sha256",
                (out.sessions,),
            )
        )
        shas = sorted(
            {
                str(r[0])
                for r in conn.execute(
                    "DELETE FROM chunk_blobs WHERE session = ANY(%s) RETURNING sha256",
                    (out.sessions,),
                )
            }
        )
        conn.execute("DELETE FROM sessions WHERE session = ANY(%s)", (out.sessions,))
        if out.receipt_devices is not None:
            if out.receipt_devices:
                out.receipts = conn.execute(
                    "DELETE FROM receipts WHERE device = ANY(%s)", (out.receipt_devices,)
                ).rowcount
        elif out.user:
            out.receipts = conn.execute(
                'DELETE FROM receipts WHERE "user"=%s', (out.user,)
            ).rowcount
        out.blobs = sorted(
            {
                str(r[0])
                for r in conn.execute(
                    "DELETE FROM blobs WHERE sha256 = ANY(%s) AND NOT EXISTS "
                    "(SELECT 1 FROM chunk_blobs cb WHERE cb.sha256 = blobs.sha256) "
                    "RETURNING sha256",
                    (shas,),
                )
            }
        )

    RETENTION_BATCH = 200  # sessions per transaction: bounds the locks one transaction holds

    def expire(self, cutoff: float, remove: Callable[[Erasure], None]) -> Erasure | None:
        """One instance at a time (a session-level advisory lock; the others skip), in
        batches of sessions, each batch erased like a user's and audited in its transaction."""
        total = Erasure("")
        with self.pool.connection() as guard:
            row = guard.execute("SELECT pg_try_advisory_lock(%s)", (RETENTION_LOCK,)).fetchone()
            if not row or not row[0]:
                return None
            try:
                while True:
                    out = Erasure("", actor="retention", action="expire", target="sessions")
                    with self._tx("expire") as conn:
                        out.sessions = [
                            str(r[0])
                            for r in conn.execute(
                                "SELECT s.session FROM sessions s LEFT JOIN chunks c "
                                "ON c.session = s.session GROUP BY s.session "
                                "HAVING COALESCE(MAX(c.received), s.first_seen) < %s "
                                "ORDER BY s.session LIMIT %s",
                                (cutoff, self.RETENTION_BATCH),
                            )
                        ]
                        if not out.sessions:
                            break
                        self._erase_rows(conn, out)
                        remove(out)
                        _audit(
                            conn,
                            "retention",
                            "expire",
                            "sessions",
                            {"cutoff": cutoff, **out.counts()},
                        )
                    total.sessions += out.sessions
                    total.chunks += out.chunks
                    total.blobs += out.blobs
            finally:
                guard.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))
        return total

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        with self._tx("audit") as conn:
            _audit(conn, actor, action, target, detail)

    def audit_log(self, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        from .local import audit_row

        rows = self._all(
            "SELECT id, at, actor, action, target, detail FROM audit WHERE id > %s "
            "ORDER BY id LIMIT %s",
            (after, limit),
        )
        return [audit_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Row counts: exact below a million rows, PostgreSQL's estimate above (an exact
        count of a big table scans it, and /metrics is scraped every few seconds)."""
        tables = ("devices", "sessions", "chunks", "blobs", "receipts", "audit")
        with self.pool.connection() as conn:
            estimates = dict(
                conn.execute(
                    "SELECT relname, reltuples::bigint FROM pg_class WHERE relname = ANY(%s) "
                    "AND relkind = 'r'",
                    (list(tables),),
                ).fetchall()
            )
            out = {}
            for table in tables:
                estimate = int(estimates.get(table, 0))
                if estimate >= 1_000_000:
                    out[table] = estimate
                else:
                    row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
                    out[table] = int(row[0]) if row else 0
        return out


def migrate_command(db: str, password_file: Path | None, out: IO[str]) -> int:
    """``collector migrate``: create or upgrade the schema; prints what it applied."""
    import psycopg

    from .migrations import migrate

    config = FleetConfig.from_args(
        "s3://unused", None, db, db_password_file=password_file, environ={
            "AWS_ACCESS_KEY_ID": "-", "AWS_SECRET_ACCESS_KEY": "-", **os.environ
        }
    )  # fmt: skip
    kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": 10}
    if config.db_password is not None:
        kwargs["password"] = config.db_password
    try:
        with psycopg.connect(config.db, **kwargs) as conn:
            applied = migrate(conn)
            version = schema_version(conn)
    except psycopg.Error as exc:
        raise DeskcorderError(f"{_safe_dsn(db)}: {str(exc).strip().splitlines()[0]}") from exc
    for number, name in applied:
        print(f"applied migration {number}: {name}", file=out)
    print(f"schema at version {version} ({_safe_dsn(db)})", file=out)
    return 0
