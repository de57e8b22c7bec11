"""Two real OS users on one machine, each with their own agent, uploading side by side.

Finding 3 of issue 13: both agents got the same device pseudonym, so each
enrollment replaced the other's token and both logs filled with 401s. The
users are made here with ``useradd`` (the suite runs as root in CI); their
agents run from a venv on Debian's ``/usr/bin/python3`` (the pyenv Python
lives under /root, which they cannot enter) that borrows this checkout's
installed packages.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.helpers import ENROLL, CollectorProc, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or os.geteuid() != 0
    or not shutil.which("useradd")
    or not Path("/usr/bin/python3").exists(),
    reason="needs root, useradd and Debian's python3 (CI runs as root on Debian 12)",
)


class OsUser:
    def __init__(self, name: str, root: Path, python: Path) -> None:
        self.name = name
        self.python = python
        self.home = Path(f"/home/{name}")
        self.runtime = root / f"rt-{name}"
        self.runtime.mkdir(mode=0o700)
        shutil.chown(self.runtime, name, name)

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": "/usr/bin:/bin",
            "DESKCORDER_RUNTIME_DIR": str(self.runtime),
            "DESKCORDER_FAKE_REPEAT": "1000",
            "DESKCORDER_FAKE_SPEED": "4",
        }

    def command(self, *args: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self.env().items()]
        return ["runuser", "-u", self.name, "--", "env", "-i", *env, *args]

    def deskcorder(self, *args: str) -> list[str]:
        return self.command(str(self.python), "-m", "deskcorder", *args)

    def status(self) -> dict[str, Any]:
        done = subprocess.run(
            self.deskcorder("status", "--json"), capture_output=True, text=True, timeout=30
        )
        return json.loads(done.stdout) if done.returncode == 0 else {}


@pytest.fixture(scope="module")
def shared_root() -> Iterator[Path]:
    """A folder every user can read: the machine policy and the agents' interpreter."""
    root = Path(tempfile.mkdtemp(prefix="deskcorder-multiuser-"))
    root.chmod(0o755)
    venv = root / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    (purelib,) = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    target = next(venv.glob("lib/python3*/site-packages"))
    (target / "deskcorder-borrowed.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def two_users(shared_root: Path) -> Iterator[list[OsUser]]:
    names = [f"dc{secrets.token_hex(3)}a", f"dc{secrets.token_hex(3)}b"]
    made: list[str] = []
    try:
        for name in names:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
            made.append(name)
        yield [OsUser(n, shared_root, shared_root / "venv" / "bin" / "python") for n in names]
    finally:
        for name in made:
            subprocess.run(["pkill", "-KILL", "-u", name], check=False)
            subprocess.run(["userdel", "-r", "-f", name], check=False, capture_output=True)


def test_two_os_users_upload_side_by_side_without_a_401(
    two_users: list[OsUser], shared_root: Path, tmp_path: Path
) -> None:
    collector = CollectorProc(tmp_path).start()
    try:
        _two_agents(two_users, shared_root, collector)
    finally:
        collector.stop()


def _two_agents(two_users: list[OsUser], shared_root: Path, collector: CollectorProc) -> None:
    policy = shared_root / "policy.toml"
    policy.write_text(
        f"""
[identity]
org_key = "test-org-key-0123456789"

[capture]
mouse_move_hz = 0

[upload]
endpoint = "{collector.url}"
enroll_secret = "{ENROLL}"
backoff_max_s = 0.2
timeout_s = 2.0

[spool]
chunk_max_age_s = 1
"""
    )
    policy.chmod(0o644)
    agents = [
        subprocess.Popen(
            user.deskcorder("run", "--backend", "fake", "--policy", str(policy)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user in two_users
    ]
    try:

        def per_device() -> dict[str, int]:
            out: dict[str, int] = {}
            for s in collector.admin("GET", "/v1/admin/sessions").json()["sessions"]:
                out[s["device"]] = out.get(s["device"], 0) + int(s["chunks"])
            return out

        wait_until(
            lambda: len(per_device()) == 2 and min(per_device().values()) >= 4,
            60,
            "both users' agents to upload four chunks each",
        )
        states = [user.status()["uploader"] for user in two_users]
    finally:
        errors = []
        for proc in agents:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(20)
            assert proc.stderr is not None
            errors.append(proc.stderr.read())
            proc.stderr.close()
    metrics = collector.admin("GET", "/metrics").text
    collector.stop()  # to read its index
    assert 'status="401"' not in metrics, metrics
    assert all("401" not in err for err in errors), errors
    assert all(state["last_error"] is None for state in states), states
    import sqlite3  # the collector is stopped: read its index

    with sqlite3.connect(collector.data / "index.sqlite3") as db:
        rows = db.execute("SELECT device, user, machine FROM devices").fetchall()
    assert len({r[0] for r in rows}) == 2, "one device per OS user"
    assert len({r[1] for r in rows}) == 2, "one user pseudonym per OS user"
    assert len({r[2] for r in rows}) == 1, "one machine pseudonym for the machine"
    # each identity key is private to its user
    a, b = two_users
    keys = [next(u.home.glob(".local/share/deskcorder/spool/state/identity-key*")) for u in (a, b)]
    for key in keys:
        assert key.stat().st_mode & 0o077 == 0
    peek = subprocess.run(b.command("cat", str(keys[0])), capture_output=True, timeout=10)
    assert peek.returncode != 0 and b"PRIVATE" not in peek.stdout
