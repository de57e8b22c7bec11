"""The real agent (fake backend) uploading to a real collector; SIGKILL and restart."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.storage.chunk import read_chunk
from tests.collector.helpers import ENROLL, CollectorProc, wait_until
from tests.conftest import Cli


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProc]:
    proc = CollectorProc(tmp_path).start()
    yield proc
    proc.stop()


def write_policy(path: Path, endpoint: str) -> Path:
    path.write_text(
        f"""
[capture]
mouse_move_hz = 0

[upload]
endpoint = "{endpoint}"
enroll_secret = "{ENROLL}"
backoff_max_s = 0.2
timeout_s = 2.0

[spool]
chunk_max_age_s = 1
"""
    )
    return path


def local_chunks(folder: Path) -> dict[int, list[dict[str, Any]]]:
    """Sealed chunks and the salvageable lines of an open one (what a restart keeps)."""
    out: dict[int, list[dict[str, Any]]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("[0-9]*.jsonl.zst*")):
        seq = int(path.name.split(".", 1)[0])
        decoded = read_chunk(path, tolerant=True)
        out[seq] = decoded.records
    return out


def stop(proc: Any) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()


def test_agent_sigkilled_mid_upload_restarts_and_delivers_exactly_once(
    cli: Cli, collector: CollectorProc, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    policy = write_policy(tmp_path / "policy.toml", collector.url)
    agent = cli.start(
        "run", "--backend", "fake", "--spool", str(spool), "--policy", str(policy),
        DESKCORDER_FAKE_REPEAT="1000", DESKCORDER_FAKE_SPEED="4",
    )  # fmt: skip
    try:
        wait_until(lambda: collector.chunk_count() >= 2, 30, "chunks at the collector")
        status = json.loads(cli.run("status", "--json").stdout)
        upload = status["uploader"]
        assert upload["endpoint"] == collector.url and upload["enrolled"] is True
        assert upload["chunks_uploaded"] >= 1 and upload["last_success"]
        text = cli.run("status").stdout
        assert "upload" in text and "chunks pending" in text
        # kill while a chunk is open (it must be recovered and uploaded after the restart);
        # chunks rotate every second, so kill right after seeing one (not after status calls)
        wait_until(lambda: list(spool.glob("sessions/*/*.part")), 10, "an open chunk")
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait(10)
        assert list(spool.glob("sessions/*/*.part"))
    finally:
        stop(agent)
    (session,) = [p.name for p in (spool / "sessions").iterdir()]
    before: dict[int, list[dict[str, Any]]] = collector.records(session)
    local = local_chunks(spool / "sessions" / session)
    for seq, records in local.items():
        if seq in before:  # stored but not yet deleted when the agent died
            assert before[seq] == records
    expected = {**local, **before}
    assert expected and sorted(expected) == list(range(len(expected)))

    again = cli.run(
        "run", "--backend", "fake", "--spool", str(spool), "--policy", str(policy),
        "--duration", "2.5", DESKCORDER_FAKE_SPEED="4",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    wait_until(lambda: not (spool / "sessions" / session).exists(), 10, "the old session to go")
    after = collector.records(session)
    assert sorted(after) == sorted(expected)
    recovered = [s for s, recs in after.items() if recs[-1].get("cause") == "crash_recovery"]
    assert len(recovered) == 1, "the chunk open at the kill was not recovered and uploaded"
    for seq, records in expected.items():
        if records == after[seq]:
            continue
        # the chunk that was open at the kill: recovered lines + a gap record
        assert after[seq][:-1] == records
        assert after[seq][-1]["k"] == "gap" and after[seq][-1]["cause"] == "crash_recovery"
    # the second session: what the collector has and what is left locally are disjoint
    # and together complete (the last chunk is sealed after the uploader stopped)
    (second,) = [p.name for p in (spool / "sessions").iterdir()]
    stored = collector.records(second)
    left = local_chunks(spool / "sessions" / second)
    assert not set(stored) & set(left)
    assert sorted({*stored, *left}) == list(range(len(stored) + len(left)))
    assert not list((spool / "rejected").rglob("*"))


def test_full_spool_stops_capture_until_uploads_free_space(cli: Cli, tmp_path: Path) -> None:
    from tests.collector.helpers import DEVICE, free_port, install_key, write_chunk

    device = DEVICE
    spool = tmp_path / "spool"
    install_key(spool)  # the agent's key (it would make its own at the first start)
    # 1.3 MiB of sealed, unsent chunks from an earlier session: over the 1 MiB quota
    session = "20261127T000000Z-00000fee"
    for seq in range(12):
        records = [{"k": "kd", "t": i, "pad": os.urandom(500).hex()} for i in range(220)]
        write_chunk(
            spool / "sessions" / session, session, seq, records, device=device, user=None
        )  # written before the first enrollment: no pseudonyms yet
    port = free_port()  # nothing listens there yet: uploads fail and retry
    policy = write_policy(tmp_path / "policy.toml", f"http://127.0.0.1:{port}")
    quota = '[spool]\nquota_mb = 1\non_full = "stop"'
    policy.write_text(policy.read_text().replace("[spool]", quota))
    agent = cli.start(
        "run", "--backend", "fake", "--spool", str(spool), "--policy", str(policy),
        DESKCORDER_FAKE_REPEAT="1000", DESKCORDER_FAKE_SPEED="4",
    )  # fmt: skip
    collector = CollectorProc(tmp_path, port)
    try:

        def status() -> dict[str, Any]:
            done = cli.run("status", "--json")
            return json.loads(done.stdout) if done.returncode == 0 else {}

        blocked = wait_until(lambda: status().get("blocked") == "quota", 20, "quota block")
        assert blocked
        upload = status()["uploader"]
        # the whole backlog is still here and pending (the agent's own session, which seals
        # a chunk every second under this policy, may add pending chunks of its own)
        assert sorted(local_chunks(spool / "sessions" / session)) == list(range(12))
        assert upload["chunks_pending"] >= 12 and "ConnectError" in str(upload["last_error"])
        assert "not recording: spool full" in cli.run("status").stdout
        collector.start()
        wait_until(lambda: status().get("recording") is True, 30, "recording again")
        # capture resumes below 90 % of the quota; the rest of the backlog follows
        gone = lambda: not (spool / "sessions" / session).exists()  # noqa: E731
        wait_until(gone, 30, "the backlog to be uploaded")
        assert len(collector.records(session)) == 12
    finally:
        stop(agent)
        collector.stop()
