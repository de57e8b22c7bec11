"""The privacy controls against a real X server with the X11 backend (pynput + Xlib).

Skipped where the X11 backend cannot be imported; the same scenarios (and
``full`` mode text, which needs a secure-input probe) run through the fake
backend in test_agent_privacy.py.
Real keystrokes are typed with xdotool into Tk windows whose titles make them
allowed, excluded by policy, or private-browsing windows; one run is paused and
one is outside work hours. Without an AT-SPI probe ``full`` degrades to
``redacted``, so the allowed window shows key classes, not text.
"""

from __future__ import annotations

import importlib.util
import json
import signal
from pathlib import Path

import pytest

from deskcorder.storage.reader import list_sessions
from tests.conftest import Cli
from tests.privacy.helpers import SECRETS, assert_absent, spool_bytes
from tests.xserver import XServer, wait_for, xserver

pytestmark = pytest.mark.x11

# titles are matched as regular expressions by xdotool search: no parentheses
ALLOWED, DENIED, PRIVATE = "notes - Editor", "HR Vault", "Bank - Mozilla Firefox Private Browsing"
POLICY = """
[capture]
keystrokes = "full"
mouse_move_hz = 10.0
[exclusions]
titles = ["(?i)vault"]
"""
TYPED = (
    f"pay {SECRETS['card']} to {SECRETS['email']} token {SECRETS['token']} pw {SECRETS['password']}"
)


def _need_backend() -> None:
    if importlib.util.find_spec("deskcorder.platform.linux") is None:
        pytest.skip("the X11 backend is not on this branch yet")


def _status(cli: Cli) -> dict[str, object]:
    out = cli.run("status", "--json")
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _type_in(x: XServer, title: str, text: str) -> None:
    x.activate(title)
    x.xdotool("type", "--delay", "15", text)


def _run_agent(cli: Cli, x: XServer, tmp: Path, policy: str) -> tuple[Cli, object]:
    policy_file = tmp / "policy.toml"
    policy_file.write_text(policy)
    proc = cli.start(
        "run", "--backend", "x11", "--policy", str(policy_file), "--spool", str(tmp / "spool"),
        DISPLAY=x.display,
    )  # fmt: skip
    wait_for(lambda: _status(cli), 20, "agent answering status")
    return cli, proc


def _stop(proc: object) -> None:
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_x11_allowed_excluded_private_and_paused(cli: Cli, tmp_path: Path) -> None:
    _need_backend()
    with xserver() as x:
        for i, title in enumerate((ALLOWED, DENIED, PRIVATE)):
            x.tk_window(title, x=50 + 450 * i, y=100)
        _, proc = _run_agent(cli, x, tmp_path, POLICY)
        try:
            _type_in(x, ALLOWED, "hello world " + TYPED)
            wait_for(lambda: int(_status(cli).get("records_written", 0)) >= 100, 10, "keys")
            _type_in(x, DENIED, TYPED)
            _type_in(x, PRIVATE, TYPED)
            x.activate(ALLOWED)
            assert cli.run("pause").returncode == 0
            wait_for(lambda: _status(cli).get("blocked") == "user", 10, "paused")
            x.xdotool("type", "--delay", "15", TYPED)
            assert cli.run("resume").returncode == 0
            wait_for(lambda: _status(cli).get("recording") is True, 10, "resumed")
        finally:
            _stop(proc)
    blob = spool_bytes(tmp_path / "spool")
    assert_absent(blob, *SECRETS.values(), "HR Vault", "Bank")
    records = [r for s in list_sessions(tmp_path / "spool") for r in s.records()]
    assert {r["rule"] for r in records if r["k"] == "excl"} == {"title", "private_browsing"}
    assert any(r["k"] == "focus" and (r["win"] or {}).get("title") == ALLOWED for r in records)
    # allowed window: key timing and classes (no AT-SPI probe here: full -> redacted)
    assert sum(1 for r in records if r["k"] == "kd" and r.get("cls") == "digit") >= 16
    assert sum(1 for r in records if r["k"] == "kd" and r.get("cls") == "letter") >= 10
    assert list_sessions(tmp_path / "spool")[0].headers()[0]["keystrokes"] == "redacted"
    assert [r["src"] for r in records if r["k"] == "pause"] == ["user"]


def test_x11_outside_work_hours_records_nothing(cli: Cli, tmp_path: Path) -> None:
    _need_backend()
    policy = POLICY + "[schedule]\nenabled = true\nhours = {}\n"
    with xserver() as x:
        x.tk_window(ALLOWED)
        _, proc = _run_agent(cli, x, tmp_path, policy)
        try:
            assert _status(cli).get("blocked") == "schedule"
            _type_in(x, ALLOWED, TYPED)
        finally:
            _stop(proc)
    blob = spool_bytes(tmp_path / "spool")
    assert_absent(blob, *SECRETS.values(), ALLOWED)
    records = [r for s in list_sessions(tmp_path / "spool") for r in s.records()]
    assert [r["k"] for r in records] == ["start", "pause", "end"]
