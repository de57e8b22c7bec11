"""The agent process on a full disk (real tmpfs, scripted input): up, gated, resumes, exit 0."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from deskcorder import read_session
from deskcorder.storage.chunk import read_chunk
from tests.conftest import Cli
from tests.fs import fill, require_mount, tmpfs
from tests.xserver import wait_for

POLICY = "[spool]\nflush_interval_s = 0.1\nmin_free_mb = 0\n"


def status(cli: Cli) -> dict[str, Any] | None:
    done = cli.run("status", "--json")
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_agent_started_on_a_full_disk_stays_up_and_records_once_space_is_freed(
    cli: Cli, tmp_path: Path
) -> None:
    require_mount()
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with tmpfs(4096) as fs:
        spool = fs / "spool"
        filler = fill(fs)
        args = ["run", "--backend", "fake", "--spool", str(spool), "--policy", str(policy)]
        proc = cli.start(*args, DESKCORDER_FAKE_REPEAT="1000")
        try:

            def gated() -> dict[str, Any] | None:
                assert proc.poll() is None, proc.communicate()
                s = status(cli)
                return s if s and (s.get("storage") or {}).get("ok") is False else None

            s = wait_for(gated, 20, "the storage gate in status")
            assert isinstance(s, dict)
            assert s["blocked"] == "storage" and s["storage"]["cause"] == "disk_full"
            text = cli.run("status").stdout
            assert "not recording: the disk holding the spool is full" in text
            assert "free some space on it; recording resumes by itself" in text
            doctor = cli.run("doctor", "--backend", "fake", "--spool", str(spool))
            assert "[warn] running agent: not recording: the disk holding the spool is full" in (
                doctor.stdout
            )
            assert "[FAIL] spool:" in doctor.stdout and "No space left on device" in doctor.stdout
            wait_for(
                lambda: (status(cli) or {}).get("storage", {}).get("not_recorded", 0) > 0,
                10,
                "input counted as not recorded",
            )
            filler.unlink()
            wait_for(
                lambda: (status(cli) or {}).get("recording"), 10, "recording again after space"
            )
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "capture failed" not in err
        assert "cannot write the spool (disk_full)" in err
        (session,) = (spool / "sessions").iterdir()
        assert not list(session.glob("*.part"))
        for chunk in sorted(session.glob("*.jsonl.zst")):
            assert read_chunk(chunk).complete
        records = list(read_session(session).records())
        (gap,) = [r for r in records if r["k"] == "gap"]
        assert gap["cause"] == "disk_full" and gap["dropped"] > 0
        assert records[-1]["k"] == "end" and records[-1]["reason"] == "sigterm"
