"""The accessibility backends with their OS calls replaced.

Linux: the agent's side of the AT-SPI helper against a scripted helper process
(real pipes, real timeouts, real restarts) and the helper's request handling
with a fake libatspi. Windows (UI Automation) and macOS (AX) with fake API
objects. The real AT-SPI bus is exercised in tests/a11y/.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deskcorder.events import WindowInfo
from deskcorder.platform import select_backend
from deskcorder.platform.linux import accessibility as linux_a11y
from deskcorder.platform.linux.accessibility import AtspiAccessibility
from deskcorder.platform.linux.atspi_helper import Helper
from deskcorder.platform.macos.accessibility import AXAccessibility
from deskcorder.platform.windows.accessibility import UiaAccessibility
from tests.xserver import wait_for

FAKE_HELPER = Path(__file__).with_name("fake_atspi_helper.py")
WIN = WindowInfo(id=7, title="Form", app="form", pid=1, x=0, y=0, width=500, height=400)


def test_linux_answers_limits_and_restarts() -> None:
    acc = AtspiAccessibility(
        [sys.executable, str(FAKE_HELPER)], call_limit_s=0.2, stuck_s=0.5, backoff_s=(0.1, 0.2)
    )
    changes: list[int] = []
    acc.start(lambda: changes.append(1))
    try:
        wait_for(lambda: changes, 10, "the helper ready")  # then: ask again
        el = acc.focused(WIN, detail=True)
        assert el is not None and (el.role, el.name, el.rect) == ("text", "Name", (1, 2, 30, 40))
        assert el.path == ("frame", "text") and not el.password
        pw = acc.focused(WindowInfo(id=7, pid=2), detail=False)
        assert pw is not None and pw.password
        assert acc.focused(WindowInfo(id=7), detail=False) is None  # no pid: not asked
        assert acc.focused(None, detail=False) is None
        assert acc.element_at(900, 900, WIN) is None  # outside the window: never asked
        assert acc.element_at(10, 10, WIN) is not None
        # a helper that stops answering: unknown within the limit, replaced when silent
        first = acc.status()["helper"]
        hung = WindowInfo(id=8, pid=3)
        wait_for(lambda: acc.focused(hung, False) is None and acc.restarts, 10, "restart")
        wait_for(lambda: acc.focused(WIN, False) is not None, 10, "the new helper")
        assert acc.status()["helper"] not in (first, None)
        # a helper that exits: the next request after the back-off starts another
        assert acc.focused(WindowInfo(id=9, pid=4), False) is None
        wait_for(lambda: acc.focused(WIN, False) is not None, 10, "restarted after exit")
    finally:
        acc.stop(2)
    assert acc.focused(WIN, False) is None  # stopped: nothing is started again


def test_linux_unavailable_without_a_session_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    monkeypatch.setattr(linux_a11y, "_a11y_bus_address", lambda: pytest.fail("no autolaunch"))
    found = select_backend("x11").accessibility()  # type: ignore[misc]
    assert found.probe is None and "no D-Bus session bus" in found.description
    monkeypatch.setattr(linux_a11y, "_gi_atspi_installed", lambda: "No module named 'gi'")
    found = linux_a11y.find_accessibility()
    assert found.probe is None and "apt install python3-gi gir1.2-atspi-2.0" in found.description
    [check] = linux_a11y.doctor_checks({})
    assert not check.ok and not check.required and "key kinds only" in check.detail


def test_linux_doctor_says_how_to_turn_toolkit_accessibility_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(linux_a11y, "_why_unavailable", lambda env=None: None)
    monkeypatch.setattr(linux_a11y, "_a11y_status", lambda: {"IsEnabled": False})
    monkeypatch.setattr(linux_a11y, "_toolkit_accessibility_setting", lambda: False)
    bus, toolkit = linux_a11y.doctor_checks({})
    assert bus.ok and not toolkit.ok and not toolkit.required
    for hint in ("--force-renderer-accessibility", "GNOME_ACCESSIBILITY=1", "AtkWrapper"):
        assert hint in toolkit.detail
    monkeypatch.setattr(linux_a11y, "_a11y_status", lambda: {"IsEnabled": True})
    assert linux_a11y.doctor_checks({})[1].ok


class _Boom(Exception):
    pass


class FakeLibAtspi:
    """Just enough libatspi for Helper.handle: every call into an app times out."""

    calls = 0

    class StateType:
        ACTIVE, FOCUSED = 1, 2

    @classmethod
    def get_desktop(cls, index: int) -> Any:
        cls.calls += 1
        raise _Boom("timeout from dbind")


def test_helper_skips_late_requests_and_backs_off_from_a_hung_app() -> None:
    out = io.StringIO()
    helper = Helper(FakeLibAtspi, out=out)
    late = {"id": 1, "op": "focused", "pid": 5, "deadline": time.monotonic() - 1}
    helper.handle(json.dumps(late))
    assert FakeLibAtspi.calls == 0
    req = {"id": 2, "op": "focused", "pid": 5, "deadline": time.monotonic() + 5}
    helper.handle(json.dumps(req))
    helper.handle(json.dumps({**req, "id": 3}))  # pid 5 timed out: not asked again for now
    helper.handle("not json")
    assert FakeLibAtspi.calls == 1
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies == [{"id": 1, "late": True}, {"id": 2, "el": None}, {"id": 3, "el": None}]


# -- Windows: UI Automation ------------------------------------------------------------------
class FakeUIA:
    """Elements by name; the desktop ("root") belongs to another process."""

    def __init__(self) -> None:
        self.focus: str | None = "edit"
        self.es_password = False
        self.table: dict[str, dict[str, Any]] = {
            "edit": {"type": 50004, "name": "User", "pid": 1, "password": False},
            "pwd": {"type": 50004, "name": "Password", "pid": 1, "password": True},
            "button": {"type": 50000, "name": "OK", "pid": 1, "password": False},
            "pane": {"type": 50033, "name": None, "pid": 1, "password": False},
            "window": {"type": 50032, "name": "Form", "pid": 1, "password": False},
            "root": {"type": 50033, "name": "Desktop", "pid": 4, "password": False},
            "other": {"type": 50000, "name": "Elsewhere", "pid": 99, "password": False},
        }
        self.parents = {"edit": "pane", "pwd": "pane", "button": "pane", "pane": "window",
                        "window": "root"}  # fmt: skip

    def focused(self) -> str | None:
        return self.focus

    def at(self, x: int, y: int) -> str:
        return "button" if x < 100 else "other"

    def parent(self, element: str) -> str | None:
        return self.parents.get(element)

    def props(self, element: str) -> dict[str, Any]:
        return {**self.table[element], "rect": (10, 20, 30, 40)}

    def focused_hwnd_is_password(self) -> bool:
        return self.es_password


def test_windows_focused_element_password_and_point() -> None:
    fake = FakeUIA()
    acc = UiaAccessibility(api=lambda: fake)
    acc.start(lambda: None)
    el = acc.focused(WIN, detail=True)
    assert el is not None and (el.role, el.name, el.password) == ("text", "User", False)
    assert el.path == ("frame", "panel", "text")  # up to the window, not the desktop
    fake.focus = "pwd"
    assert acc.focused(WIN, detail=False) == acc.focused(WIN, detail=False)
    el = acc.focused(WIN, detail=False)
    assert el is not None and el.password and el.name is None
    fake.focus, fake.es_password = "edit", True  # a classic Win32 edit with ES_PASSWORD
    el = acc.focused(WIN, detail=False)
    assert el is not None and el.password
    fake.focus = "other"  # the focus is in another process than the window's
    assert acc.focused(WIN, detail=False) is None
    button = acc.element_at(50, 50, WIN)
    assert button is not None and (button.role, button.name) == ("push button", "OK")
    assert acc.element_at(500, 50, WIN) is None  # another process's element
    term = WindowInfo(id=3, pid=1, process="WindowsTerminal.exe")
    fake.focus, fake.es_password = "edit", False
    el = acc.focused(term, detail=False)
    assert el is not None and el.unverified
    acc.stop(1)


# -- macOS: AX ---------------------------------------------------------------------------------
class FakeAX:
    def __init__(self) -> None:
        self.secure = False
        self.focus: str | None = "field"
        self.table: dict[str, dict[str, Any]] = {
            "field": {"role": "AXTextField", "subrole": "", "name": "Name", "pid": 1},
            "secure": {"role": "AXTextField", "subrole": "AXSecureTextField", "name": "PW",
                       "pid": 1},
            "button": {"role": "AXButton", "subrole": "", "name": "OK", "pid": 1},
            "group": {"role": "AXGroup", "subrole": "", "name": None, "pid": 1},
            "window": {"role": "AXWindow", "subrole": "", "name": "Form", "pid": 1},
            "app": {"role": "AXApplication", "subrole": "", "name": "Form", "pid": 1},
            "dock": {"role": "AXButton", "subrole": "", "name": "Dock", "pid": 55},
        }  # fmt: skip
        self.parents = {"field": "group", "secure": "group", "button": "group",
                        "group": "window", "window": "app"}  # fmt: skip

    def secure_input_enabled(self) -> bool | None:
        return self.secure

    def ax_focused(self, pid: int) -> str | None:
        return self.focus

    def ax_at(self, x: int, y: int) -> str:
        return "button" if x < 100 else "dock"

    def ax_parent(self, element: str) -> str | None:
        return self.parents.get(element)

    def ax_props(self, element: str) -> dict[str, Any]:
        return {**self.table[element], "rect": (1, 2, 3, 4)}


def test_macos_focused_element_secure_field_and_point() -> None:
    fake = FakeAX()
    acc = AXAccessibility(api=lambda: fake)
    el = acc.focused(WIN, detail=True)
    assert el is not None and (el.role, el.name, el.path) == (
        "text", "Name", ("frame", "panel", "text"),
    )  # fmt: skip
    fake.focus = "secure"
    el = acc.focused(WIN, detail=False)
    assert el is not None and el.password and el.role == "password text"
    fake.focus, fake.secure = "field", True  # Secure Event Input: some secure field
    el = acc.focused(WIN, detail=False)
    assert el is not None and el.password
    fake.secure, fake.focus = False, None
    assert acc.focused(WIN, detail=False) is None
    button = acc.element_at(50, 50, WIN)
    assert button is not None and (button.role, button.name) == ("push button", "OK")
    assert acc.element_at(500, 50, WIN) is None  # the Dock: another process
    fake.focus = "field"
    term = WindowInfo(id=2, pid=1, app="com.apple.Terminal")
    el = acc.focused(term, detail=False)
    assert el is not None and el.unverified


@pytest.mark.parametrize("name", ["windows", "macos", "fake"])
def test_every_backend_finds_its_accessibility(name: str) -> None:
    backend = select_backend(name)
    assert backend.accessibility is not None
    found = backend.accessibility()
    assert found.probe is not None and found.description
