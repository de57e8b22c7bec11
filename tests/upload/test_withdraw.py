"""`deskcorder consent withdraw` with a running agent: uploads stop, the collector erases.

A real agent (fake backend) uploads to a real collector on loopback; the
withdrawal goes through the agent's control channel as a user would send it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.helpers import ENROLL, CollectorProc, wait_until
from tests.conftest import Cli


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProc]:
    proc = CollectorProc(tmp_path).start()
    yield proc
    proc.stop()


def chunks_of(collector: CollectorProc, device: str) -> int:
    sessions = collector.admin("GET", "/v1/admin/sessions").json()["sessions"]
    return sum(int(s["chunks"]) for s in sessions if s["device"] == device)


def test_withdrawing_consent_stops_uploads_and_erases_what_was_uploaded(
    cli: Cli, collector: CollectorProc, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f"""
[capture]
mouse_move_hz = 0

[upload]
endpoint = "{collector.url}"
enroll_secret = "{ENROLL}"
backoff_max_s = 0.2

[spool]
chunk_max_age_s = 1
"""
    )
    agent = cli.start(
        "run", "--backend", "fake", "--spool", str(spool), "--policy", str(policy),
        DESKCORDER_FAKE_REPEAT="1000", DESKCORDER_FAKE_SPEED="4",
    )  # fmt: skip

    def status() -> dict[str, Any]:
        done = cli.run("status", "--json")
        return json.loads(done.stdout) if done.returncode == 0 else {}

    try:
        wait_until(
            lambda: status().get("uploader", {}).get("chunks_uploaded", 0) >= 2, 30, "uploads"
        )
        device = status()["uploader"]["device"]
        assert chunks_of(collector, device) >= 2
        shown = cli.run("inspect", "--spool", str(spool)).stdout  # the pseudonyms it was given
        assert f"Identity: device {device}" in shown and upload_user(spool) in shown
        done = cli.run("consent", "withdraw", "--spool", str(spool), "--policy", str(policy))
        assert done.returncode == 0, done.stderr
        assert "uploads stop now" in done.stdout and "erase" in done.stdout
        wait_until(lambda: status()["uploader"].get("erasure"), 30, "the collector's erasure")
        sealed = status()["chunks_sealed"]
        wait_until(lambda: status()["chunks_sealed"] >= sealed + 2, 20, "two more chunks")
        assert chunks_of(collector, device) == 0, "a chunk was uploaded after the withdrawal"
        upload = status()["uploader"]
        assert upload["consent_withdrawn"] and upload["state"] == "consent withdrawn"
        assert upload["erasure"]["erased"]["chunks"] >= 2
        text = cli.run("status").stdout
        assert "withdrew your consent" in text and "erasure  confirmed" in text
        audit = collector.admin("GET", "/v1/admin/audit").json()["entries"]
        (record,) = [e for e in audit if e["action"] == "erase_device_data"]
        assert record["actor"] == f"device:{device}" and record["target"] == device
        # the receipts stay at the collector: they are the record of consent and withdrawal
        actions = [
            json.loads(line)["receipt"]["receipt"]["action"]
            for line in collector.admin(
                "GET", f"/v1/admin/users/{upload_user(spool)}/export"
            ).text.splitlines()
            if line.startswith('{"receipt"')
        ]
        assert actions == ["withdraw"]
        # accepting again resumes uploads of what was kept
        assert cli.run("consent", "accept", "--spool", str(spool)).returncode == 0
        wait_until(lambda: chunks_of(collector, device) >= 2, 30, "uploads after consent")
    finally:
        if agent.poll() is None:
            agent.terminate()
        agent.wait(20)
        assert agent.stdout is not None and agent.stderr is not None
        agent.stdout.close()
        agent.stderr.close()


def upload_user(spool: Path) -> str:
    return str(json.loads((spool / "state" / "identity.json").read_text())["user"])
