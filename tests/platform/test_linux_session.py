"""logind session probe: discovery and parsing with a scripted gdbus runner."""

from __future__ import annotations

import pytest

from deskcorder.events import RAW_SESSION
from deskcorder.platform.linux.session import (
    LogindSessionProbe,
    parse_gdbus_bool,
    parse_gdbus_object_path,
)

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
