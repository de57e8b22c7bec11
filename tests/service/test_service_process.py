"""The agent as the login service runs it: the unit's own command line, a service-like
environment (no terminal, fresh HOME, default spool), and the OS signals a service
manager sends. Covers single instance, clean stop, and restart after SIGKILL."""

from __future__ import annotations

import hashlib
import json
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from deskcorder.service import Target
from deskcorder.service.linux import render_desktop, render_unit
from deskcorder.storage.reader import list_sessions
from tests.xserver import wait_for

ENTRY = Path(sys.executable).parent / "deskcorder"


def unit_settings(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out[key] = value
    return out


class Service:
    """Starts the agent with the unit's ExecStart in an environment like systemd's."""

    def __init__(self, tmp: Path, runtime: Path) -> None:
        unit = render_unit(Target("user", str(ENTRY), home=PurePosixPath(tmp / "home")))
        self.settings = unit_settings(unit)
        self.argv = shlex.split(self.settings["ExecStart"])
        desktop = unit_settings(render_desktop(Target("user", str(ENTRY))))
        assert shlex.split(desktop["Exec"]) == self.argv  # both start the same command
        self.home = tmp / "home"
        self.home.mkdir()
        self.env = {
            "HOME": str(self.home),
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "DESKCORDER_RUNTIME_DIR": str(runtime),
            "DESKCORDER_BACKEND": "fake",
            "DESKCORDER_FAKE_REPEAT": "1000",
            "DESKCORDER_FAKE_SPEED": "3",
        }
        self.spool = self.home / ".local/share/deskcorder/spool"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*self.argv, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd="/",
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ENTRY), *args], capture_output=True, text=True, env=self.env, timeout=30
        )

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def service(tmp_path: Path, _runtime_dir: Path) -> Iterator[Service]:
    svc = Service(tmp_path, _runtime_dir)
    try:
        yield svc
    finally:
        svc.cleanup()


def chunk_files(spool: Path) -> dict[str, str]:
    """Sealed chunk name -> sha256 of its bytes."""
    return {
        str(p.relative_to(spool)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((spool / "sessions").rglob("*.jsonl.zst"))
    }


def test_second_service_start_exits_4_which_the_unit_does_not_restart(service: Service) -> None:
    assert ENTRY.is_file()
    assert "4" in service.settings["RestartPreventExitStatus"].split()
    first = service.start()
    wait_for(lambda: service.cli("status").returncode == 0, 15, "the agent to answer status")
    second = service.start()
    assert second.wait(15) == 4
    assert second.stderr is not None
    err = second.stderr.read()
    assert err.count("\n") == 1
    assert err.startswith("deskcorder: error: deskcorder is already running for this user")
    assert f"(pid {first.pid})" in err
    status = json.loads(service.cli("status", "--json").stdout)
    assert status["pid"] == first.pid
    assert status["watchdog"]["shed_level"] == 0
    assert service.cli("pause").returncode == 0
    assert json.loads(service.cli("status", "--json").stdout)["blocked"] == "user"
    assert service.cli("resume").returncode == 0
    wait_for(lambda: json.loads(service.cli("status", "--json").stdout)["recording"], 10, "resume")
    first.send_signal(signal.SIGTERM)
    assert first.wait(10) == 0


def test_sigterm_from_the_service_manager_stops_cleanly_and_seals(service: Service) -> None:
    proc = service.start()
    wait_for(lambda: list(service.spool.rglob("*.part")), 15, "an open chunk")
    proc.send_signal(signal.SIGTERM)  # KillSignal=SIGTERM
    timeout = float(service.settings["TimeoutStopSec"])
    assert proc.wait(timeout) == 0  # exit 0: Restart=on-failure does not restart it
    assert service.settings["Restart"] == "on-failure"
    assert not list(service.spool.rglob("*.part"))
    (session,) = list_sessions(service.spool)
    records = list(session.records())
    assert records[-1]["k"] == "end" and records[-1]["reason"] == "sigterm"
    for manifest in session.manifests():
        assert not manifest.recovered


def test_restart_after_sigkill_keeps_every_sealed_chunk_and_recovers_the_open_one(
    service: Service, tmp_path: Path
) -> None:
    policy = tmp_path / "rotate.toml"
    policy.write_text("[spool]\nchunk_max_age_s = 1\nflush_interval_s = 0.2\n")
    proc = service.start("--policy", str(policy))
    wait_for(lambda: len(chunk_files(service.spool)) >= 2, 20, "two sealed chunks")
    wait_for(
        lambda: any(p.stat().st_size > 200 for p in service.spool.rglob("*.part")),
        10,
        "a flushed open chunk",
    )
    before = chunk_files(service.spool)
    manifests = {p: p.read_bytes() for p in service.spool.rglob("*.manifest.json")}
    proc.kill()  # what the OOM killer or `systemctl kill -s KILL` does
    assert proc.wait(10) == -signal.SIGKILL
    assert list(service.spool.rglob("*.part"))
    # the service manager restarts it (Restart=on-failure); it recovers first
    again = service.start("--policy", str(policy), "--duration", "0.5")
    assert again.wait(30) == 0
    after = chunk_files(service.spool)
    for name, digest in before.items():
        assert after[name] == digest, f"sealed chunk {name} changed"
    for path, raw in manifests.items():
        assert path.read_bytes() == raw
    assert not list(service.spool.rglob("*.part"))
    crashed, restarted = list_sessions(service.spool)
    recovered = [m for m in crashed.manifests() if m.recovered]
    assert len(recovered) == 1
    for session in (crashed, restarted):
        for manifest in session.manifests():
            chunk = service.spool / "sessions" / session.id / f"{manifest.seq:06d}.jsonl.zst"
            assert hashlib.sha256(chunk.read_bytes()).hexdigest() == manifest.sha256
    kinds = [r["k"] for r in crashed.records()]
    assert kinds[-1] == "gap" and "end" not in kinds
    assert [r["k"] for r in restarted.records()][-1] == "end"
