"""Notice display, consent receipts and the doctor's privacy lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from deskcorder.capture import consent
from deskcorder.capture.privacy import doctor_checks
from deskcorder.platform import select_backend
from tests.conftest import Cli
from tests.core.helpers import make_policy


def test_receipts_decide_by_notice_version(tmp_path: Path) -> None:
    v1 = make_policy(notice={"version": "1", "require_ack": True})
    v2 = make_policy(notice={"version": "2", "require_ack": True})
    assert not consent.has_consent(tmp_path, v1) and not consent.capture_allowed(tmp_path, v1)
    path = consent.write_receipt(tmp_path, v1, "accept", user="u-x", device="d-y")
    data = json.loads(path.read_text())
    assert data["format"] == "deskcorder-consent" and data["format_version"] == 1
    assert data["policy_digest"] == v1.digest() and data["user"] == "u-x"
    assert set(data) == {
        "format", "format_version", "action", "notice_version", "notice_sha256",
        "policy_digest", "user", "device", "utc",
    }  # fmt: skip
    assert consent.has_consent(tmp_path, v1)
    assert not consent.has_consent(tmp_path, v2)  # a new notice version needs a new accept
    consent.write_receipt(tmp_path, v1, "withdraw", user="u-x", device="d-y")
    assert not consent.has_consent(tmp_path, v1)
    assert consent.capture_allowed(tmp_path, make_policy())  # no ack required
    with pytest.raises(ValueError):
        consent.write_receipt(tmp_path, v1, "maybe", user="u", device="d")


def test_unreadable_receipts_mean_no_consent(tmp_path: Path) -> None:
    policy = make_policy(notice={"require_ack": True})
    consent.write_receipt(tmp_path, policy, "accept", user="u", device="d")
    for path in consent.consent_dir(tmp_path).glob("*.json"):
        path.write_text("{not json")
    assert not consent.has_consent(tmp_path, policy)


def test_notice_shown_at_first_run_and_on_version_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consent, "send_notification", lambda *a, **k: False)
    v1 = make_policy(notice={"version": "1", "text": "We record things."})
    out = io.StringIO()
    assert consent.show_notice(tmp_path, v1, out=out) == "terminal"
    assert "We record things." in out.getvalue() and "notice 1" in out.getvalue()
    assert consent.show_notice(tmp_path, v1, out=io.StringIO()) is None  # already shown
    v2 = make_policy(notice={"version": "2", "require_ack": True})
    out = io.StringIO()
    assert consent.show_notice(tmp_path, v2, out=out) == "terminal"
    assert "deskcorder consent accept" in out.getvalue()
    monkeypatch.setattr(consent, "send_notification", lambda *a, **k: True)
    assert consent.show_notice(tmp_path, v2, force=True) == "notification"


def test_notification_needs_notify_send_and_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert consent.send_notification("t", "b") is False


def test_doctor_says_full_degrades_without_probe() -> None:
    backend = select_backend("fake")
    backend.accessibility = None
    checks = {
        c.name: c for c in doctor_checks(make_policy(capture={"keystrokes": "full"}), backend)
    }
    assert not checks["secure input"].ok and not checks["secure input"].required
    assert "degrades to redacted" in checks["secure input"].detail
    assert "tray icon" in checks and "notifications" in checks


def test_doctor_cli_lists_privacy_checks(cli: Cli, tmp_path: Path) -> None:
    out = cli.run("doctor", "--backend", "fake", "--spool", str(tmp_path / "s"))
    assert out.returncode == 0
    assert "secure input" in out.stdout and "tray icon" in out.stdout


def test_privacy_bench_runs_and_prints_figures() -> None:
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[2] / "bench" / "privacy_filters.py"
    out = subprocess.run(
        [sys.executable, str(bench), "--quick"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.rstrip().endswith("us") or "us (" in ln]
    assert len(lines) >= 13 and "baseline" in out.stdout
    for line in lines:
        value = float(line.rsplit(":", 1)[1].split("us")[0])
        assert 0 < value < 1_000_000


def test_status_shows_privacy_lines() -> None:
    from deskcorder.commands.status import format_status

    text = format_status(
        {
            "recording": False,
            "blocked": "schedule",
            "privacy": {
                "keystrokes": "redacted",
                "keystrokes_policy": "full",
                "secure_input": "AT-SPI unavailable",
                "schedule_next_change_utc": "2026-11-30T08:00:00Z",
            },
            "tray": {"shown": False, "unavailable": "no display"},
        }
    )
    assert "outside work hours" in text
    assert "redacted (policy says full; no accessibility API)" in text
    assert "next change at 2026-11-30T08:00:00Z" in text
    assert "not shown (no display)" in text
