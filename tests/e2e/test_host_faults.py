"""Host faults under a real X server: the spool's disk fills up, turns read-only, vanishes.

Real input (xdotool) into a real agent whose spool is on a small file system the
test mounts (tmpfs, or a loop-mounted ext4 the kernel remounts read-only after
an injected disk error). In every case the agent stays up, ``status`` names the
storage gate, one ``gap`` record with the cause and a count appears once the
disk is usable again, every chunk decodes, and a restart leaves no ``.part``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.storage.chunk import read_chunk
from tests.e2e.agent import DESKCORDER, AgentProcess
from tests.fs import ext4, fill, require_mount, tmpfs
from tests.xserver import XServer, wait_for, xserver

pytestmark = [pytest.mark.x11, pytest.mark.slow]

WINDOW = "deskcorder-faults"
# min_free_mb = 0: these file systems are smaller than the default floor; the
# floor is tested in tests/core/test_pipeline_storage.py. chunk_max_age_s = 1:
# a new chunk every second needs a fresh page, so a full tmpfs fails at once
POLICY = """\
[capture]
mouse_move_hz = 0

[spool]
flush_interval_s = 0.2
chunk_max_age_s = 1
min_free_mb = 0
"""


@pytest.fixture(scope="module")
def x() -> Iterator[XServer]:
    with xserver() as server:
        server.tk_window(WINDOW, x=40, y=40, width=500, height=400)
        yield server


def status(agent: AgentProcess) -> dict[str, Any]:
    done = subprocess.run(
        [*DESKCORDER, "status", "--json"],
        env=agent.env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert agent.proc.poll() is None, f"agent exited:\n{agent.output()}"
    return json.loads(done.stdout) if done.returncode == 0 else {}


def type_until(x: XServer, agent: AgentProcess, cond: Callable[[], object], what: str) -> None:
    """Keep typing (each key makes the agent write) until ``cond`` holds."""

    def step() -> object:
        x.xdotool("type", "--delay", "10", "abc")
        return cond()

    wait_for(step, 20, what)


def gated(agent: AgentProcess, cause: str) -> Callable[[], bool]:
    def check() -> bool:
        s = status(agent)
        storage = s.get("storage") or {}
        return s.get("blocked") == "storage" and storage.get("cause") == cause

    return check


def storage_fault(x: XServer, tmp: Path, spool: Path, cause: str, fault: Any, fix: Any) -> None:
    """The whole scenario: record, break, check the gate, type, fix, check, restart."""
    with AgentProcess(x, tmp, POLICY, spool=spool) as agent:
        agent.wait_ready()
        x.activate(WINDOW)
        type_until(x, agent, lambda: any(r["k"] == "kd" for r in agent.records()), "a key")
        fault()
        type_until(x, agent, gated(agent, cause), f"the storage gate ({cause})")
        text = subprocess.run(
            [*DESKCORDER, "status"], env=agent.env, capture_output=True, text=True, check=True
        ).stdout
        assert "not recording: " in text and "storage " in text
        type_until(
            x,
            agent,
            lambda: status(agent)["storage"].get("not_recorded", 0) >= 10,
            "typing counted as not recorded",
        )
        fix()
        wait_for(lambda: status(agent).get("recording"), 40, "recording again")
        gap = agent.wait_record({"k": "gap", "cause": cause})
        assert gap["dropped"] >= 10 and gap["since"] <= gap["t"]
        type_until(
            x,
            agent,
            lambda: any(r["k"] == "kd" and r["t"] > gap["t"] for r in agent.records()),
            "a key after the gap",
        )
        agent.proc.kill()  # the harshest stop: the next start must recover everything
        agent.proc.wait(5)
    assert "Traceback" not in agent.output(), agent.output()
    with AgentProcess(x, tmp, POLICY, spool=spool) as again:
        again.wait_ready()
        again.terminate()
        assert again.proc.returncode == 0, again.output()
    assert not list(spool.rglob("*.part")), "a .part survived the restart"
    sessions = sorted((spool / "sessions").iterdir())
    assert len(sessions) == 2
    chunks = sorted(sessions[0].glob("*.jsonl.zst"))
    records = [r for c in chunks for r in read_chunk(c).records]  # every chunk decodes
    gaps = [r for r in records if r["k"] == "gap" and r["cause"] == cause]
    assert gaps == [gap], "one gap record for the outage"
    ts = [r["t"] for r in records]
    assert ts == sorted(ts)
    for chunk in sessions[1].glob("*.jsonl.zst"):
        assert read_chunk(chunk).complete


def test_full_disk(x: XServer, tmp_path: Path) -> None:
    require_mount()
    with tmpfs(8192) as fs:
        filler: list[Path] = []
        storage_fault(
            x,
            tmp_path,
            fs / "spool",
            "disk_full",
            lambda: filler.append(fill(fs)),
            lambda: filler[0].unlink(),
        )


def test_read_only_remount(x: XServer, tmp_path: Path) -> None:
    """The kernel remounts ext4 read-only after a disk error; IT unmounts, checks, mounts.

    Unmounting works only because the agent closed its journal on entering the gate.
    """
    require_mount()
    with ext4(16) as fs:
        storage_fault(x, tmp_path, fs.mnt / "spool", "read_only", fs.fail, fs.repair)


def test_spool_folder_deleted(x: XServer, tmp_path: Path) -> None:
    """The spool's folder is deleted; a file takes its place until the test removes it."""
    home = tmp_path / "data"
    spool = home / "spool"

    def delete() -> None:
        shutil.rmtree(home)
        home.write_text("in the way")

    storage_fault(x, tmp_path, spool, "spool_missing", delete, home.unlink)
