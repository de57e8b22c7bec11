"""Delivery over real loopback HTTP: a real collector, the uploader thread, faults.

Every test runs twice: against one local collector process (files + SQLite),
and against a fleet of three collector instances (SeaweedFS + PostgreSQL)
behind the test's own round-robin proxy, one request per connection, so a
chunk's retries land on other instances than its first try.

After every run: every record generated is in the collector exactly once, and
the spool holds nothing but what policy says (no chunk, no blob, no rejects
unless a chunk was refused).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.collector.backends.fleet import chunk_key
from deskcorder.policy.model import Upload
from deskcorder.upload import Uploader, pending_chunks, rejected_chunks
from tests.collector.helpers import (
    DEVICE,
    ENROLL,
    TEST_CLAIMS,
    USER,
    CollectorProc,
    all_ns,
    install_key,
    make_spool,
    metrics_text,
    wait_until,
    write_chunk,
)
from tests.fleet.cluster import FleetCluster
from tests.services import FleetTarget
from tests.upload.faultproxy import FaultProxy


@pytest.fixture(params=["local", "fleet"])
def collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectorProc]:
    if request.param == "local":
        proc = CollectorProc(tmp_path)
    else:
        proc = FleetCluster(tmp_path / "fleet", request.getfixturevalue("fleet"))
    try:
        yield proc.start()
    finally:
        proc.stop()


@pytest.fixture
def proxy(collector: CollectorProc) -> Iterator[FaultProxy]:
    fp = FaultProxy(collector.port)
    yield fp
    fp.close()


def uploader(spool: Path, url: str, window: int | None = None, **cfg: Any) -> Uploader:
    settings: dict[str, Any] = {
        "endpoint": url,
        "enroll_secret": ENROLL,
        "backoff_max_s": 0.2,
        "timeout_s": 1.0,
    }
    settings.update(cfg)
    extra = {} if window is None else {"window": window}
    install_key(spool)
    up = Uploader(Upload(**settings), spool, claims=TEST_CLAIMS, backoff_base=0.05, **extra)
    up.start()
    return up


def drained(spool: Path) -> bool:
    return not pending_chunks(spool)


def assert_exactly_once(collector: CollectorProc, expected: list[int]) -> None:
    got = all_ns(collector)
    assert len(got) == len(set(got)), "a record arrived twice"
    assert sorted(got) == sorted(expected)


def assert_spool_clean(spool: Path) -> None:
    assert not list((spool / "sessions").rglob("*.jsonl.zst"))
    assert not list((spool / "sessions").rglob("*.manifest.json"))
    assert not [p for p in (spool / "blobs").rglob("*") if p.is_file()]
    assert not rejected_chunks(spool)
    token = spool / "state" / "upload-token.json"
    assert token.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("window", [1, 3])
def test_delivers_in_order_blobs_first_and_cleans_the_spool(
    collector: CollectorProc, tmp_path: Path, window: int
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=2, chunks=4, per_chunk=30, blobs=True)
    order = [(p.session, p.seq) for p in pending_chunks(spool)]
    deleted: list[tuple[str, int]] = []
    install_key(spool)
    up = Uploader(
        Upload(endpoint=collector.url, enroll_secret=ENROLL, backoff_max_s=0.2, timeout_s=1.0),
        spool,
        claims=TEST_CLAIMS,
        backoff_base=0.05,
        window=window,
    )
    delete = up._delete

    def recording_delete(item: Any, manifest: Any, refs: Any) -> None:
        deleted.append((item.session, item.seq))
        delete(item, manifest, refs)

    up._delete = recording_delete  # type: ignore[method-assign]
    up.start()
    try:
        wait_until(lambda: drained(spool), 30, "the spool to drain")
    finally:
        up.stop(5)
    assert_exactly_once(collector, expected)
    assert_spool_clean(spool)
    status = up.status()
    assert status["chunks_uploaded"] == 8 and status["blobs_uploaded"] == 8
    assert status["chunks_pending"] == 0 and status["last_error"] is None
    assert status["last_success"] is not None
    metrics = metrics_text(collector)
    assert "deskcorder_collector_blobs 8" in metrics
    # acknowledged and deleted strictly in order, whatever the window
    assert deleted == order
    (device,) = collector.admin("GET", "/v1/admin/devices").json()["devices"]
    assert device["device"] == DEVICE and device["last_seen"] is not None
    if window == 1:  # the last chunk reported itself as all that was left to send
        assert device["backlog"]["chunks"] == 1, device
    if window == 1:  # one chunk at a time: they also arrived in order within each session
        sessions = collector.admin("GET", "/v1/admin/sessions").json()["sessions"]
        for info in sessions:
            chunks = collector.admin("GET", f"/v1/admin/sessions/{info['session']}").json()
            received = [c["received"] for c in chunks["chunk_list"]]
            assert received == sorted(received)
    saved = json.loads((spool / "state" / "upload-status.json").read_text())
    assert saved["uploaded_total"] == 8


@pytest.mark.parametrize("window", [1, 3])
def test_network_faults_lose_nothing_and_duplicate_nothing(
    collector: CollectorProc, proxy: FaultProxy, tmp_path: Path, window: int
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=12, per_chunk=40)
    # one request per connection: the 1st two are the enrollment (challenge, enroll),
    # then chunk 0, then chunk 1
    plan = ["pass", "pass", "reset", "drop_reply", "truncate:20", "stall", "latency:0.02"]
    plan += ["reset", "drop_reply", "truncate:5", "pass"]
    proxy.plan.extend(plan)
    up = uploader(spool, proxy.url, window=window)
    try:
        wait_until(lambda: drained(spool), 60, "the spool to drain")
    finally:
        up.stop(5)
    assert proxy.faults_seen()[: len(plan)] == plan
    assert_exactly_once(collector, expected)
    assert_spool_clean(spool)
    assert up.status()["last_error"] is not None
    if window > 1:  # which request meets which fault depends on the timing
        return
    metrics = metrics_text(collector)
    # replies lost or cut after the collector stored a chunk: the retries were duplicates
    # (chunk 0: after truncate:20 and latency; chunk 1: after truncate:5 and pass)
    assert "deskcorder_collector_chunks_duplicate_total 4" in metrics
    assert up.status()["last_error"] is not None


def test_server_errors_are_retried_honouring_retry_after(
    collector: CollectorProc, proxy: FaultProxy, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=3, per_chunk=10)
    # the 1st two requests are the enrollment; then the first chunk meets the errors
    proxy.plan.extend(
        ["pass", "pass", "status:500", "status:503:1", "status:429:date+2", "status:408"]
    )
    # one request at a time, so that the plan meets the requests in a known order
    up = uploader(spool, proxy.url, window=1)
    try:
        wait_until(lambda: drained(spool), 30, "the spool to drain")
    finally:
        up.stop(5)
    log = proxy.log[2:]
    assert [fault for _, fault in log[:5]] == [
        "status:500",
        "status:503:1",
        "status:429:date+2",
        "status:408",
        "pass",
    ]
    after_503 = log[2][0] - log[1][0]
    after_429 = log[3][0] - log[2][0]
    after_500 = log[1][0] - log[0][0]
    assert after_503 >= 0.95, after_503
    assert after_429 >= 0.95, after_429  # an HTTP date 2 s ahead (1 s resolution)
    assert after_500 < 0.5, after_500  # no Retry-After: capped jittered backoff (0.2 s)
    assert_exactly_once(collector, expected)
    assert_spool_clean(spool)


def test_collector_sigkilled_mid_upload_and_restarted(
    collector: CollectorProc, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=2, chunks=10, per_chunk=40, pad=400, blobs=True)
    up = uploader(spool, collector.url, max_kbps=600)
    try:
        wait_until(lambda: collector.chunk_count() >= 4, 30, "some chunks to arrive")
        collector.kill()
        wait_until(lambda: up.status()["state"] == "backoff", 10, "the uploader to back off")
        assert not drained(spool)
        collector.start()
        wait_until(lambda: drained(spool), 60, "the spool to drain")
    finally:
        up.stop(5)
    assert_exactly_once(collector, expected)
    assert_spool_clean(spool)


def test_bandwidth_cap(collector: CollectorProc, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    make_spool(spool, sessions=1, chunks=4, per_chunk=100, pad=1000)
    size = sum(p.path.stat().st_size for p in pending_chunks(spool))
    assert size > 150 * 1024
    start = time.monotonic()
    up = uploader(spool, collector.url, max_kbps=200)
    try:
        wait_until(lambda: drained(spool), 30, "the spool to drain")
    finally:
        up.stop(5)
    elapsed = time.monotonic() - start
    floor = (size - 64 * 1024) / (200 * 1024)  # minus the token bucket's burst
    assert elapsed >= floor * 0.9, (elapsed, floor)


def test_refused_chunk_goes_to_rejected_and_others_still_flow(
    collector: CollectorProc, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=2, per_chunk=10)
    session = "20261127T040000Z-0000beef"
    folder = spool / "sessions" / session
    write_chunk(folder, session, 0, [{"k": "kd", "t": 1, "n": -1}], device="d-someone-else")
    write_chunk(folder, session, 1, [{"k": "kd", "t": 2, "n": -2}])
    # a chunk damaged on disk after sealing: refused locally, never sent
    bad = "20261127T050000Z-0000dead"
    write_chunk(spool / "sessions" / bad, bad, 0, [{"k": "kd", "t": 1, "n": -3}])
    path = spool / "sessions" / bad / "000000.jsonl.zst"
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    up = uploader(spool, collector.url)
    try:
        wait_until(lambda: drained(spool), 30, "the spool to drain")
    finally:
        up.stop(5)
    assert_exactly_once(collector, [*expected, -2])
    rejected = rejected_chunks(spool)
    assert [(r["session"], r["seq"], r["status"]) for r in rejected] == [
        (session, 0, 403),
        (bad, 0, None),
    ]
    assert "another device" in rejected[0]["reason"]
    assert "does not match its manifest" in rejected[1]["reason"]
    assert (spool / "rejected" / session / "000000.manifest.json").exists()
    status = up.status()
    assert status["chunks_rejected"] == 2 and "rejected" in str(status["last_error"])
    metrics = metrics_text(collector)
    assert 'route="chunk_put",status="403"} 1' in metrics  # refused once, never retried


def test_a_revoked_device_stops_keeps_its_data_and_resumes_when_readmitted(
    collector: CollectorProc, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=2, per_chunk=10)
    up = uploader(spool, collector.url)
    try:
        wait_until(lambda: drained(spool), 30, "the spool to drain")
        assert collector.admin("POST", f"/v1/admin/devices/{DEVICE}/revoke").status_code == 200
        session = "20261127T060000Z-0000cafe"
        write_chunk(spool / "sessions" / session, session, 0, [{"k": "kd", "t": 1, "n": 10_000}])
        up.wake()
        wait_until(lambda: up.status()["state"] == "revoked", 30, "the revoked state")
        tokens_asked = collector.admin("GET", "/metrics").text.count('route="token"')
        for _ in range(3):  # more passes: it does not ask again, and sends nothing
            up.wake()
            wait_until(lambda: not up._wake.is_set(), 10, "a pass")
        assert collector.admin("GET", "/metrics").text.count('route="token"') == tokens_asked
    finally:
        up.stop(5)
    status = up.status()
    assert status["revoked"] and "revoked" in str(status["last_error"])
    assert status["chunks_pending"] == 1 and up.enrollments == 1
    assert (spool / "state" / "upload-revoked.json").exists()
    assert_exactly_once(collector, expected)
    # readmitted: the next start asks once, gets a token and delivers what was kept
    assert collector.admin("POST", f"/v1/admin/devices/{DEVICE}/readmit").status_code == 200
    again = uploader(spool, collector.url)
    try:
        wait_until(lambda: drained(spool), 30, "the kept chunk to be delivered")
    finally:
        again.stop(5)
    assert again.status()["revoked"] is None and again.enrollments == 0
    assert not (spool / "state" / "upload-revoked.json").exists()
    assert_exactly_once(collector, [*expected, 10_000])


def test_ack_with_another_digest_keeps_the_chunk(
    collector: CollectorProc, proxy: FaultProxy, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=1, per_chunk=10)
    up = uploader(spool, proxy.url)
    try:
        wait_until(lambda: drained(spool), 30, "the spool to drain")
        session = "20261127T070000Z-0000f00d"
        write_chunk(spool / "sessions" / session, session, 0, [{"k": "kd", "t": 1, "n": 99}])
        proxy.plan.extend(["status:200", "status:201"])
        up.wake()
        wait_until(lambda: len(proxy.log) >= 3, 10, "the injected acks")
        wait_until(lambda: drained(spool), 30, "the chunk to be delivered for real")
    finally:
        up.stop(5)
    assert "does not match" in str(up.status()["last_error"])
    assert_exactly_once(collector, [*expected, 99])


def test_no_enroll_secret_keeps_everything(collector: CollectorProc, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    make_spool(spool, sessions=1, chunks=1, per_chunk=5)
    up = uploader(spool, collector.url, enroll_secret="")
    try:
        wait_until(lambda: up.status()["last_error"], 10, "an error")
    finally:
        up.stop(5)
    assert "enroll_secret is not set" in str(up.status()["last_error"])
    assert len(pending_chunks(spool)) == 1
    wrong = uploader(spool, collector.url, enroll_secret="not-the-secret")
    try:
        wait_until(lambda: "HTTP 401" in str(wrong.status()["last_error"]), 10, "a 401")
    finally:
        wrong.stop(5)
    assert "enroll refused: HTTP 401" in str(wrong.status()["last_error"])
    assert len(pending_chunks(spool)) == 1 and collector.chunk_count() == 0


def approve(spool: Path, session: str, seq: int, sha: str | None = None) -> None:
    folder = spool / "sessions" / session
    manifest = json.loads((folder / f"{seq:06d}.manifest.json").read_text())
    marker = {"format": "deskcorder-approval", "format_version": 1, "session": session}
    marker.update({"seq": seq, "sha256": sha or manifest["sha256"], "utc": "2026-11-27T04:00:00Z"})
    (folder / f"{seq:06d}.approved.json").write_text(json.dumps(marker))


def test_review_policy_uploads_only_approved_chunks(
    collector: CollectorProc, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    make_spool(spool, sessions=1, chunks=3, per_chunk=5)
    (session,) = [p.name for p in (spool / "sessions").iterdir()]
    approve(spool, session, 1)
    approve(spool, session, 2, sha="0" * 64)  # approved before the chunk changed: not valid
    up = uploader(spool, collector.url, review=True)
    try:
        wait_until(lambda: up.status()["chunks_uploaded"] == 1, 20, "the approved chunk")
        status = up.status()
        assert status["chunks_pending"] == 2 and status["chunks_awaiting_review"] == 2
        assert sorted(collector.records(session)) == [1]
        assert not (spool / "sessions" / session / "000001.approved.json").exists()
        approve(spool, session, 0)
        up.wake()
        wait_until(lambda: up.status()["chunks_uploaded"] == 2, 20, "the newly approved chunk")
    finally:
        up.stop(5)
    assert sorted(collector.records(session)) == [0, 1]
    assert [p.seq for p in pending_chunks(spool)] == [2]


def test_consent_receipts_are_sent_once_and_kept_locally(
    collector: CollectorProc, proxy: FaultProxy, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=1, per_chunk=5)
    folder = spool / "state" / "consent"
    folder.mkdir(parents=True)
    for n, action in enumerate(["withdraw", "accept"]):  # the latest (accept) decides
        receipt = {
            "format": "deskcorder-consent",
            "format_version": 1,
            "action": action,
            "notice_version": "1",
            "user": USER,
            "device": DEVICE,
            "utc": f"2026-11-27T04:0{n}:00.000000Z",
        }
        (folder / f"2026112704{n}000-{action}.json").write_text(json.dumps(receipt))
    # enrollment passes, the first receipt's reply is lost after the collector stored it
    proxy.plan.extend(["pass", "pass", "drop_reply"])
    up = uploader(spool, proxy.url)
    try:
        wait_until(lambda: drained(spool) and up.receipts_sent == 2, 20, "receipts and chunk")
    finally:
        up.stop(5)
    assert_exactly_once(collector, expected)
    export = collector.admin("GET", f"/v1/admin/users/{USER}/export").text.splitlines()
    receipts = [json.loads(line)["receipt"] for line in export if line.startswith('{"receipt"')]
    assert [r["receipt"]["action"] for r in receipts] == ["withdraw", "accept"]
    assert len(list(folder.glob("*.json"))) == 2  # receipts stay: they are the consent state
    ledger = json.loads((spool / "state" / "upload-receipts.json").read_text())
    assert len(ledger) == 2


def test_blob_sweep_removes_only_old_unreferenced_blobs(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    make_spool(spool, sessions=1, chunks=1, per_chunk=2, blobs=True)
    (referenced,) = [p for p in (spool / "blobs").rglob("*") if p.is_file()]
    orphans = []
    for n in range(2):
        blob = spool / "blobs" / "ab" / (f"ab{n}" + "0" * 61)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(b"screenshot of a chunk the quota dropped")
        orphans.append(blob)
    old = time.time() - 1000
    for path in (referenced, orphans[0]):
        os.utime(path, (old, old))
    up = Uploader(Upload(endpoint="http://127.0.0.1:9", enroll_secret=ENROLL), spool)
    up._sweep_blobs(now=time.time())  # standalone: no agent writes blobs, nothing swept
    assert all(p.exists() for p in (referenced, *orphans))
    up.blob_sweep_age = 600.0
    up._sweep_blobs(now=time.time())
    assert referenced.exists()  # a pending chunk still names it
    assert not orphans[0].exists()  # old and unreferenced
    assert orphans[1].exists()  # too young: may belong to the open chunk
    assert up.blobs_swept == 1


def test_one_fleet_instance_sigkilled_mid_stream_and_restarted(
    fleet: FleetTarget, tmp_path: Path
) -> None:
    """Three instances behind the round-robin proxy; one is SIGKILLed while chunks flow (the
    PUTs it holds get no answer, their retries go to the others) and comes back: every record
    arrives exactly once, and the bucket holds exactly the acknowledged chunks."""
    cluster = FleetCluster(tmp_path / "fleet", fleet).start()
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=3, chunks=12, per_chunk=40, pad=400, blobs=True)
    victim = cluster.instances[1]
    up = uploader(spool, cluster.url, max_kbps=900)
    try:
        wait_until(lambda: cluster.proxy.served[victim.port] >= 6, 30, "the victim to serve")
        victim.kill()
        served = sum(cluster.proxy.served.values())
        wait_until(lambda: sum(cluster.proxy.served.values()) >= served + 6, 30, "more uploads")
        assert not drained(spool)  # it was killed mid-stream
        victim.start()
        wait_until(lambda: drained(spool), 90, "the spool to drain")
        assert cluster.proxy.served[victim.port] > 6  # back in the rotation
        assert_exactly_once(cluster, expected)
        assert_spool_clean(spool)
        indexed = {
            chunk_key(info["session"], c["seq"], c["sha256"])
            for info in cluster.admin("GET", "/v1/admin/sessions").json()["sessions"]
            for c in cluster.admin("GET", f"/v1/admin/sessions/{info['session']}").json()[
                "chunk_list"
            ]
        }
        assert len(indexed) == 36
        # no object without its row, nor the reverse
        assert set(fleet.object_keys("chunks/")) == indexed
    finally:
        up.stop(5)
        cluster.stop()


def test_uploads_wait_while_held_and_go_when_released(
    collector: CollectorProc, tmp_path: Path
) -> None:
    """A metered network (or a low battery) holds uploads; nothing is sent meanwhile."""
    spool = tmp_path / "spool"
    expected = make_spool(spool, sessions=1, chunks=3, per_chunk=10)
    held: list[str | None] = ["metered network"]
    install_key(spool)
    up = Uploader(Upload(endpoint=collector.url, enroll_secret=ENROLL), spool, claims=TEST_CLAIMS)
    up.hold = lambda: held[0]
    up.start()
    try:
        wait_until(lambda: up.state == "waiting: metered network", 10, "the uploader waiting")
        assert all_ns(collector) == [] and len(pending_chunks(spool)) == 3
        held[0] = None
        up.wake()  # what a change of conditions does
        wait_until(lambda: drained(spool), 30, "the spool to drain")
    finally:
        up.stop(5)
    assert_exactly_once(collector, expected)
