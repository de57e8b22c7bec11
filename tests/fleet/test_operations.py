"""Operating a collector, on both backends: readiness, metrics, graceful shutdown."""

from __future__ import annotations

import hashlib
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deskcorder.collector.backends import open_local
from deskcorder.collector.backends.fleet import S3Objects
from deskcorder.collector.store import Store
from tests.collector.helpers import (
    DEVICE,
    TEST_CLAIMS,
    USER,
    CollectorProc,
    key_no,
    register,
    wait_until,
    write_chunk,
)
from tests.services import FleetTarget

SESSION = "20261127T090000Z-0000ops0"


@pytest.fixture(params=["local", "fleet"])
def collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectorProc]:
    fleet = request.getfixturevalue("fleet") if request.param == "fleet" else None
    proc = CollectorProc(tmp_path, None, fleet=fleet)
    try:
        yield proc.start()
    finally:
        proc.stop()


def chunk(tmp: Path, seq: int) -> tuple[bytes, str]:
    folder = tmp / f"src-{seq}"
    records = [{"k": "kd", "t": i, "pad": "x" * 40} for i in range(2000)]
    manifest = write_chunk(folder, SESSION, seq, records)
    return (folder / f"{seq:06d}.jsonl.zst").read_bytes(), manifest.sha256


def test_readyz_and_metrics(collector: CollectorProc, tmp_path: Path) -> None:
    ready = httpx.get(collector.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    token = collector.enroll()
    data, sha = chunk(tmp_path, 0)
    headers = {"Authorization": f"Bearer {token}", "X-Deskcorder-SHA256": sha}
    url = f"{collector.url}/v1/sessions/{SESSION}/chunks/0"
    assert httpx.put(url, content=data, headers=headers).status_code == 201
    assert httpx.put(url, content=data, headers=headers).status_code == 200
    assert httpx.put(url, content=b"x", headers=headers).status_code == 400
    text = collector.admin("GET", "/metrics").text
    backend = "local" if collector.fleet is None else "fleet"
    assert f'deskcorder_collector_backend_info{{backend="{backend}"}} 1' in text
    for outcome, n in (("created", 1), ("duplicate", 1), ("refused", 1), ("failed", 0)):
        assert f'deskcorder_collector_chunk_puts_total{{outcome="{outcome}"}} {n}' in text
    count = re.search(
        r'deskcorder_collector_request_seconds_count\{route="chunk_put"\} (\d+)', text
    )
    assert count and int(count[1]) == 3
    assert 'deskcorder_collector_request_seconds_bucket{route="chunk_put",le="+Inf"} 3' in text
    if collector.fleet is not None:  # the database and the bucket, timed; the pool, gauged
        assert re.search(r'index_seconds_count\{op="commit_chunks"\} [1-9]', text), text
        assert re.search(r'object_seconds_count\{op="put"\} [1-9]', text), text
        assert re.search(r"deskcorder_collector_db_pool_connections [1-9]", text), text
        assert "deskcorder_collector_db_pool_waiting 0" in text


def test_readyz_says_which_part_is_down(fleet: FleetTarget, tmp_path: Path) -> None:
    """A fleet instance whose database went away is alive (/healthz) but not ready."""
    import psycopg

    proc = CollectorProc(tmp_path, None, fleet=fleet).start()
    try:
        name = fleet.db.rsplit("/", 1)[1]
        admin = fleet.db.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, password=fleet.env["PGPASSWORD"], autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s", (name,)
            )
        answer = httpx.get(proc.url + "/readyz", timeout=30)
        assert answer.status_code == 503
        assert answer.json() == {"status": "not ready", "failed": "index"}
        assert httpx.get(proc.url + "/healthz", timeout=5).status_code == 200
    finally:
        proc.stop()


def test_sigterm_finishes_a_put_whose_body_is_still_arriving(
    collector: CollectorProc, tmp_path: Path
) -> None:
    token = collector.enroll()
    data, sha = chunk(tmp_path, 1)
    head = (
        f"PUT /v1/sessions/{SESSION}/chunks/1 HTTP/1.1\r\nHost: t\r\n"
        f"Authorization: Bearer {token}\r\nX-Deskcorder-SHA256: {sha}\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", collector.port), timeout=30) as sock:
        sock.sendall(head + data[: len(data) // 2])
        assert collector.proc is not None
        collector.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not accepts(collector.port), 20, "the collector to stop accepting")
        sock.sendall(data[len(data) // 2 :])
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201"), reply
    assert collector.proc.wait(30) == 0  # a clean exit, its store closed
    collector.stop()
    collector.start()  # the chunk is there for good
    got = collector.admin("GET", f"/v1/admin/sessions/{SESSION}/chunks/1")
    assert hashlib.sha256(got.content).hexdigest() == sha
    assert DEVICE in collector.admin("GET", f"/v1/admin/sessions/{SESSION}").text


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["local", "fleet"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        st = open_local(tmp_path / "data")
    else:
        st = request.getfixturevalue("fleet").open()
    register(st)
    yield st
    st.close()


def put(st: Store, session: str, data: bytes, sha: str) -> None:
    body = st.new_body()
    body.write(data)
    assert st.put_chunk_claimed(DEVICE, session, 0, sha, body).created


def test_retention_deletes_what_is_older_and_audits_it(store: Store, tmp_path: Path) -> None:
    old, new = "20261127T010000Z-00000old", "20261127T020000Z-00000new"
    shot = b"a screenshot only the old session shows"
    shot_sha = hashlib.sha256(shot).hexdigest()
    blob = store.new_body()
    blob.write(shot)
    store.put_blob(DEVICE, shot_sha, blob)
    for session in (old, new):
        extra = [{"k": "shot", "t": 5, "sha256": shot_sha}] if session == old else []
        folder = tmp_path / session
        manifest = write_chunk(folder, session, 0, [{"k": "kd", "t": 1}, *extra])
        put(store, session, (folder / "000000.jsonl.zst").read_bytes(), manifest.sha256)
        if session == old:
            between = time.time()
            wait_until(lambda t=between: time.time() > t, 1, "the clock to move on")
    store.add_receipt(DEVICE, USER, {"user": USER, "accepted": True})
    assert store.expire(30, now=between + 30 * 86400) == {
        "sessions": 1, "chunks": 1, "blobs": 1, "receipts": 0,
    }  # fmt: skip
    assert [s["session"] for s in store.sessions()] == [new]
    assert store.read_chunk(old, 0) is None and store.read_chunk(new, 0) is not None
    assert not store.has_blob(DEVICE, shot_sha)
    assert len(store.receipts(USER)) == 1  # consent records are not data: kept
    (entry,) = [e for e in store.audit_log() if e["action"] == "expire"]
    assert entry["actor"] == "retention" and entry["detail"]["sessions"] == 1
    assert entry["detail"]["cutoff"] == pytest.approx(between)
    if isinstance(store.objects, S3Objects):
        assert store.objects.list_keys(f"chunks/{old}/") == []
        assert store.objects.list_keys(f"chunks/{new}/") != []
    assert store.expire(30, now=between + 30 * 86400) == {
        "sessions": 0, "chunks": 0, "blobs": 0, "receipts": 0,
    }  # fmt: skip


def test_retention_runs_on_one_fleet_instance_at_a_time(fleet: FleetTarget) -> None:
    import psycopg

    from deskcorder.collector.backends.fleet import RETENTION_LOCK

    st = fleet.open()
    try:
        with psycopg.connect(fleet.db, password=fleet.env["PGPASSWORD"], autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (RETENTION_LOCK,))  # another instance
            assert st.expire(1, now=time.time() + 10 * 86400) is None
            conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))
        assert st.expire(1, now=time.time() + 10 * 86400) is not None
    finally:
        st.close()


def test_the_audit_log_is_append_only_and_served(collector: CollectorProc) -> None:
    resp = collector.admin("GET", "/v1/admin/audit?after=0&limit=10")
    assert resp.status_code == 200 and resp.json() == {"entries": []}
    assert collector.admin("GET", "/v1/admin/audit?after=-1").status_code == 400
    assert (
        collector.admin("GET", "/v1/admin/audit", headers={"Authorization": "x"}).status_code == 401
    )


def test_the_device_inventory(collector: CollectorProc, tmp_path: Path) -> None:
    """Last seen, agent version and the backlog the agent reported with its last chunk."""
    token = collector.enroll()
    idle_key = key_no(8)
    collector.enroll(idle_key, {**TEST_CLAIMS, "login": "never-sent"})
    assert collector.admin("POST", f"/v1/admin/devices/{idle_key.device}/revoke").status_code == 200
    before = time.time()
    for seq, backlog in ((0, "3 200000"), (1, "not a backlog")):
        data, sha = chunk(tmp_path, seq)
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Deskcorder-SHA256": sha,
            "X-Deskcorder-Backlog": backlog,
        }
        resp = httpx.put(f"{collector.url}/v1/sessions/{SESSION}/chunks/{seq}", content=data,
                         headers=headers)  # fmt: skip
        assert resp.status_code == 201
    devices = {
        d["device"]: d for d in collector.admin("GET", "/v1/admin/devices").json()["devices"]
    }
    mine, idle = devices[DEVICE], devices[idle_key.device]
    assert mine["last_seen"] >= before and mine["agent"] == "test-agent 1.0"
    assert mine["backlog"] == {"chunks": 3, "bytes": 200000}  # a malformed one changes nothing
    assert mine["revoked"] is None and mine["sessions"] == 1
    assert idle["last_seen"] is None and idle["backlog"] is None and idle["revoked"] is not None
    assert (
        collector.admin("GET", "/v1/admin/devices", headers={"Authorization": "x"}).status_code
        == 401
    )
