"""End to end through a real agent: fake backend input, real pipeline, spool, control socket
and CLI subprocesses for consent, pause, resume, status and review.

The X11 backend had not landed when these were written, so input comes from the
fake backend's hook entry point (``agent.emit``), exactly where real hooks put it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from deskcorder.agent import Agent
from deskcorder.events import RAW_FOCUS, RAW_KEY, WindowInfo
from deskcorder.platform import select_backend
from deskcorder.policy.load import load_policy
from deskcorder.storage.approval import approval_path, is_approved
from deskcorder.storage.reader import list_sessions
from deskcorder.storage.spool import Spool
from tests.conftest import Cli
from tests.privacy.helpers import SECRETS, assert_absent, spool_bytes
from tests.xserver import wait_for

POLICY = """
[capture]
keystrokes = "full"
[notice]
version = "t-1"
require_ack = true
text = "Test notice."
[pause]
max_minutes = 60
[upload]
review = true
"""

EDITOR = WindowInfo(id=1, title="notes.txt - Editor", app="editor", process="editor")
VAULT = WindowInfo(id=2, title="Vault - Bitwarden", app="Bitwarden", process="bitwarden")
INCOGNITO = WindowInfo(id=3, title="Bank - Chromium (Incognito)", app="chromium")


class Typist:
    """Emits raw key events the way the hooks do (monotonic timestamps, put_nowait).

    A person takes longer between a focus change (or Enter) and the next key than the
    accessibility monitor takes to identify the newly focused field; a script does
    not, so it waits for that answer (else its text is ``[UNKNOWN]``: fail closed).
    """

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def _answered_after(self, epoch: int) -> None:
        monitor = self.agent.privacy.monitor
        assert monitor is not None

        def known() -> bool:
            answer = monitor.answer()
            return answer.epoch > epoch and answer.state is not None

        wait_for(known, 5, "the focused field identified")

    def _epoch(self) -> int:
        monitor = self.agent.privacy.monitor
        assert monitor is not None
        return monitor.answer().epoch

    def focus(self, win: WindowInfo) -> None:
        epoch = self._epoch()
        self.agent.emit((RAW_FOCUS, time.monotonic_ns(), win))
        self._answered_after(epoch)

    def type(self, text: str) -> None:
        for ch in text:
            name, char = ("space", None) if ch == " " else (None, ch)
            self.agent.emit((RAW_KEY, time.monotonic_ns(), True, char, name, ord(ch)))
            self.agent.emit((RAW_KEY, time.monotonic_ns(), False, char, name, ord(ch)))
        epoch = self._epoch()
        recording = self.agent.capture_status().get("recording")
        self.agent.emit((RAW_KEY, time.monotonic_ns(), True, None, "enter", 0xFF0D))
        self.agent.emit((RAW_KEY, time.monotonic_ns(), False, None, "enter", 0xFF0D))
        if recording:  # Enter may move the focus: the pipeline asks again
            self._answered_after(epoch)

    def secrets(self) -> None:
        self.type(f"pay {SECRETS['card']} to {SECRETS['email']}")
        self.type(f"token {SECRETS['token']}")


def _status(cli: Cli) -> dict[str, Any]:
    out = cli.run("status", "--json")
    assert out.returncode == 0, out.stderr
    reply: dict[str, Any] = json.loads(out.stdout)
    return reply


def test_agent_end_to_end_privacy_controls(cli: Cli, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    spool = tmp_path / "spool"
    script = tmp_path / "script.jsonl"
    script.write_text("")  # input comes from the test through agent.emit
    loaded = load_policy(str(policy_file), machine_dir=tmp_path / "etc")
    backend = select_backend("fake", script=str(script))
    agent = Agent(loaded, spool, backend)
    thread = threading.Thread(target=agent.run, name="test-agent")
    thread.start()
    try:
        wait_for(lambda: cli.run("status").returncode == 0, 15, "agent answering status")
        assert agent.pipeline is not None
        pipeline = agent.pipeline
        typist = Typist(agent)
        # 1. notice not yet acknowledged: nothing is captured
        assert _status(cli)["blocked"] == "consent"
        typist.focus(EDITOR)
        typist.secrets()
        # 2. consent through the CLI -> the running agent writes the receipt
        accepted = cli.run("consent", "accept", "--policy", str(policy_file))
        assert accepted.returncode == 0, accepted.stderr
        wait_for(lambda: _status(cli)["recording"], 10, "recording after consent")
        receipts = list((spool / "state" / "consent").glob("*.json"))
        assert len(receipts) == 1
        receipt = json.loads(receipts[0].read_text())
        assert receipt["action"] == "accept" and receipt["notice_version"] == "t-1"
        assert receipt["policy_digest"] == loaded.policy.digest()
        # 3. allowed window: scrubbed text is kept
        typist.focus(EDITOR)
        typist.type("hello world")
        typist.secrets()
        wait_for(lambda: pipeline.counts.get("text", 0) >= 3, 10, "text records")
        # 4. password field (the backend's secure-input probe says so)
        player = backend.extras["player"]
        player.secure = True
        player.on_change()  # the backend's accessibility tells of the focus change
        monitor = agent.privacy.monitor
        assert monitor is not None
        wait_for(lambda: monitor.answer().state is True, 5, "secure input seen")
        typist.type(SECRETS["password"])
        wait_for(lambda: pipeline.counts.get("text", 0) >= 4, 10, "secure text marker")
        player.secure = False
        player.on_change()
        wait_for(lambda: monitor.answer().state is False, 5, "secure input off")
        # 5. paused from the CLI: status shows the time left
        assert cli.run("pause", "--minutes", "5").returncode == 0
        wait_for(lambda: _status(cli)["blocked"] == "user", 10, "paused")
        text = cli.run("status").stdout
        assert "paused by you" in text and "min" in text and "left" in text
        typist.secrets()
        typist.type(SECRETS["password"])
        assert cli.run("resume").returncode == 0
        # 6. excluded password manager and private window
        typist.focus(VAULT)
        typist.secrets()
        typist.type(SECRETS["password"])
        typist.focus(INCOGNITO)
        typist.secrets()
        typist.focus(EDITOR)
        typist.type("bye")
        wait_for(lambda: pipeline.counts.get("text", 0) >= 5, 10, "last text")
    finally:
        agent.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    blob = spool_bytes(spool)
    assert_absent(blob, *SECRETS.values(), "Vault", "Bitwarden", "Bank")
    records = [r for s in list_sessions(spool) for r in s.records()]
    texts = [r["text"] for r in records if r["k"] == "text"]
    assert texts == [
        "hello world",
        "pay [CARD] to [EMAIL]",
        "token [SECRET]",
        "[SECURE]",
        "bye",
    ]
    kinds = [r["k"] for r in records]
    assert [r["src"] for r in records if r["k"] in ("pause", "resume")] == [
        "consent", "consent", "user", "user"
    ]  # fmt: skip
    assert sorted(r["rule"] for r in records if r["k"] == "excl") == [
        "password_manager",
        "private_browsing",
    ]
    assert kinds[-1] == "end"
    headers = [h for s in list_sessions(spool) for h in s.headers()]
    # kept locally, never enrolled: no pseudonyms yet (the collector would give them)
    assert headers[0]["keystrokes"] == "full" and headers[0]["user"] is None
    assert headers[0]["device"].startswith("d-") and headers[0]["machine"] is None


def test_full_degrades_to_redacted_without_probe(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('[capture]\nkeystrokes = "full"\n')
    loaded = load_policy(str(policy_file), machine_dir=tmp_path / "etc")
    (tmp_path / "none.jsonl").write_text("")
    backend = select_backend("fake", script=str(tmp_path / "none.jsonl"))
    backend.accessibility = None
    agent = Agent(loaded, tmp_path / "spool", backend, duration=0.3)
    assert agent.keystrokes == "redacted" and agent.privacy.degraded
    assert agent.run() == 0
    header = list_sessions(tmp_path / "spool")[0].headers()[0]
    assert header["keystrokes"] == "redacted"


def test_consent_and_review_commands(cli: Cli, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY)
    spool = tmp_path / "spool"
    show = cli.run("consent", "show", "--policy", str(policy_file), "--spool", str(spool))
    assert show.returncode == 0 and "Test notice." in show.stdout and "not accepted" in show.stdout
    out = cli.run("consent", "accept", "--policy", str(policy_file), "--spool", str(spool))
    assert out.returncode == 0 and "receipt" in out.stdout
    show = cli.run("consent", "show", "--policy", str(policy_file), "--spool", str(spool))
    assert "Consent: accepted" in show.stdout
    out = cli.run("consent", "withdraw", "--policy", str(policy_file), "--spool", str(spool))
    show = cli.run("consent", "show", "--policy", str(policy_file), "--spool", str(spool))
    assert "Consent: not accepted" in show.stdout
    assert cli.run("consent", "accept", "--policy", str(policy_file), "--spool", str(spool))
    # record something (the demo script) and review it
    run = cli.run(
        "run", "--backend", "fake", "--policy", str(policy_file), "--spool", str(spool),
        "--duration", "1", DESKCORDER_FAKE_SPEED="20",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    listing = cli.run("review", "--spool", str(spool))
    assert listing.returncode == 0 and listing.stdout.startswith("waiting")
    ref = listing.stdout.split()[1]
    chunk = Spool(spool).sealed_chunks()[0]
    assert not is_approved(chunk)
    shown = cli.run("review", "show", ref, "--spool", str(spool))
    assert '"format": "deskcorder-chunk"' in shown.stdout and "hunter2" not in shown.stdout
    assert cli.run("review", "approve", ref, "--spool", str(spool)).returncode == 0
    assert is_approved(chunk)
    assert cli.run("review", "--spool", str(spool)).stdout.startswith("approved")
    inspected = cli.run("inspect", "--spool", str(spool)).stdout
    assert "Consent receipts: 3; latest: accept of notice t-1" in inspected
    assert "Sealed chunks on this machine: 1 not yet uploaded (1 approved for upload" in inspected
    # a marker that does not match the chunk's digest does not approve it
    marker = json.loads(approval_path(chunk).read_text())
    approval_path(chunk).write_text(json.dumps({**marker, "sha256": "0" * 64}))
    assert not is_approved(chunk)
    bad = cli.run("review", "approve", "nosuch/000000", "--spool", str(spool))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert cli.run("review", "delete", ref, "--spool", str(spool)).returncode == 0
    assert Spool(spool).sealed_chunks() == [] and not approval_path(chunk).exists()
    assert "No sealed chunks" in cli.run("review", "--spool", str(spool)).stdout


def _script_lines() -> list[list[Any]]:
    """A fake-backend script: [delay_s, tag, ...] lines (see deskcorder.platform.fake)."""
    lines: list[list[Any]] = []

    def focus(win: WindowInfo) -> None:
        fields = {"id": win.id, "title": win.title, "app": win.app, "process": win.process}
        lines.append([0.01, RAW_FOCUS, fields])

    def type_(text: str) -> None:
        for i, ch in enumerate(text):
            name, char = ("space", None) if ch == " " else (None, ch)
            # a person starts typing a moment after the focus moved (the agent identifies
            # the focused field in a few ms; what is typed before that is not kept)
            lines.append([0.2 if i == 0 else 0.001, RAW_KEY, True, char, name, ord(ch)])
            lines.append([0.001, RAW_KEY, False, char, name, ord(ch)])
        lines.append([0.001, RAW_KEY, True, None, "enter", 0xFF0D])
        lines.append([0.001, RAW_KEY, False, None, "enter", 0xFF0D])

    secrets = f"pay {SECRETS['card']} to {SECRETS['email']} token {SECRETS['token']}"
    focus(EDITOR)
    type_("hello " + secrets)
    # the password field gets the focus (the backend's accessibility tells the monitor):
    # leave the pipeline time to see that before typing, even on a busy machine
    lines.append([0.5, "secure", True])
    lines.append([0.3, "secure", True])
    type_(SECRETS["password"])
    lines.append([0.5, "secure", False])
    lines.append([0.3, "secure", False])
    for win in (VAULT, INCOGNITO):
        focus(win)
        type_(secrets + " " + SECRETS["password"])
    focus(EDITOR)
    type_("bye")
    return lines


def test_cli_fake_backend_scripted_privacy(cli: Cli, tmp_path: Path) -> None:
    """`deskcorder run --backend fake` with scripted input: allowed, password field,
    password manager and private window; then the same script outside work hours."""
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps(line) for line in _script_lines()) + "\n")
    policy = tmp_path / "policy.toml"
    policy.write_text('[capture]\nkeystrokes = "full"\n')
    spool = tmp_path / "spool"
    run = cli.run(
        "run", "--backend", "fake", "--policy", str(policy), "--spool", str(spool),
        "--duration", "4", DESKCORDER_FAKE_SCRIPT=str(script), DESKCORDER_FAKE_SPEED="2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert_absent(spool_bytes(spool), *SECRETS.values(), "Vault", "Bitwarden", "Bank")
    records = [r for s in list_sessions(spool) for r in s.records()]
    assert [r["text"] for r in records if r["k"] == "text"] == [
        "hello pay [CARD] to [EMAIL] token [SECRET]",
        "[SECURE]",
        "bye",
    ]
    assert sorted(r["rule"] for r in records if r["k"] == "excl") == [
        "password_manager",
        "private_browsing",
    ]
    # outside work hours: nothing but the markers
    policy.write_text('[capture]\nkeystrokes = "full"\n[schedule]\nenabled = true\nhours = {}\n')
    spool2 = tmp_path / "spool2"
    run = cli.run(
        "run", "--backend", "fake", "--policy", str(policy), "--spool", str(spool2),
        "--duration", "4", DESKCORDER_FAKE_SCRIPT=str(script), DESKCORDER_FAKE_SPEED="2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert_absent(spool_bytes(spool2), *SECRETS.values(), "notes.txt", "hello")
    kinds = [r["k"] for s in list_sessions(spool2) for r in s.records()]
    assert kinds == ["start", "pause", "end"]
