"""The agent on a laptop: low battery and a metered network, through the fake backend's
platform seam (``DESKCORDER_FAKE_HOST``); status says what holds back and why."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from deskcorder import read_session
from tests.conftest import Cli
from tests.xserver import wait_for

POLICY = """\
[identity]
org_key = "test-org-key-0123456789"

[upload]
endpoint = "http://127.0.0.1:9"
enroll_secret = "s"

[spool]
flush_interval_s = 0.1

[power]
screenshots_off_below_percent = 20
uploads_wait_below_percent = 30
"""


def run_agent(cli: Cli, tmp_path: Path, host: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Start an agent on ``host`` conditions; its status (JSON) and text status."""
    (tmp_path / "host.json").write_text(json.dumps(host))
    (tmp_path / "policy.toml").write_text(POLICY)
    spool = tmp_path / "spool"
    args = [
        "run",
        "--backend",
        "fake",
        "--spool",
        str(spool),
        "--policy",
        str(tmp_path / "policy.toml"),
    ]
    proc = cli.start(
        *args, DESKCORDER_FAKE_REPEAT="100", DESKCORDER_FAKE_HOST=str(tmp_path / "host.json")
    )
    try:

        def waiting() -> dict[str, Any] | None:
            assert proc.poll() is None, proc.communicate()
            done = cli.run("status", "--json")
            if done.returncode != 0:
                return None
            status = json.loads(done.stdout)
            state = (status.get("uploader") or {}).get("state", "")
            return status if state.startswith("waiting") else None

        status = wait_for(waiting, 20, "the uploader waiting")
        assert isinstance(status, dict)
        text = cli.run("status").stdout
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return status, text


def test_metered_network_holds_uploads(cli: Cli, tmp_path: Path) -> None:
    status, text = run_agent(cli, tmp_path, {"metered": True})
    assert status["uploader"]["state"] == "waiting: metered network"
    assert status["conditions"]["metered"] is True
    assert "waiting: metered network" in text
    assert "power    no battery; network metered" in text
    records = list(read_session(next((tmp_path / "spool" / "sessions").iterdir())).records())
    assert not any(r["k"] == "power" for r in records)  # what is captured did not change


def test_low_battery_holds_uploads_and_screenshots(cli: Cli, tmp_path: Path) -> None:
    host = {"battery": {"percent": 15, "plugged": False}, "metered": False}
    status, text = run_agent(cli, tmp_path, host)
    assert status["uploader"]["state"] == "waiting: on battery at 15% (policy [power])"
    assert status["conditions"]["screenshots"] == "off"
    assert "power    on battery at 15%: no screenshots below 20%, uploads wait below 30%" in text
    records = list(read_session(next((tmp_path / "spool" / "sessions").iterdir())).records())
    (power,) = [r for r in records if r["k"] == "power"]
    assert power["battery"] is True and power["percent"] == 15 and power["screenshots"] == "off"


def test_doctor_says_what_battery_and_network_allow(cli: Cli, tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"battery": {"percent": 50, "plugged": False}, "metered": True}))
    spool = str(tmp_path / "spool")
    done = cli.run("doctor", "--backend", "fake", "--spool", spool, DESKCORDER_FAKE_HOST=str(host))
    assert done.returncode == 0, done.stdout
    assert "[ok  ] power: on battery at 50%" in done.stdout
    assert '[ok  ] network: metered: uploads wait (upload.on_metered = "wait")' in done.stdout
