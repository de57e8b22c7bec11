"""The X11 backend with a real accessibility bus: typed text in `full` mode and elements.

One desktop (Xvfb, openbox, a session bus, at-spi-bus-launcher), one GTK 3 form
(name entry, password entry, button), one Tk window (Tk exposes no
accessibility) and one agent (`keystrokes = "full"`, `elements = true`) serve
the whole module; each test does its part in turn and reads what the agent wrote.
Keys are typed by xdotool, clicks made by xdotool: real X input, real AT-SPI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder import read_session
from tests.a11y.desktop import FORM_TITLE, Desktop, a11y_desktop
from tests.e2e.agent import AgentProcess
from tests.privacy.helpers import SECRETS, assert_absent, spool_bytes
from tests.xserver import wait_for

pytestmark = pytest.mark.x11

ROOT = Path(__file__).parents[2]
TK_TITLE = "plain - Tk"
POLICY = """\
[capture]
keystrokes = "full"
elements = true
mouse_move_hz = 10.0

[spool]
flush_interval_s = 0.2
"""


class Session:
    def __init__(self, desk: Desktop, agent: AgentProcess, tmp: Path) -> None:
        self.desk = desk
        self.agent = agent
        self.spool = tmp / "spool"

    def status(self) -> dict[str, Any]:
        reply: dict[str, Any] = json.loads(self.agent.cli("status", "--json"))
        return reply

    def secure_now(self) -> bool | None:
        value: bool | None = self.status()["privacy"]["secure_input_now"]
        return value

    def records(self) -> list[dict[str, Any]]:
        return self.agent.records()

    def type(self, text: str) -> None:
        self.desk.x.xdotool("type", "--delay", "20", text)

    def key(self, name: str) -> None:
        self.desk.x.xdotool("key", name)

    def click_and_wait(self, widget: str) -> dict[str, Any]:
        """Click the widget's centre; the bd record of this click."""
        before = len(self.records())
        x, y = self.desk.click(widget)

        def new_bd() -> dict[str, Any] | None:
            for rec in self.records()[before:]:
                if rec["k"] == "bd" and (rec["x"], rec["y"]) == (x, y):
                    return rec
            return None

        found = wait_for(new_bd, 10, "the click's bd record")
        assert isinstance(found, dict)
        return found

    def elements_for(self, bd: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """The el records of a click, waiting up to ``timeout`` for one (may be none)."""

        def found() -> list[dict[str, Any]]:
            return [r for r in self.records() if r["k"] == "el" and r.get("act") == bd["t"]]

        try:
            wait_for(found, timeout, "el record")
        except AssertionError:
            return []
        return found()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("a11y")
    with a11y_desktop() as desk:
        desk.start_form()
        desk.x.tk_window(TK_TITLE, x=600, y=60)
        with AgentProcess(desk.x, tmp, POLICY) as agent:  # type: ignore[arg-type]
            agent.wait_ready()
            yield Session(desk, agent, tmp)


def test_header_says_full_with_accessibility(session: Session) -> None:
    wait_for(lambda: session.records(), 10, "the first chunk")
    header = session.agent.cli("status", "--json")
    assert json.loads(header)["privacy"]["keystrokes"] == "full"
    assert json.loads(header)["privacy"]["secure_input"].startswith("AT-SPI")


def test_normal_entry_text_is_recorded_scrubbed(session: Session) -> None:
    session.desk.x.activate(FORM_TITLE)
    session.desk.click("entry")
    wait_for(lambda: session.secure_now() is False, 10, "the name entry identified")
    session.type(f"hello {SECRETS['email']}")
    session.key("Return")
    rec = session.agent.wait_record({"k": "text", "text": "hello [EMAIL]"}, 10)
    assert rec["win"] == int(session.desk.x.window_ids(FORM_TITLE)[0])
    assert_absent(spool_bytes(session.spool), SECRETS["email"])


def test_password_entry_never_reaches_disk(session: Session) -> None:
    session.desk.x.activate(FORM_TITLE)
    session.desk.click("password")
    wait_for(lambda: session.secure_now() is True, 10, "the password entry identified")
    before = len(session.records())
    session.type(SECRETS["password"])
    session.key("Tab")  # to the button: the text so far is written ([SECURE])
    session.agent.wait_record({"k": "text", "text": "[SECURE]"}, 10)
    wait_for(lambda: session.secure_now() is False, 10, "the button identified")
    typed = [r for r in session.records()[before:] if r["k"] in ("kd", "ku") and "cls" in r]
    assert typed == []  # not even the key kinds: they would tell the password's length
    assert_absent(spool_bytes(session.spool), SECRETS["password"])


def test_window_without_accessibility_records_key_kinds_only(session: Session) -> None:
    wid = int(session.desk.x.activate(TK_TITLE))
    wait_for(lambda: session.status()["privacy"]["accessibility"]["epoch"] > 0, 5, "reset")
    before = len(session.records())
    session.type("quiet words")
    session.key("Return")
    rec = session.agent.wait_record({"k": "text", "win": wid}, 10)
    assert rec["text"] == "[UNKNOWN]"
    assert session.secure_now() is None
    kinds = [r.get("cls") for r in session.records()[before:] if r["k"] == "kd"]
    assert kinds.count("letter") == len("quietwords")
    assert_absent(spool_bytes(session.spool), "quiet words", "quiet")


def test_click_on_button_records_role_and_label(session: Session) -> None:
    session.desk.x.activate(FORM_TITLE)
    bd = session.click_and_wait("button")
    [el] = session.elements_for(bd, timeout=10)
    assert (el["src"], el["role"], el["name"]) == ("click", "push button", "Sign up now")
    left, top, width, height = el["rect"]
    assert left <= bd["x"] < left + width and top <= bd["y"] < top + height
    assert el["path"][0] == "frame" and el["path"][-1] == "push button"
    assert el["win"] == int(session.desk.x.window_ids(FORM_TITLE)[0])
    # the focused element is recorded too (the entry, the password entry: without a name)
    focus = [r for r in session.records() if r["k"] == "el" and r["src"] == "focus"]
    assert {"text", "password text"} <= {r["role"] for r in focus}
    assert all("name" not in r for r in focus if r["role"] == "password text")


def test_hung_application_leaves_capture_running(session: Session) -> None:
    desk = session.desk
    desk.x.activate(FORM_TITLE)
    lookups = session.status()["privacy"]["accessibility"]["lookups"]
    desk.hang_form(True)
    try:
        bd = session.click_and_wait("button")
        # the lookup gives up within its limit; the element is absent
        wait_for(
            lambda: session.status()["privacy"]["accessibility"]["lookups"] != lookups,
            10,
            "the lookup given up",
        )
        # capture goes on meanwhile: another window, typed keys, the status answers
        wid = int(desk.x.activate(TK_TITLE))
        session.type("go on")
        session.key("Return")
        session.agent.wait_record({"k": "text", "win": wid, "text": "[UNKNOWN]"}, 10)
    finally:
        desk.hang_form(False)
    assert not [r for r in session.records() if r["k"] == "el" and r.get("act") == bd["t"]]
    # the form answers again (after the helper's back-off): its button is found again
    desk.x.activate(FORM_TITLE)

    def found_again() -> bool:
        bd = session.click_and_wait("button")
        return bool(session.elements_for(bd, timeout=1.0))

    wait_for(found_again, 40, "the element of a click after the hang")


def test_research_lab_policy_records_full_keystrokes_here(session: Session, tmp_path: Path) -> None:
    """configs/research-lab.toml on this Linux desktop with accessibility: the chunk header
    says keystrokes full and elements 1 (upload switched off: no collector here)."""
    lab = (ROOT / "configs" / "research-lab.toml").read_text()
    lab = lab.replace('endpoint = "https://collector.lab.example"', 'endpoint = ""')
    with AgentProcess(session.desk.x, tmp_path, lab) as agent:  # type: ignore[arg-type]
        agent.wait_ready()
        directory = wait_for(agent.session_dir, 10, "the session's first chunk")
        assert isinstance(directory, Path)
        header = read_session(directory).headers()[0]
        assert agent.terminate() < 5
    assert (header["keystrokes"], header["elements"]) == ("full", 1)
