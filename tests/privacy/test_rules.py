"""Exclusion rules, work hours, identity and the keystroke mode (pure logic)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from deskcorder.capture.exclusions import is_password_manager, is_private_browsing
from deskcorder.capture.gates import Gates
from deskcorder.capture.privacy import effective_keystrokes
from deskcorder.capture.schedule import WorkHours, schedule_check
from deskcorder.errors import DeskcorderError
from deskcorder.events import WindowInfo
from deskcorder.identity import identities
from deskcorder.policy.model import Identity, Schedule
from tests.core.helpers import make_policy

PRIVATE = [
    "New Tab - Google Chrome (Incognito)",
    "Example Domain - Chromium (Incognito)",
    "New Incognito tab - Google Chrome",
    "InPrivate - Microsoft Edge",
    "New tab - [InPrivate] - Microsoft\u200b Edge",
    "Mozilla Firefox Private Browsing",
    "Example — Mozilla Firefox Private Browsing",
    "Private Browsing",
    "Example - Brave (Private)",
]
NOT_PRIVATE = [
    "Privacy policy - Mozilla Firefox",
    "Incognito mode explained - Wikipedia - Chromium",  # article, no private-window marker
    "notes.txt - Editor",
    "Private equity report.xlsx - LibreOffice Calc",
]


@pytest.mark.parametrize("title", PRIVATE)
def test_private_browsing_titles(title: str) -> None:
    assert is_private_browsing(WindowInfo(id=1, title=title))


@pytest.mark.parametrize("title", NOT_PRIVATE)
def test_not_private_titles(title: str) -> None:
    assert not is_private_browsing(WindowInfo(id=1, title=title))


@pytest.mark.parametrize(
    "win",
    [
        WindowInfo(id=1, app="KeePassXC", process="keepassxc"),
        WindowInfo(id=1, app="1Password", exe="/opt/1Password/1password"),
        WindowInfo(id=1, exe="C:\\Program Files\\Bitwarden\\Bitwarden.exe"),
        WindowInfo(id=1, app="com.apple.keychainaccess"),
        WindowInfo(id=1, app="LastPass"),
        WindowInfo(id=1, process="pinentry-gnome3"),
    ],
)
def test_password_managers(win: WindowInfo) -> None:
    assert is_password_manager(win)


def test_gates_apply_builtin_rules_and_policy_switches() -> None:
    vault = WindowInfo(id=1, title="Vault", app="Bitwarden")
    incog = WindowInfo(id=2, title="x - Chromium (Incognito)", app="chromium")
    work = WindowInfo(id=3, title="report.odt - LibreOffice", app="soffice.bin")
    gates = Gates(make_policy())
    assert gates.window_rule(vault) == "password_manager"
    assert gates.window_rule(incog) == "private_browsing"
    assert gates.window_rule(work) is None
    off = Gates(make_policy(exclusions={"private_browsing": False, "password_managers": False}))
    assert off.window_rule(vault) is None and off.window_rule(incog) is None
    allow = Gates(make_policy(exclusions={"allow_titles": ["LibreOffice"]}))
    assert allow.window_rule(work) is None
    assert allow.window_rule(WindowInfo(id=4, title="Mail")) == "not_allowlisted"
    assert allow.window_rule(None) == "not_allowlisted"


def test_failing_rule_excludes() -> None:
    gates = Gates(make_policy())

    def broken(win: WindowInfo) -> str | None:
        raise RuntimeError("probe failed")

    gates.extra_window_rules.append(broken)
    assert gates.window_rule(WindowInfo(id=1, title="anything")) == "check_failed"


BERLIN = ZoneInfo("Europe/Berlin")


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def test_work_hours_by_weekday_and_zone() -> None:
    cfg = Schedule(
        enabled=True,
        timezone="Europe/Berlin",
        hours={"mon": ("09:00-12:30", "13:30-17:30"), "sat": ("10:00-24:00",)},
    )
    wh = WorkHours(cfg)
    assert wh.allows(ts(2026, 11, 23, 9, 0))  # Monday 09:00 (start included)
    assert not wh.allows(ts(2026, 11, 23, 8, 59))
    assert not wh.allows(ts(2026, 11, 23, 12, 30))  # end excluded
    assert wh.allows(ts(2026, 11, 23, 13, 30))
    assert not wh.allows(ts(2026, 11, 24, 10, 0))  # Tuesday: no spans
    assert wh.allows(ts(2026, 11, 28, 23, 59))  # Saturday until midnight
    assert not wh.allows(ts(2026, 11, 29, 0, 0))
    # same instant in UTC is 08:00: the zone matters
    assert not WorkHours(cfg.model_copy(update={"timezone": "UTC"})).allows(ts(2026, 11, 23, 9, 0))
    assert wh.next_change(ts(2026, 11, 23, 8, 0)) == ts(2026, 11, 23, 9, 0)
    assert wh.next_change(ts(2026, 11, 23, 10, 0)) == ts(2026, 11, 23, 12, 30)


def test_work_hours_across_dst_change() -> None:
    cfg = Schedule(enabled=True, timezone="Europe/Berlin", hours={"sun": ("02:00-04:00",)})
    wh = WorkHours(cfg)
    # 2026-03-29: clocks jump 02:00 -> 03:00 in Berlin; 03:30 local is inside
    assert wh.allows(ts(2026, 3, 29, 3, 30))
    assert not wh.allows(datetime(2026, 3, 29, 0, 30, tzinfo=ZoneInfo("UTC")).timestamp())


def test_disabled_schedule_allows_all_and_gates_use_it() -> None:
    assert schedule_check(Schedule()) is None
    policy = make_policy(schedule={"enabled": True, "hours": {"mon": ["09:00-10:00"]}})
    monday_8 = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    gates = Gates(policy, clock=lambda: monday_8)
    assert gates.blocked_reason() == "schedule"
    gates.clock = lambda: monday_8 + 3600
    assert gates.blocked_reason() is None


def test_identities_come_from_the_key_and_the_collector(tmp_path: Path) -> None:
    """No pseudonym on the workstation before the collector gives one; an org key changes
    nothing (it is ignored); the device id is the key's."""
    import getpass

    from deskcorder.identity import save_enrolled

    ids = identities(Identity(org_key="secret"), tmp_path)  # type: ignore[arg-type]
    assert ids.mode == "pseudonymous" and ids.user is None and ids.machine is None
    assert ids.device.startswith("d-") and len(ids.device) == 34
    key = tmp_path / "state" / "identity-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert identities(Identity(), tmp_path).device == ids.device  # the same key, kept
    reply = {"mode": "pseudonymous", "user": "u-" + "1" * 32, "machine": "m-" + "2" * 32}
    save_enrolled(tmp_path, endpoint="https://c", device=ids.device, reply=reply, sent={})
    known = identities(Identity(), tmp_path)
    assert (known.user, known.machine) == (reply["user"], reply["machine"])
    assert getpass.getuser() not in str(known)
    named = identities(Identity(mode="named"), tmp_path)
    assert named.user == getpass.getuser() and named.device == ids.device
    key.chmod(0o644)  # readable by others: refused, never used
    with pytest.raises(DeskcorderError, match="readable by other users"):
        identities(Identity(), tmp_path)


def test_full_degrades_without_probe() -> None:
    assert effective_keystrokes("full", have_probe=False) == "redacted"
    assert effective_keystrokes("full", have_probe=True) == "full"
    assert effective_keystrokes("shortcuts", have_probe=False) == "shortcuts"
