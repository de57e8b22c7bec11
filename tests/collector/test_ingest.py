"""The chunk PUT pipeline (collector/ingest.py) on a real store: races, failures, batches.

These drive ``Store`` directly, on both backends: local (real files, real
SQLite) and fleet (real SeaweedFS, real PostgreSQL), with real threads. The
HTTP side is covered by test_security.py and the delivery tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.collector import body as body_mod
from deskcorder.collector.backends import local as local_mod
from deskcorder.collector.backends.local import LocalIndex, LocalObjects
from deskcorder.collector.store import Body, PutResult, Rejected, Store
from tests.collector.helpers import DEVICE, MACHINE, USER, register, write_chunk

SESSION = "20261127T050000Z-0badcafe"


@pytest.fixture(params=["local", "fleet"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "local":
        st = local_mod.open_local(tmp_path / "data")
    else:
        st = request.getfixturevalue("fleet").open()
    register(st)
    yield st
    st.close()


@pytest.fixture
def local_store(tmp_path: Path) -> Iterator[Store]:
    st = local_mod.open_local(tmp_path / "data")
    register(st)
    yield st
    st.close()


def leftovers(st: Store) -> list[str]:
    """What a PUT may leave behind and must not: temp files, objects no row names."""
    if isinstance(st.objects, LocalObjects):
        return [p.name for p in st.objects.tmp_dir.iterdir()]
    from deskcorder.collector.backends.fleet import S3Objects, chunk_key

    assert isinstance(st.objects, S3Objects)
    indexed = {
        chunk_key(s["session"], c["seq"], c["sha256"])
        for s in st.sessions()
        for c in st.index.chunks(s["session"])
    }
    spilled = [p.name for p in st.objects._tmp.iterdir()]
    return spilled + [k for k in st.objects.list_keys("chunks/") if k not in indexed]


def chunk(tmp: Path, seq: int, tag: str, n: int = 40, noise: bool = False) -> tuple[bytes, str]:
    folder = tmp / f"src-{seq}-{tag}"
    records: list[dict[str, Any]] = [{"k": "kd", "t": i, "tag": tag} for i in range(n)]
    if noise:  # incompressible, so the chunk is big
        for rec in records:
            rec["pad"] = os.urandom(16).hex()
    manifest = write_chunk(folder, SESSION, seq, records)
    return (folder / f"{seq:06d}.jsonl.zst").read_bytes(), manifest.sha256


def body_of(st: Store, data: bytes) -> Body:
    body = st.new_body()
    for i in range(0, len(data), 65536):
        body.write(data[i : i + 65536])
    return body


def put(st: Store, seq: int, data: bytes, sha: str) -> PutResult | Rejected | OSError:
    """The outcome; an OSError is what the HTTP layer answers with 503."""
    try:
        return st.put_chunk_claimed(DEVICE, SESSION, seq, sha, body_of(st, data))
    except (Rejected, OSError) as exc:
        return exc


def stored_sha(st: Store, seq: int) -> str:
    """The digest of the bytes stored (file or object) for ``seq``."""
    data = st.read_chunk(SESSION, seq)
    assert data is not None
    return hashlib.sha256(data).hexdigest()


def files(st: Store) -> LocalObjects:
    assert isinstance(st.objects, LocalObjects)
    return st.objects


def sqlite(st: Store) -> LocalIndex:
    assert isinstance(st.index, LocalIndex)
    return st.index


def test_racing_puts_of_one_chunk_store_exactly_one_version(store: Store, tmp_path: Path) -> None:
    """Same seq, two contents, many threads at once: one 201, the same digest 200, others 409.

    Before the pipeline serialised PUTs of one chunk, the loser could rename
    its file over the winner's after both passed the duplicate check.
    """
    a, sha_a = chunk(tmp_path, 7, "a")
    b, sha_b = chunk(tmp_path, 7, "b")
    results: list[PutResult | Rejected | OSError] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def worker(i: int) -> None:
        data, sha = (a, sha_a) if i % 2 else (b, sha_b)
        start.wait()
        outcome = put(store, 7, data, sha)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    created = [r for r in results if isinstance(r, PutResult) and r.created]
    assert len(created) == 1
    winner = created[0].sha256
    for r in results:
        if isinstance(r, PutResult):
            assert r.sha256 == winner
        else:
            assert isinstance(r, Rejected) and r.status == 409, r
    assert store.chunk_digest(SESSION, 7) == winner
    assert stored_sha(store, 7) == winner  # the file on disk is the acknowledged one
    assert leftovers(store) == []


def test_many_chunks_at_once_are_all_committed_in_fewer_batches(
    store: Store, tmp_path: Path
) -> None:
    bodies = [chunk(tmp_path, seq, "m") for seq in range(40)]
    batches0 = store.ingest.batches

    async def main() -> list[PutResult]:
        return await asyncio.gather(
            *(
                store.ingest.put_async(
                    DEVICE, SESSION, seq, sha, body_of(store, data), user=USER, machine=MACHINE
                )
                for seq, (data, sha) in enumerate(bodies)
            )
        )

    results = asyncio.run(main())
    assert all(r.created for r in results)
    for seq, (_, sha) in enumerate(bodies):
        assert store.chunk_digest(SESSION, seq) == sha
        assert stored_sha(store, seq) == sha
    assert store.counts()["chunks"] == 40
    assert store.ingest.batches - batches0 < 40  # group commit shared some fsyncs
    assert leftovers(store) == []


def test_a_failed_commit_answers_503_indexes_nothing_and_the_retry_works(
    local_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = local_store
    data, sha = chunk(tmp_path, 3, "f")

    def broken(path: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(local_mod, "fsync_dir", broken)
    outcome = put(store, 3, data, sha)
    assert isinstance(outcome, OSError) and outcome.errno == 5, outcome
    assert store.chunk_digest(SESSION, 3) is None  # not acknowledged, not indexed
    monkeypatch.undo()
    again = put(store, 3, data, sha)
    assert isinstance(again, PutResult) and again.created
    assert stored_sha(store, 3) == sha
    assert leftovers(store) == []


def test_an_index_error_is_a_503(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, sha = chunk(tmp_path, 4, "i")
    real = store.commit_chunks

    def failing(batch: list[Any]) -> None:
        raise store.index_errors[0]("disk I/O error")

    monkeypatch.setattr(store, "commit_chunks", failing)
    outcome = put(store, 4, data, sha)
    assert isinstance(outcome, Rejected) and outcome.status == 503, outcome
    assert "index error" in str(outcome)
    monkeypatch.setattr(store, "commit_chunks", real)
    # the retry indexes it (fleet: the object written before the failure is found, kept)
    assert put(store, 4, data, sha) == PutResult(sha, created=True)
    assert leftovers(store) == []


def test_refusals_leave_no_temp_files(store: Store, tmp_path: Path) -> None:
    data, sha = chunk(tmp_path, 5, "r")
    wrong = put(store, 5, data, "0" * 64)
    assert isinstance(wrong, Rejected) and wrong.status == 400
    torn = put(store, 5, data[:-7], hashlib.sha256(data[:-7]).hexdigest())
    assert isinstance(torn, Rejected) and torn.status == 422
    other_seq = put(store, 6, data, sha)  # header says seq 5
    assert isinstance(other_seq, Rejected) and other_seq.status == 422
    assert store.counts()["chunks"] == 0
    assert leftovers(store) == []


def test_a_cancelled_request_still_finishes_storing(store: Store, tmp_path: Path) -> None:
    """The client hung up: its chunk is stored (and its retry gets 200), not half-done."""
    data, sha = chunk(tmp_path, 9, "c")

    async def main() -> None:
        task = asyncio.ensure_future(
            store.ingest.put_async(
                DEVICE, SESSION, 9, sha, body_of(store, data), user=USER, machine=MACHINE
            )
        )
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    for _ in range(200):
        if store.chunk_digest(SESSION, 9) == sha:
            break
        threading.Event().wait(0.02)
    assert store.chunk_digest(SESSION, 9) == sha
    assert put(store, 9, data, sha) == PutResult(sha, created=False)


def test_a_body_spilled_to_disk_goes_the_same_way(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(body_mod, "SPILL_BYTES", 4096)
    data, sha = chunk(tmp_path, 11, "s", n=3000, noise=True)
    assert len(data) > 4096
    body = body_of(store, data)
    assert not isinstance(body.source(), bytes)  # really in a temp file
    result = store.put_chunk_claimed(DEVICE, SESSION, 11, sha, body)
    assert result.created and stored_sha(store, 11) == sha
    if isinstance(store.objects, LocalObjects):
        assert (os.stat(files(store).chunk_path(SESSION, 11)).st_mode & 0o777) == 0o600
    assert leftovers(store) == []


def test_screenshot_references_are_indexed(local_store: Store, tmp_path: Path) -> None:
    store = local_store
    shas = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    folder = tmp_path / "shots"
    records: list[dict[str, Any]] = [{"k": "kd", "t": 0}]
    records += [{"k": "shot", "t": i + 1, "sha256": s} for i, s in enumerate(shas)]
    manifest = write_chunk(folder, SESSION, 12, records)
    data = (folder / "000012.jsonl.zst").read_bytes()
    assert put(store, 12, data, manifest.sha256) == PutResult(manifest.sha256, created=True)
    with sqlite(store)._lock:
        rows = sqlite(store)._db.execute("SELECT sha256 FROM chunk_blobs WHERE seq=12").fetchall()
    assert sorted(r[0] for r in rows) == sorted(shas)


def test_no_statement_of_the_put_path_scans_a_table(local_store: Store, tmp_path: Path) -> None:
    """Every look-up a chunk PUT makes is an index search, so its cost does not grow
    with the number of chunks stored (a row-value ``IN (VALUES ...)`` scanned them all)."""
    store = local_store
    statements: list[str] = []
    sqlite(store)._db.set_trace_callback(statements.append)
    sqlite(store)._reader.set_trace_callback(statements.append)
    bodies = [chunk(tmp_path, seq, "q") for seq in range(8)]

    async def main() -> list[PutResult]:
        return await asyncio.gather(
            *(
                store.ingest.put_async(
                    DEVICE, SESSION, seq, sha, body_of(store, data), user=USER, machine=MACHINE
                )
                for seq, (data, sha) in enumerate(bodies)
            )
        )

    assert all(r.created for r in asyncio.run(main()))
    assert put(store, 1, *bodies[1]) == PutResult(bodies[1][1], created=False)  # look-up path
    sqlite(store)._db.set_trace_callback(None)
    sqlite(store)._reader.set_trace_callback(None)
    queries = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "INSERT"))]
    assert any("chunks" in q for q in queries)
    scans = []
    for sql in queries:
        for row in sqlite(store)._db.execute("EXPLAIN QUERY PLAN " + sql).fetchall():
            detail = str(row[-1])
            if detail.startswith("SCAN ") and not re.fullmatch(
                r"SCAN (\d+ CONSTANT ROWS|CONSTANT ROW|k)", detail
            ):
                scans.append((detail, sql[:120]))
    assert scans == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_writeback_hint_reaches_the_kernel(tmp_path: Path) -> None:
    """The validator's hint is a real ``sync_file_range`` call: taken for a written file,
    refused for a pipe (ESPIPE), so a broken binding would show here."""
    with open(tmp_path / "f", "wb") as fh:
        fh.write(os.urandom(1 << 16))
        fh.flush()
        assert body_mod.start_writeback(fh.fileno())
    read_end, write_end = os.pipe()
    try:
        assert not body_mod.start_writeback(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="the hint exists on Linux")
def test_without_sync_file_range_the_hint_is_declined(tmp_path: Path) -> None:
    with open(tmp_path / "f", "wb") as fh:
        fh.write(b"x")
        fh.flush()
        assert body_mod.start_writeback(fh.fileno()) is False
