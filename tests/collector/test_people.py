"""Data-subject requests by person, named admin tokens, the audit log and rate limits.

Against a real collector on loopback; `deskcorder collector person` runs as the
real CLI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deskcorder.collector.identities import derive
from tests.collector.helpers import (
    ADMIN,
    ENROLL,
    PSEUDONYM_KEY,
    CollectorProc,
    enroll_body,
    key_no,
    write_chunk,
)
from tests.conftest import Cli

KEY = PSEUDONYM_KEY.encode()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProc]:
    proc = CollectorProc(
        tmp_path_factory.mktemp("people"), None, "--enroll-per-minute", "600"
    ).start()
    yield proc
    proc.stop()


def upload(
    collector: CollectorProc, tmp: Path, n: int, login: str, machine: str, session: str
) -> str:
    """Enroll key ``n`` as ``login`` on ``machine``; upload one chunk with a screenshot."""
    key = key_no(n)
    claims = {"mode": "pseudonymous", "login": login, "machine_id": machine}
    token = collector.enroll(key, claims)
    auth = {"Authorization": f"Bearer {token}"}
    shot = f"screenshot of {login} on {machine}".encode()
    sha = hashlib.sha256(shot).hexdigest()
    assert httpx.put(f"{collector.url}/v1/blobs/{sha}", content=shot, headers=auth).is_success
    records = [{"k": "kd", "t": 1}, {"k": "shot", "t": 2, "sha256": sha}]
    user = derive(KEY, login, machine).user
    write_chunk(tmp / session, session, 0, records, device=key.device, user=user)
    data = (tmp / session / "000000.jsonl.zst").read_bytes()
    resp = httpx.put(
        f"{collector.url}/v1/sessions/{session}/chunks/0",
        content=data,
        headers={**auth, "X-Deskcorder-SHA256": hashlib.sha256(data).hexdigest()},
    )
    assert resp.status_code == 201, resp.text
    return key.device


def test_person_lists_exports_and_erases_a_login_on_every_machine(
    collector: CollectorProc, cli: Cli, tmp_path: Path
) -> None:
    a = upload(collector, tmp_path, 20, "Alice", "machine-one", "20261127T100000Z-0000a001")
    b = upload(collector, tmp_path, 21, "alice", "machine-two", "20261127T100000Z-0000a002")
    bob = upload(collector, tmp_path, 22, "bob", "machine-one", "20261127T100000Z-0000b001")
    token_file = tmp_path / "admin"
    token_file.write_text(ADMIN + "\n")
    base = ["collector", "person", "alice", "--url", collector.url]
    done = cli.run(*base, "--admin-token-file", str(token_file))
    assert done.returncode == 0, done.stderr
    person = derive(KEY, "alice", "x").person
    assert done.stdout.startswith(f"person {person}: 2 device(s)")
    for device, machine in ((a, "machine-one"), (b, "machine-two")):
        assert device in done.stdout and derive(KEY, "x", machine).machine in done.stdout
    assert bob not in done.stdout
    # the login is not stored anywhere in the index
    with sqlite3.connect(collector.data / "index.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    assert "alice" not in dump.lower() and "machine-one" not in dump
    export = tmp_path / "alice.jsonl"
    done = cli.run(*base, "--admin-token-file", str(token_file), "--export", str(export))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    sessions = {
        line["session"]["session"] for line in lines if isinstance(line.get("session"), dict)
    }
    assert sessions == {"20261127T100000Z-0000a001", "20261127T100000Z-0000a002"}
    shots = [base64.b64decode(line["blob"]["base64"]) for line in lines if "blob" in line]
    assert sorted(shots) == [
        b"screenshot of Alice on machine-one",
        b"screenshot of alice on machine-two",
    ]
    done = cli.run(*base, "--admin-token-file", str(token_file), "--erase", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["erased"]["sessions"] == 2
    left = collector.admin("GET", "/v1/admin/sessions").json()["sessions"]
    assert [s["device"] for s in left] == [bob]
    audit = collector.admin("GET", "/v1/admin/audit").json()["entries"]
    done_actions = [(e["action"], e["target"]) for e in audit]
    assert ("person_lookup", person) in done_actions
    assert ("export_person", person) in done_actions
    erased = [e for e in audit if e["action"] == "erase_person"]
    assert erased[0]["actor"] == "admin:root" and erased[0]["detail"]["sessions"] == 2
    # a wrong token: a one-line error, exit 1
    token_file.write_text("x" * 20 + "\n")
    refused = cli.run(*base, "--admin-token-file", str(token_file))
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr


def test_named_admin_tokens_act_under_their_name_until_revoked(
    collector: CollectorProc,
) -> None:
    made = collector.admin("POST", "/v1/admin/tokens", json={"name": "carol"})
    assert made.status_code == 201
    carol = {"Authorization": f"Bearer {made.json()['token']}"}
    assert collector.admin("POST", "/v1/admin/tokens", json={"name": "carol"}).status_code == 409
    assert collector.admin("POST", "/v1/admin/tokens", json={"name": "root"}).status_code == 400
    device = upload(
        collector, Path(collector.root), 23, "dave", "machine-three", "20261127T100000Z-0000d001"
    )
    url = f"{collector.url}/v1/admin/devices/{device}/revoke"
    assert httpx.post(url, headers=carol).status_code == 200
    listed = collector.admin("GET", "/v1/admin/tokens").json()["tokens"]
    assert [(t["name"], t["created_by"], t["revoked"]) for t in listed] == [
        ("carol", "admin:root", None)
    ]
    assert "token" not in listed[0]
    assert collector.admin("DELETE", "/v1/admin/tokens/carol").status_code == 200
    assert httpx.get(f"{collector.url}/v1/admin/sessions", headers=carol).status_code == 401
    entries = collector.admin("GET", "/v1/admin/audit").json()["entries"]
    assert ("admin:carol", "revoke", device) in [
        (e["actor"], e["action"], e["target"]) for e in entries
    ]
    # the log is append-only, in the index itself
    with sqlite3.connect(collector.data / "index.sqlite3") as db:
        for statement in ("DELETE FROM audit", "UPDATE audit SET actor='nobody'"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)


def test_enrollment_is_rate_limited_per_address(tmp_path: Path) -> None:
    proc = CollectorProc(tmp_path, None, "--enroll-per-minute", "3").start()
    try:
        codes = [httpx.post(f"{proc.url}/v1/auth/challenge", json={}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = httpx.post(
            f"{proc.url}/v1/enroll",
            json={"public_key": "x"},
            headers={"Authorization": f"Bearer {ENROLL}"},
        )
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["code"] == "rate_limited"
    finally:
        proc.stop()


def test_device_writes_are_rate_limited_per_device(tmp_path: Path) -> None:
    proc = CollectorProc(tmp_path, None, "--device-writes-per-s", "1").start()
    try:
        tokens = [proc.enroll(key_no(n)) for n in (30, 31)]
        blob = b"one screenshot"
        url = f"{proc.url}/v1/blobs/{hashlib.sha256(blob).hexdigest()}"

        def put(token: str) -> httpx.Response:
            return httpx.put(url, content=blob, headers={"Authorization": f"Bearer {token}"})

        first = [put(tokens[0]).status_code for _ in range(12)]  # burst: 10 at 1/s
        assert first[:10] == [201] + [200] * 9 and first[-1] == 429
        assert put(tokens[1]).status_code == 201  # another device has its own budget
        assert int(put(tokens[0]).headers["retry-after"]) >= 1
    finally:
        proc.stop()


def test_a_signed_enrollment_body_cannot_be_replayed_for_another_device(
    collector: CollectorProc,
) -> None:
    body = enroll_body(collector.url, key_no(24))
    body["public_key"] = enroll_body(collector.url, key_no(25))["public_key"]
    resp = httpx.post(
        f"{collector.url}/v1/enroll", json=body, headers={"Authorization": f"Bearer {ENROLL}"}
    )
    assert resp.status_code == 401 and resp.json()["code"] == "bad_signature"


def test_named_mode_when_allowed_and_a_second_device_for_one_user_is_flagged(
    tmp_path: Path,
) -> None:
    proc = CollectorProc(tmp_path, None, "--allow-named").start()
    try:
        named = {"mode": "named", "login": "erin", "machine_id": "m-id", "hostname": "ws-17"}
        proc.enroll(key_no(40), named)
        claims = {"mode": "pseudonymous", "login": "frank", "machine_id": "m-id"}
        proc.enroll(key_no(41), claims)
        proc.enroll(key_no(42), claims)  # a reinstall that lost its key, or an impostor
        devices = {d["device"]: d for d in proc.admin("GET", "/v1/admin/devices").json()["devices"]}
        assert (devices[key_no(40).device]["user"], devices[key_no(40).device]["machine"]) == (
            "erin",
            "ws-17",
        )
        assert devices[key_no(41).device]["user"] == devices[key_no(42).device]["user"]
        entries = proc.admin("GET", "/v1/admin/audit").json()["entries"]
        (shared,) = [e for e in entries if e["action"] == "identity_shared"]
        assert shared["target"] == key_no(42).device and shared["detail"]["other_devices"] == 1
    finally:
        proc.stop()
