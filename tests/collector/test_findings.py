"""Issue 13's findings, as an employee reading the machine policy would reproduce them.

Real agents (``deskcorder run`` with the fake backend) upload to a real
collector on loopback; the attacker has exactly what the world-readable
machine policy holds. Each of these failed on the collector and agent as they
were (enroll secret = identity; the agent re-enrolled by itself on a 401; one
device pseudonym per machine; the org key on every workstation).
"""

from __future__ import annotations

import getpass
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.attacker import (
    enroll_as,
    forged_chunk,
    put_chunk,
    recompute_user_pseudonym,
)
from tests.collector.helpers import ENROLL, CollectorProc, wait_until
from tests.conftest import Cli


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProc]:
    proc = CollectorProc(tmp_path).start()
    yield proc
    proc.stop()


def machine_policy(path: Path, endpoint: str) -> Path:
    """A machine policy as IT would install it (world-readable by every user)."""
    path.write_text(
        f"""
[identity]
org_key = "test-org-key-0123456789"

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
    path.chmod(0o644)
    return path


def start_agent(cli: Cli, spool: Path, policy: Path) -> subprocess.Popen[str]:
    return cli.start(
        "run", "--backend", "fake", "--spool", str(spool), "--policy", str(policy),
        DESKCORDER_FAKE_REPEAT="1000", DESKCORDER_FAKE_SPEED="4",
    )  # fmt: skip


def stop_agent(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(20)
    assert proc.stderr is not None and proc.stdout is not None
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return err


def sessions(collector: CollectorProc) -> list[dict[str, Any]]:
    resp = collector.admin("GET", "/v1/admin/sessions")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["sessions"])


def stored(collector: CollectorProc, device: str) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for info in sessions(collector):
        if info["device"] == device:
            detail = collector.admin("GET", f"/v1/admin/sessions/{info['session']}").json()
            out |= {(info["session"], c["seq"]) for c in detail["chunk_list"]}
    return out


def requests_with(collector: CollectorProc, status: int, route: str | None = None) -> int:
    total = 0
    for line in collector.admin("GET", "/metrics").text.splitlines():
        ours = line.startswith("deskcorder_collector_requests_total{") and (
            f'status="{status}"' in line and (route is None or f'route="{route}"' in line)
        )
        if ours:
            total += int(line.rsplit(" ", 1)[1])
    return total


def status(cli: Cli) -> dict[str, Any]:
    done = cli.run("status", "--json")
    return json.loads(done.stdout) if done.returncode == 0 else {}


def test_revocation_holds(cli: Cli, collector: CollectorProc, tmp_path: Path) -> None:
    """Finding 1: after a revoke the device (or anyone with the secret) got a working token."""
    spool = tmp_path / "spool"
    policy = machine_policy(tmp_path / "policy.toml", collector.url)
    agent = start_agent(cli, spool, policy)
    try:
        wait_until(lambda: sessions(collector), 30, "a first chunk at the collector")
        device = sessions(collector)[0]["device"]
        assert collector.admin("POST", f"/v1/admin/devices/{device}/revoke").status_code == 200
        at_revoke = stored(collector, device)
        # the agent notices, stops uploading and says so (it never enrolls again by itself)
        wait_until(
            lambda: status(cli).get("uploader", {}).get("state") == "revoked", 30, "revoked state"
        )
        sealed = status(cli)["chunks_sealed"]
        wait_until(lambda: status(cli)["chunks_sealed"] >= sealed + 2, 20, "two more chunks")
        text = cli.run("status").stdout
        assert "revoked" in text and "kept" in text, text
        auth_calls = requests_with(collector, 201, "enroll") + requests_with(
            collector, 200, "token"
        )
        wait_until(lambda: status(cli)["chunks_sealed"] >= sealed + 4, 20, "two more chunks")
        again = requests_with(collector, 201, "enroll") + requests_with(collector, 200, "token")
        assert again == auth_calls, "the revoked agent keeps asking for tokens"
        # the enroll secret alone gets nobody back in as this device
        for token in enroll_as(collector.url, ENROLL, device):
            data, _ = forged_chunk(tmp_path / "forged", "20261127T000000Z-0000dead", 0, device)
            assert put_chunk(collector.url, token, "20261127T000000Z-0000dead", 0, data) >= 400
        assert stored(collector, device) == at_revoke, "a chunk arrived after the revocation"
        pending = status(cli)["uploader"]["chunks_pending"]
        assert pending >= 4  # kept locally
    finally:
        stop_agent(agent)
    # an administrator readmits the device: its next start delivers what it kept
    assert collector.admin("POST", f"/v1/admin/devices/{device}/readmit").status_code == 200
    again_agent = start_agent(cli, spool, policy)
    try:
        wait_until(lambda: len(stored(collector, device)) > len(at_revoke) + 3, 30, "the backlog")
    finally:
        stop_agent(again_agent)


def test_stolen_enroll_secret_cannot_take_over_a_device(
    cli: Cli, collector: CollectorProc, tmp_path: Path
) -> None:
    """Finding 2: anyone with the secret could enroll as an existing device and upload as it."""
    spool = tmp_path / "spool"
    policy = machine_policy(tmp_path / "policy.toml", collector.url)
    agent = start_agent(cli, spool, policy)
    try:
        wait_until(lambda: sessions(collector), 30, "a first chunk at the collector")
        device = sessions(collector)[0]["device"]
        victim_session = sessions(collector)[0]["session"]
        tokens = enroll_as(collector.url, ENROLL, device)
        for token in tokens:  # whatever the attacker got, it does not write as the device
            for session in (victim_session, "20261127T000000Z-0000beef"):
                data, _ = forged_chunk(tmp_path / "forged", session, 900, device)
                assert put_chunk(collector.url, token, session, 900, data) not in (200, 201)
        before = len(stored(collector, device))
        wait_until(lambda: len(stored(collector, device)) >= before + 3, 30, "more uploads")
    finally:
        stop_agent(agent)
    assert requests_with(collector, 401, "chunk_put") == 0, "the real device was knocked out"
    assert all(s["device"] == device for s in sessions(collector))


def test_no_secret_in_the_policy_recomputes_a_pseudonym(
    cli: Cli, collector: CollectorProc, tmp_path: Path
) -> None:
    """Finding 4: the org key in the machine policy let any employee recompute a pseudonym."""
    spool = tmp_path / "spool"
    policy = machine_policy(tmp_path / "policy.toml", collector.url)
    agent = start_agent(cli, spool, policy)
    try:
        wait_until(lambda: sessions(collector), 30, "a first chunk at the collector")
    finally:
        stop_agent(agent)
    user = sessions(collector)[0]["user"]
    assert user.startswith("u-")
    from deskcorder.identity import machine_id

    guesses = recompute_user_pseudonym(policy.read_text(), machine_id(), getpass.getuser())
    assert user not in guesses
