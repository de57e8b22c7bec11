"""logind session probe: discovery and parsing with a scripted gdbus runner."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from deskcorder.events import RAW_SESSION
from deskcorder.platform.linux.session import (
    LogindSessionProbe,
    parse_gdbus_bool,
    parse_gdbus_object_path,
)
from tests.xserver import wait_for

SESSION = "/org/freedesktop/login1/session/_32"


def test_parse_gdbus_output() -> None:
    assert parse_gdbus_bool("(<true>,)\n") is True
    assert parse_gdbus_bool("(<false>,)") is False
    assert parse_gdbus_bool("Error: GDBus.Error:org.freedesktop.DBus.Error.UnknownObject") is None
    assert parse_gdbus_object_path(f"(objectpath '{SESSION}',)") == SESSION
    assert parse_gdbus_object_path("(<('2', objectpath '/org/freedesktop/login1/session/_32')>,)")
    assert parse_gdbus_object_path("nothing") is None


class Logind:
    """Answers gdbus calls like logind would; records what was asked."""

    def __init__(self, locked: bool = False, auto_works: bool = False) -> None:
        self.locked = locked
        self.auto_works = auto_works
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], timeout: float) -> tuple[int, str]:
        self.calls.append(args)
        path = args[args.index("--object-path") + 1]
        method = args[args.index("--method") + 1]
        if method.endswith("Manager.GetSession"):
            return (0, f"(objectpath '{SESSION}',)") if args[-1] == "c2" else (1, "")
        if path.endswith("/user/self"):
            return 0, f"(<('c2', objectpath '{SESSION}')>,)"
        if path == SESSION or (path.endswith("/auto") and self.auto_works):
            if args[-1] == "LockedHint":
                return 0, f"(<{'true' if self.locked else 'false'}>,)"
            if args[-1] == "Active":
                return 0, "(<true>,)"
        return 1, ""


def test_session_found_through_xdg_session_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_SESSION_ID", "c2")
    bus = Logind(locked=True)
    probe = LogindSessionProbe(run=bus, gdbus="gdbus")
    assert probe.available()
    assert probe.session_path() == SESSION
    assert probe.state() == (True, True)
    assert all(call[:3] == ["gdbus", "call", "--system"] for call in bus.calls)


def test_session_found_through_user_display_when_auto_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("XDG_SESSION_ID", raising=False)
    probe = LogindSessionProbe(run=Logind(), gdbus="gdbus")
    assert probe.session_path() == SESSION
    assert probe.state() == (False, True)


def test_unavailable_without_bus_emits_nothing() -> None:
    probe = LogindSessionProbe(run=lambda args, timeout: (1, ""), gdbus="gdbus")
    got: list[tuple[object, ...]] = []
    probe.start(got.append)
    probe.stop(1.0)
    assert not probe.available()
    assert probe.state() == (None, None)
    assert got == []


def test_unavailable_without_gdbus() -> None:
    probe = LogindSessionProbe(run=lambda args, timeout: (0, "(<true>,)"), gdbus="")
    assert not probe.available()


def test_start_emits_current_state_once() -> None:
    bus = Logind(locked=False, auto_works=True)
    probe = LogindSessionProbe(run=bus, gdbus="/nonexistent/gdbus")
    got: list[tuple[object, ...]] = []
    probe.start(got.append)  # the monitor process cannot start: no change events, no crash
    probe.stop(1.0)
    assert len(got) == 1
    assert got[0][0] == RAW_SESSION and got[0][2:] == (False, True)


FAKE_GDBUS = """#!/bin/sh
# A stand-in for gdbus: answers logind property reads from files, and its
# "monitor" prints whatever the test appends to the events file.
dir=$(dirname "$0")
case "$1" in
  call)
    for last in "$@"; do :; done
    case "$last" in
      LockedHint) echo "(<$(cat "$dir/locked")>,)" ;;
      Active) echo "(<true>,)" ;;
      c7) echo "(objectpath '/org/freedesktop/login1/session/c7',)" ;;
      *) exit 1 ;;
    esac ;;
  monitor) exec tail -n 0 -f "$dir/events" ;;
  *) exit 2 ;;
esac
"""


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script stands in for gdbus")
def test_lock_changes_arrive_through_the_monitor_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gdbus = tmp_path / "gdbus"
    gdbus.write_text(FAKE_GDBUS)
    gdbus.chmod(0o755)
    (tmp_path / "locked").write_text("false")
    events = tmp_path / "events"
    events.write_text("")
    monkeypatch.setenv("XDG_SESSION_ID", "c7")
    got: list[tuple[object, ...]] = []
    probe = LogindSessionProbe(gdbus=str(gdbus))
    probe.start(got.append)
    try:
        assert probe.session_path() == "/org/freedesktop/login1/session/c7"
        wait_for(lambda: probe._monitor is not None, 5, "the monitor process")
        for value in ("true", "false"):
            (tmp_path / "locked.new").write_text(value)
            (tmp_path / "locked.new").replace(tmp_path / "locked")  # atomic for readers
            count = len(got)

            def notified(value: str = value, count: int = count) -> bool:
                # re-sent until seen: the monitor may still be starting (tail -n 0)
                with events.open("a") as fh:
                    fh.write(
                        "/org/freedesktop/login1/session/c7: org.freedesktop.DBus.Properties."
                        "PropertiesChanged ('org.freedesktop.login1.Session', "
                        f"{{'LockedHint': <{value}>}}, @as [])\n"
                    )
                return len(got) > count

            wait_for(notified, 5, f"locked={value}")
    finally:
        start = time.monotonic()
        probe.stop(2.0)
        assert time.monotonic() - start < 2.0
    assert [e[0] for e in got] == [RAW_SESSION] * 3
    assert [e[2:] for e in got] == [(False, True), (True, True), (False, True)]
    assert probe._monitor is not None and probe._monitor.poll() is not None
