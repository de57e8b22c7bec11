"""The real agent as a subprocess: run, inspect, signals, single instance, control, recovery."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from deskcorder.storage.reader import list_sessions
from tests.conftest import Cli
from tests.xserver import wait_for


def sealed_only(spool: Path) -> bool:
    files = list((spool / "sessions").rglob("*"))
    return bool(files) and not any(f.name.endswith(".part") for f in files)


def test_run_fake_demo_then_inspect(cli: Cli, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    done = cli.run(
        "run",
        "--backend",
        "fake",
        "--spool",
        str(spool),
        "--duration",
        "3",
        DESKCORDER_FAKE_SPEED="4",
    )
    assert done.returncode == 0, done.stderr
    assert "saved in" in done.stdout
    assert sealed_only(spool)
    out = cli.run("inspect", "--spool", str(spool), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (session,) = data["sessions"]
    counts = session["counts"]
    for kind in ("start", "end", "focus", "mv", "bd", "bu", "sc", "kd", "ku", "title"):
        assert counts.get(kind, 0) > 0, kind
    assert "notes.txt - Editor" in session["windows"]
    assert "Release checklist - Chromium" in session["windows"]
    text = cli.run("inspect", "--spool", str(spool))
    assert "notes.txt - Editor" in text.stdout and "by kind:" in text.stdout


def test_sigterm_seals_within_two_seconds(cli: Cli, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    proc = cli.start(
        "run", "--backend", "fake", "--spool", str(spool), DESKCORDER_FAKE_REPEAT="100"
    )
    wait_for(lambda: list((spool / "sessions").rglob("*.part")), 10, "an open chunk")
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert time.monotonic() - start < 2.0
    assert sealed_only(spool)
    (session,) = list_sessions(spool)
    records = list(session.records())
    assert records[-1]["k"] == "end" and records[-1]["reason"] == "sigterm"
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()


def test_second_agent_refuses_and_control_reaches_the_first(cli: Cli, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = cli.start(
        "run", "--backend", "fake", "--spool", str(spool), DESKCORDER_FAKE_REPEAT="100"
    )
    try:
        wait_for(lambda: cli.run("status").returncode == 0, 10, "agent answering status")
        second = cli.run("run", "--backend", "fake", "--spool", str(tmp_path / "other"))
        assert second.returncode == 4
        assert second.stderr.count("\n") == 1
        assert "already running" in second.stderr
        status = json.loads(cli.run("status", "--json").stdout)
        assert status["recording"] is True and status["pid"] == first.pid
        assert cli.run("pause", "--minutes", "2").returncode == 0
        status = json.loads(cli.run("status", "--json").stdout)
        assert status["blocked"] == "user" and 100 <= status["gate_pause_left_s"] <= 120
        too_long = cli.run("pause", "--minutes", "9999")
        assert too_long.returncode == 1 and "longest pause policy allows is 60" in too_long.stderr
        assert cli.run("resume").returncode == 0
        assert "recording" in cli.run("status").stdout
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(5) == 0
        assert first.stdout is not None and first.stderr is not None
        first.stdout.close()
        first.stderr.close()
    records = list(list_sessions(spool)[0].records())
    kinds = [r["k"] for r in records]
    assert kinds.count("pause") == 1 and kinds.count("resume") == 1
    assert {"k": "pause", "src": "user"}.items() <= records[kinds.index("pause")].items()


def test_control_without_agent_exits_5(cli: Cli) -> None:
    for cmd in ("status", "pause", "resume"):
        done = cli.run(cmd)
        assert done.returncode == 5, cmd
        assert done.stderr.startswith("deskcorder: error: no running deskcorder agent")


def test_sigkill_then_restart_recovers_with_gap(cli: Cli, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    proc = cli.start(
        "run",
        "--backend",
        "fake",
        "--spool",
        str(spool),
        DESKCORDER_FAKE_REPEAT="100",
        DESKCORDER_FAKE_SPEED="3",
    )
    # wait until at least two durable flushes hold input events
    wait_for(
        lambda: any(p.stat().st_size > 400 for p in (spool / "sessions").rglob("*.part")),
        15,
        "flushed data",
    )
    proc.kill()
    proc.wait()
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    again = cli.run("run", "--backend", "fake", "--spool", str(spool), "--duration", "0.5")
    assert again.returncode == 0, again.stderr
    assert sealed_only(spool)
    first, _second = list_sessions(spool)
    records = list(first.records())
    assert any(r["k"] in ("kd", "mv") for r in records)
    assert records[-1] == {"k": "gap", "t": records[-1]["t"], "cause": "crash_recovery"}
    assert first.manifests()[0].recovered


def test_usage_errors_are_one_line_exit_2(cli: Cli, tmp_path: Path) -> None:
    for args in (
        ["run", "--duration", "abc"],
        ["run", "--backend", "nope", "--spool", str(tmp_path)],
        ["frobnicate"],
        ["run", "--duration", "-1"],
    ):
        done = cli.run(*args)
        assert done.returncode == 2, args
        assert done.stderr.count("\n") == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_inspect_missing_things(cli: Cli, tmp_path: Path) -> None:
    done = cli.run("inspect", "--spool", str(tmp_path / "nothing"))
    assert done.returncode == 1 and "nothing has been recorded yet" in done.stderr
    done = cli.run("inspect", "nosuchsession", "--spool", str(tmp_path))
    assert done.returncode == 1 and "no such session" in done.stderr


def test_doctor_fake_backend_passes(cli: Cli, tmp_path: Path) -> None:
    done = cli.run("doctor", "--backend", "fake", "--spool", str(tmp_path / "s"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok  ] spool" in done.stdout and "[ok  ] policy" in done.stdout


def test_doctor_reports_unwritable_spool(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = cli.run("doctor", "--backend", "fake", "--spool", str(blocker / "spool"))
    assert done.returncode == 3
    assert "[FAIL] spool" in done.stdout


def test_version(cli: Cli) -> None:
    done = cli.run("--version")
    assert done.returncode == 0 and done.stdout.startswith("deskcorder 0.1.0")
