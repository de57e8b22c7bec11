"""Several fleet instances on one bucket and one database: idempotency, revocation, erasure.

Each ``Store`` here is an instance of its own (its own connection pool, its
own pipeline threads), as two collector processes would be; SeaweedFS and
PostgreSQL are real.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.collector.backends.fleet import S3Objects, blob_key, chunk_key
from deskcorder.collector.base import Job, PutResult, Rejected
from deskcorder.collector.store import Store
from tests.collector.helpers import DEVICE, MACHINE, USER, key_no, register, write_chunk
from tests.services import FleetTarget

SESSION = "20261127T060000Z-0fleet00"


@pytest.fixture
def pair(fleet: FleetTarget) -> Iterator[tuple[Store, Store]]:
    a, b = fleet.open(), fleet.open()
    register(a)
    yield a, b
    a.close()
    b.close()


def chunk(tmp: Path, seq: int, tag: str, *, session: str = SESSION, **kw: Any) -> tuple[bytes, str]:
    folder = tmp / f"src-{session}-{seq}-{tag}"
    records: list[dict[str, Any]] = [{"k": "kd", "t": i, "tag": tag} for i in range(30)]
    records += kw.get("extra", [])
    manifest = write_chunk(folder, session, seq, records, user=kw.get("user", USER))
    return (folder / f"{seq:06d}.jsonl.zst").read_bytes(), manifest.sha256


def put(st: Store, seq: int, data: bytes, sha: str, session: str = SESSION) -> Any:
    body = st.new_body()
    body.write(data)
    try:
        return st.put_chunk_claimed(DEVICE, session, seq, sha, body)
    except Rejected as exc:
        return exc


def objects(st: Store) -> S3Objects:
    assert isinstance(st.objects, S3Objects)
    return st.objects


def test_one_chunk_put_to_two_instances_at_once_is_stored_once(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    """Same seq: half the PUTs one body, half another, through both instances at once."""
    a, b = pair
    one, sha_one = chunk(tmp_path, 3, "one")
    two, sha_two = chunk(tmp_path, 3, "two")
    start = threading.Barrier(8)

    def send(i: int) -> Any:
        data, sha = (one, sha_one) if i % 2 else (two, sha_two)
        start.wait()
        return put((a, b)[i // 2 % 2], 3, data, sha)

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(send, range(8)))
    created = [r for r in results if isinstance(r, PutResult) and r.created]
    assert len(created) == 1, results
    winner = created[0].sha256
    for r in results:
        if isinstance(r, PutResult):
            assert r.sha256 == winner
        else:
            assert isinstance(r, Rejected) and r.status == 409, r
    assert a.chunk_digest(SESSION, 3) == b.chunk_digest(SESSION, 3) == winner
    stored = a.read_chunk(SESSION, 3)
    assert stored is not None and hashlib.sha256(stored).hexdigest() == winner
    # the losing body's object was deleted: the bucket holds the acknowledged one only
    assert objects(a).list_keys(f"chunks/{SESSION}/") == [chunk_key(SESSION, 3, winner)]


def test_a_revocation_on_one_instance_is_refused_by_the_other_at_once(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    a, b = pair
    key = key_no(5)
    token = register(a, key)
    found = b.auth(token)
    assert found is not None and found.device == key.device
    assert a.revoke(key.device, "admin")
    assert b.auth(token) is None  # no cache in the index: the very next look-up


def test_a_chunk_validated_before_a_revocation_is_refused_at_commit(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    """The token was checked when the PUT began; the revocation lands before its commit."""
    a, b = pair
    data, sha = chunk(tmp_path, 0, "late")
    job = staged(b, 0, data, sha)
    assert a.revoke(DEVICE, "admin")
    b.commit_chunks([job])
    assert isinstance(job.error, Rejected) and job.error.status == 403
    assert job.error.code == "device_revoked"
    assert a.chunk_digest(SESSION, 0) is None
    assert objects(a).list_keys(f"chunks/{SESSION}/") == []  # its object went with it


def staged(st: Store, seq: int, data: bytes, sha: str, session: str = SESSION) -> Job:
    """A chunk PUT validated and its object written, not committed (a validator's work)."""
    body = st.new_body()
    body.write(data)
    job = Job(DEVICE, session, seq, sha, body, lambda _jobs: None, USER, MACHINE)
    assert st.prepare_chunk(job) is False
    return job


def test_an_erasure_between_a_puts_object_and_its_row_never_loses_the_object(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    """B wrote chunk 1's object; A erases the user (deleting every object of the session,
    chunk 1's included); B commits: it sees the purge, writes the object again, then the row."""
    a, b = pair
    first, sha0 = chunk(tmp_path, 0, "x")
    assert put(a, 0, first, sha0) == PutResult(sha0, created=True)
    data, sha1 = chunk(tmp_path, 1, "y")
    job = staged(b, 1, data, sha1)
    assert chunk_key(SESSION, 1, sha1) in objects(a).list_keys(f"chunks/{SESSION}/")
    erased = a.erase_user(USER)
    assert erased == {"sessions": 1, "chunks": 1, "blobs": 0, "receipts": 0}
    assert objects(a).list_keys(f"chunks/{SESSION}/") == []
    b.commit_chunks([job])
    assert job.result == PutResult(sha1, created=True)
    assert a.read_chunk(SESSION, 1) == data  # acknowledged, so its bytes are there
    job.body.discard()


def test_export_then_erasure_leaves_nothing_in_the_bucket_or_the_index(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    a, b = pair
    shot = b"screenshot bytes" * 100
    shot_sha = hashlib.sha256(shot).hexdigest()
    body = a.new_body()
    body.write(shot)
    assert a.put_blob(DEVICE, shot_sha, body) == PutResult(shot_sha, created=True)
    assert b.has_blob(DEVICE, shot_sha) and not b.has_blob(key_no(6).device, shot_sha)
    sessions = [SESSION, "20261127T070000Z-0fleet01"]
    for n, session in enumerate(sessions):
        extra = [{"k": "shot", "t": 99, "sha256": shot_sha}] if n == 0 else []
        data, sha = chunk(tmp_path, 0, "e", session=session, extra=extra)
        assert put((a, b)[n], 0, data, sha, session=session).created
    someone = key_no(6)  # another person's device
    register(a, someone, login="someone-else")
    other_session = "20261127T080000Z-0fleet02"
    folder = tmp_path / "other"
    manifest = write_chunk(
        folder, other_session, 0, [{"k": "kd", "t": 1}], device=someone.device, user=None
    )
    body = a.new_body()
    body.write((folder / "000000.jsonl.zst").read_bytes())
    assert a.put_chunk_claimed(someone.device, other_session, 0, manifest.sha256, body).created
    receipt = {"user": USER, "notice_version": "1", "action": "accept"}
    assert a.add_receipt(DEVICE, USER, receipt)[1] is True
    assert b.add_receipt(DEVICE, USER, receipt)[1] is False  # the same receipt, kept once
    lines = [json.loads(x) for x in b"".join(b.export_user(USER)).splitlines()]
    assert [x["receipt"]["receipt"] for x in lines if "receipt" in x] == [receipt]
    summaries = [x["session"] for x in lines if isinstance(x.get("session"), dict)]
    assert [s["session"] for s in summaries] == sessions
    assert sum(1 for x in lines if x.get("tag") == "e") == 60
    assert b.erase_user(USER) == {"sessions": 2, "chunks": 2, "blobs": 1, "receipts": 1}
    assert a.sessions(USER) == [] and a.receipts(USER) == []
    keys = objects(a).list_keys("")
    assert not [k for k in keys if any(s in k for s in sessions)]
    assert blob_key(shot_sha) not in keys
    assert [s["session"] for s in a.sessions()] == ["20261127T080000Z-0fleet02"]  # others stay
    assert a.counts()["blobs"] == 0


def test_group_commit_across_many_concurrent_puts(
    pair: tuple[Store, Store], tmp_path: Path
) -> None:
    a, _ = pair
    bodies = [chunk(tmp_path, seq, "g") for seq in range(24)]
    batches0 = a.ingest.batches

    async def main() -> list[PutResult]:
        async def one(seq: int, data: bytes, sha: str) -> PutResult:
            body = a.new_body()
            body.write(data)
            return await a.ingest.put_async(
                DEVICE, SESSION, seq, sha, body, user=USER, machine=MACHINE
            )

        return await asyncio.gather(*(one(seq, *b) for seq, b in enumerate(bodies)))

    assert all(r.created for r in asyncio.run(main()))
    assert a.ingest.batches - batches0 < 24
    assert len(objects(a).list_keys(f"chunks/{SESSION}/")) == 24
