"""`collector copy`: a local collector's data into the fleet backend, verified and resumable."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from deskcorder.collector.backends import open_local
from deskcorder.collector.backends.copy import copy_command
from deskcorder.collector.store import Store
from tests.collector.helpers import DEVICE, USER, key_no, register, write_chunk
from tests.conftest import Cli, FleetFactory
from tests.services import FleetTarget

GONE = key_no(7)  # a device revoked in the pilot


def pilot(tmp_path: Path) -> tuple[Path, str, dict[tuple[str, int], str], str]:
    """A local collector's folder: 2 sessions of 3 chunks, a screenshot, a receipt, a
    revoked device. Returns the folder, the device's token, the chunks' digests, the blob's."""
    data = tmp_path / "pilot"
    store = open_local(data)
    try:
        token = register(store)
        register(store, GONE)
        store.revoke(GONE.device, "admin")
        shot = b"a screenshot" * 50
        shot_sha = hashlib.sha256(shot).hexdigest()
        body = store.new_body()
        body.write(shot)
        store.put_blob(DEVICE, shot_sha, body)
        digests = {}
        for s in range(2):
            session = f"20261127T1{s}0000Z-0000c0py"
            for seq in range(3):
                records = [{"k": "kd", "t": i, "n": s * 100 + seq * 10 + i} for i in range(10)]
                if seq == 1:
                    records.append({"k": "shot", "t": 11, "sha256": shot_sha})
                folder = tmp_path / "src" / session
                manifest = write_chunk(folder, session, seq, records)
                body = store.new_body()
                body.write((folder / f"{seq:06d}.jsonl.zst").read_bytes())
                store.put_chunk_claimed(DEVICE, session, seq, manifest.sha256, body)
                digests[session, seq] = manifest.sha256
        store.add_receipt(DEVICE, USER, {"user": USER, "notice_version": "1", "accepted": True})
    finally:
        store.close()
    return data, token, digests, shot_sha


def same_data(fleet: Store, token: str, digests: dict[tuple[str, int], str], shot: str) -> None:
    found = fleet.auth(token)  # agents keep their tokens
    assert found is not None and found.device == DEVICE and found.user == USER
    gone = fleet.device(GONE.device)  # the revoked device stays revoked
    assert gone is not None and gone["revoked"] is not None
    for (session, seq), sha in digests.items():
        data = fleet.read_chunk(session, seq)
        assert data is not None and hashlib.sha256(data).hexdigest() == sha
    assert fleet.has_blob(DEVICE, shot)
    assert [s["chunks"] for s in fleet.sessions()] == [3, 3]
    assert len(fleet.receipts(USER)) == 1
    lines = b"".join(fleet.export_user(USER))
    assert lines.count(b'"k":"kd"') == 60 and lines.count(b'{"blob":') == 1


def test_copy_with_the_cli_then_again(cli: Cli, fleet: FleetTarget, tmp_path: Path) -> None:
    data, token, digests, shot = pilot(tmp_path)
    args = ["collector", "copy", "--from", str(data), "--to-store", fleet.store]
    args += ["--s3-endpoint", fleet.endpoint, "--to-db", fleet.db]
    done = cli.run(*args, **fleet.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("copied 6 chunks (")
    assert "1 blobs, 2 sessions, 2 devices, 1 receipts" in done.stdout
    assert "\r" not in done.stderr  # no terminal: no progress bar
    store = fleet.open()
    try:
        same_data(store, token, digests, shot)
    finally:
        store.close()
    again = cli.run(*args, **fleet.env)  # idempotent: nothing twice
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("copied 0 chunks (0.0 MB), 0 blobs, 0 sessions, 0 devices")
    assert "6 chunks were already there" in again.stdout


def test_a_damaged_file_is_reported_and_the_rerun_completes_the_copy(
    fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    data, token, digests, shot = pilot(tmp_path)
    fleet = fleet_factory()
    damaged = data / "chunks" / "20261127T110000Z-0000c0py" / "000002.jsonl.zst"
    good = damaged.read_bytes()
    damaged.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    out = io.StringIO()
    assert copy_command(data, fleet.config(), out, tty=True) == 1
    text = out.getvalue()
    assert "copied 5 chunks" in text
    assert f"problem: chunk 20261127T110000Z-0000c0py/000002: {damaged} does not match" in text
    assert "\rchunks   [" in text and "] 6/6 (" in text  # the bar, redrawn in place
    damaged.write_bytes(good)  # repaired (say, restored from a backup): copy again
    out = io.StringIO()
    assert copy_command(data, fleet.config(), out, tty=False) == 0
    assert "copied 1 chunks" in out.getvalue() and "5 chunks were already there" in out.getvalue()
    store = fleet.open()
    try:
        same_data(store, token, digests, shot)
    finally:
        store.close()


def test_copy_refuses_an_unmigrated_database_and_a_folder_that_is_not_a_collectors(
    cli: Cli, fleet_factory: FleetFactory, tmp_path: Path
) -> None:
    data, *_ = pilot(tmp_path)
    fleet = fleet_factory(migrated=False)
    args = ["--to-store", fleet.store, "--s3-endpoint", fleet.endpoint, "--to-db", fleet.db]
    done = cli.run("collector", "copy", "--from", str(data), *args, **fleet.env)
    assert done.returncode == 1 and "run 'deskcorder collector migrate" in done.stderr
    assert done.stderr.count("\n") == 1
    done = cli.run("collector", "copy", "--from", str(tmp_path), *args, **fleet.env)
    assert done.returncode == 1 and "not a collector data folder" in done.stderr
