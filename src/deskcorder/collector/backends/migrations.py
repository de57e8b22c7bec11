"""The fleet index's PostgreSQL schema, as numbered migrations.

``deskcorder collector migrate --db URL`` applies the missing ones in order,
each in its own transaction, holding a session-level advisory lock so that
several instances (or deploy jobs) running it at once apply each exactly
once: the others wait, then find nothing left to do. ``collector serve``
refuses to start on a schema older than ``LATEST`` (one line, exit 1), so an
instance never writes rows its schema cannot hold.

A migration is only ever appended: a released one is never edited. Each must
keep the previous release's collector working (add columns with defaults,
add tables; drop only what no released collector reads), so instances can be
upgraded one by one behind the load balancer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

MIGRATE_LOCK = 0x6465736B  # "desk": the advisory lock key migrations hold

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "devices, tokens, admin tokens, sessions, chunks, blobs, receipts, purges, audit",
        """
-- the local backend's tables (backends/local.py), in PostgreSQL's types
CREATE TABLE devices (
  device text PRIMARY KEY, public_key text NOT NULL, mode text NOT NULL,
  "user" text NOT NULL, machine text NOT NULL, person text NOT NULL DEFAULT '',
  agent text NOT NULL DEFAULT '', enrolled double precision NOT NULL,
  last_auth bigint NOT NULL DEFAULT 0, revoked double precision, released double precision,
  last_seen double precision, backlog_chunks bigint, backlog_bytes bigint);
CREATE INDEX devices_user ON devices ("user", machine);
CREATE INDEX devices_person ON devices (person);
CREATE TABLE tokens (
  token_sha256 text PRIMARY KEY, device text NOT NULL, issued double precision NOT NULL,
  expires double precision NOT NULL);
CREATE INDEX tokens_device ON tokens (device);
CREATE TABLE admin_tokens (
  name text PRIMARY KEY, token_sha256 text NOT NULL UNIQUE, created double precision NOT NULL,
  created_by text NOT NULL, revoked double precision);
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE sessions (
  session text PRIMARY KEY, device text NOT NULL, "user" text NOT NULL,
  first_seen double precision NOT NULL);
CREATE INDEX sessions_user ON sessions ("user");
CREATE INDEX sessions_device ON sessions (device);
CREATE TABLE chunks (
  session text NOT NULL, seq integer NOT NULL, sha256 text NOT NULL, bytes bigint NOT NULL,
  records integer NOT NULL, received double precision NOT NULL, PRIMARY KEY (session, seq));
CREATE INDEX chunks_received ON chunks (received);
CREATE TABLE chunk_blobs (
  session text NOT NULL, seq integer NOT NULL, sha256 text NOT NULL,
  PRIMARY KEY (session, seq, sha256));
CREATE INDEX chunk_blobs_sha ON chunk_blobs (sha256);
CREATE TABLE blobs (
  sha256 text NOT NULL, device text NOT NULL, bytes bigint NOT NULL,
  received double precision NOT NULL, PRIMARY KEY (sha256, device));
CREATE TABLE receipts (
  id bigserial PRIMARY KEY, device text NOT NULL, "user" text NOT NULL, body text NOT NULL,
  received double precision NOT NULL);
CREATE INDEX receipts_user ON receipts ("user");
CREATE UNIQUE INDEX receipts_once ON receipts (device, md5(body));
-- every deletion of a session's objects bumps its row (docs/collector.md: the order)
CREATE SEQUENCE purge_seq;
CREATE TABLE purges (session text PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE audit (
  id bigserial PRIMARY KEY, at double precision NOT NULL, actor text NOT NULL,
  action text NOT NULL, target text NOT NULL, detail text NOT NULL);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
""",
    ),
    (
        2,
        "a chunk batch's commit in two calls (dc_commit_check, dc_commit_insert)",
        """
-- The committer's checks in one call: shared locks on the batch's sessions (sorted), the
-- first chunk of a new session binds it to its device, then per job (in batch order): the
-- session's owner, whether the device is revoked, the digest already stored, the purge mark.
CREATE FUNCTION dc_commit_check(
  p_session text[], p_seq integer[], p_device text[], p_user text[], p_now double precision)
RETURNS TABLE (n integer, owner text, revoked boolean, stored text, purge bigint)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(1684239104, hashtext(x.s))
    FROM (SELECT DISTINCT s FROM unnest(p_session) AS u(s) ORDER BY s) AS x;
  INSERT INTO sessions(session, device, "user", first_seen)
    SELECT DISTINCT ON (t.s) t.s, t.d, t.u, p_now
    FROM unnest(p_session, p_device, p_user) WITH ORDINALITY AS t(s, d, u, i)
    ORDER BY t.s, t.i
    ON CONFLICT (session) DO NOTHING;
  RETURN QUERY
    SELECT t.i::integer, se.device, dv.device IS NULL OR dv.revoked IS NOT NULL, c.sha256, pu.n
    FROM unnest(p_session, p_seq, p_device) WITH ORDINALITY AS t(s, q, d, i)
    LEFT JOIN sessions se ON se.session = t.s
    LEFT JOIN devices dv ON dv.device = t.d
    LEFT JOIN chunks c ON c.session = t.s AND c.seq = t.q
    LEFT JOIN purges pu ON pu.session = t.s
    ORDER BY t.i;
END $$;
-- The rows of the chunks that passed (their objects are in place): chunks, screenshot
-- references, and each device's last seen, agent version and reported backlog.
CREATE FUNCTION dc_commit_insert(
  p_session text[], p_seq integer[], p_sha text[], p_bytes bigint[], p_records integer[],
  p_now double precision, r_session text[], r_seq integer[], r_sha text[],
  d_device text[], d_agent text[], d_chunks bigint[], d_bytes bigint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO chunks(session, seq, sha256, bytes, records, received)
    SELECT t.s, t.q, t.h, t.b, t.r, p_now
    FROM unnest(p_session, p_seq, p_sha, p_bytes, p_records) AS t(s, q, h, b, r);
  INSERT INTO chunk_blobs(session, seq, sha256)
    SELECT * FROM unnest(r_session, r_seq, r_sha) ON CONFLICT DO NOTHING;
  UPDATE devices d SET last_seen = p_now, agent = COALESCE(NULLIF(u.a, ''), d.agent),
      backlog_chunks = COALESCE(u.c, d.backlog_chunks),
      backlog_bytes = COALESCE(u.b, d.backlog_bytes)
    FROM unnest(d_device, d_agent, d_chunks, d_bytes) AS u(dev, a, c, b)
    WHERE d.device = u.dev;
END $$;
""",
    ),
)

LATEST = MIGRATIONS[-1][0]

_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY, name text NOT NULL, applied double precision NOT NULL)
"""


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The highest migration applied (0 on an empty database)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    """Apply the missing migrations (``conn`` in autocommit mode); returns those applied."""
    applied: list[tuple[int, str]] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
    try:
        with conn.transaction():
            conn.execute(_VERSIONS)
        current = schema_version(conn)
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            with conn.transaction():
                conn.execute(sql.encode())  # several statements: no parameters
                conn.execute(
                    "INSERT INTO schema_migrations(version, name, applied) VALUES (%s,%s,%s)",
                    (version, name, time.time()),
                )
            applied.append((version, name))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))
    return applied
