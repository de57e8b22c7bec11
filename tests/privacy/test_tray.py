"""The tray indicator: state mapping (pure), menu actions, and the real icon under Xvfb."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deskcorder.capture.tray import (
    BLOCKED,
    EXCLUDED,
    PAUSED,
    RECORDING,
    TrayComponent,
    captured_summary,
    icon_image,
    icon_title,
    tray_state,
)
from deskcorder.storage.faults import describe
from tests.conftest import Cli
from tests.core.helpers import make_policy
from tests.xserver import wait_for, xserver

FULL = describe("disk_full")


@pytest.mark.parametrize(
    ("status", "state", "title"),
    [
        ({"recording": True}, RECORDING, "deskcorder: recording"),
        (
            {"recording": False, "blocked": "user", "gate_pause_left_s": 299},
            PAUSED,
            "deskcorder: paused (5 min left)",
        ),
        ({"recording": False, "blocked": "user"}, PAUSED, "deskcorder: paused until you resume"),
        (
            {"recording": False, "blocked": None, "excluded": "private_browsing"},
            EXCLUDED,
            "deskcorder: not recording this window (excluded)",
        ),
        (
            {"recording": False, "blocked": "schedule"},
            BLOCKED,
            "deskcorder: not recording (schedule)",
        ),
        (  # the storage gate says why and what to do (the agent's status["storage"])
            {
                "recording": False,
                "blocked": "storage",
                "storage": {"what": FULL[0], "todo": FULL[1]},
            },
            BLOCKED,
            f"deskcorder: not recording: {FULL[0]}; {FULL[1]}",
        ),
    ],
)
def test_state_and_title(status: dict[str, Any], state: str, title: str) -> None:
    assert tray_state(status) == state
    assert icon_title(status) == title


def test_title_carries_the_agent_alerts() -> None:
    """A revoked device (or a withdrawn consent) shows in the tray, while recording goes on."""
    line = "uploads stopped: the collector's administrator revoked this device"
    status = {"recording": True, "alerts": [line]}
    assert tray_state(status) == RECORDING
    assert icon_title(status) == f"deskcorder: recording; {line}"


def test_icons_differ_per_state() -> None:
    images = {s: icon_image(s).tobytes() for s in (RECORDING, PAUSED, EXCLUDED, BLOCKED)}
    assert len(set(images.values())) == 4


class FakeAgent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.policy = make_policy(capture={"keystrokes": "shortcuts", "screenshots": False})
        self.keystrokes = "shortcuts"
        self.pipeline = None

        def handler(name: str) -> Any:
            def run(req: dict[str, Any]) -> dict[str, Any]:
                self.calls.append((name, req))
                if name == "pause" and len(self.calls) > 2:
                    raise PermissionError("pausing is not allowed")
                return {"ok": True}

            return run

        self.control_handlers = {n: handler(n) for n in ("pause", "resume")}


def test_menu_actions_call_the_control_handlers() -> None:
    tray = TrayComponent()
    agent = FakeAgent()
    tray.start(agent)  # type: ignore[arg-type]  # no DISPLAY in unit tests: no icon
    assert tray.status()["shown"] is False and tray.status()["unavailable"]
    tray.state = RECORDING
    tray.toggle()
    tray.state = PAUSED
    tray.toggle()
    assert agent.calls == [("pause", {"minutes": None}), ("resume", {})]
    assert tray.pause() == {"error": "pausing is not allowed"}  # refused: shown, not raised
    text = tray.what_is_captured()
    assert "shortcuts and special keys only" in text and "screenshots" not in text
    assert captured_summary(agent) == text  # type: ignore[arg-type]
    tray.stop(1)


@pytest.mark.x11
def test_tray_icon_visible_title_follows_state_and_click_toggles(cli: Cli, tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("pystray") is None:  # importing it needs a display
        pytest.skip("pystray not installed (pip install 'deskcorder[tray]')")
    if shutil.which("trayer") is None:
        pytest.skip("trayer not installed (apt-get install trayer)")
    with xserver() as x:
        trayer = subprocess.Popen(
            ["trayer", "--expand", "false", "--widthtype", "pixel", "--width", "100"],
            env=x.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        x.procs.append(trayer)

        def tree() -> str:
            # a window can vanish while xwininfo walks the tree (BadWindow): retry then
            return x.run("xwininfo", "-root", "-tree", check=False)

        wait_for(lambda: "panel" in tree(), 10, "trayer panel")
        from deskcorder.platform.linux.tray import x11_tray_manager_present

        wait_for(lambda: x11_tray_manager_present(x.display), 10, "tray selection owner")
        env = {"DISPLAY": x.display, "PYSTRAY_BACKEND": "xorg", "DESKCORDER_FAKE_REPEAT": "100"}
        agent = cli.start("run", "--backend", "fake", "--spool", str(tmp_path / "spool"), **env)
        try:

            def icon_line(text: str) -> str | None:
                return next((ln for ln in tree().splitlines() if text in ln), None)

            line = wait_for(lambda: icon_line('"deskcorder: recording"'), 20, "tray icon")
            assert "deskcorderSystemTrayIcon" in str(line)
            assert cli.run("pause", "--minutes", "5").returncode == 0
            line = wait_for(lambda: icon_line('"deskcorder: paused (5 min left)"'), 10, "paused")
            # a left click on the icon toggles pause/resume (pystray's xorg window
            # needed ButtonPressMask for clicks to arrive at all)
            wid = str(line).split()[0]
            x.xdotool("mousemove", "--window", wid, "5", "5", "click", "1")
            wait_for(lambda: icon_line('"deskcorder: recording"'), 10, "resumed by click")
            status = cli.run("status", "--json")
            assert '"recording": true' in status.stdout
        finally:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(10) == 0
            assert agent.stdout is not None and agent.stderr is not None
            agent.stdout.close()
            agent.stderr.close()


@pytest.mark.x11
def test_doctor_and_agent_without_a_system_tray(cli: Cli, tmp_path: Path) -> None:
    import importlib.util

    from deskcorder.platform.linux.tray import x11_tray_manager_present

    assert x11_tray_manager_present("") is None  # no display: unknown
    with xserver(wm=False) as x:
        assert x11_tray_manager_present(x.display) is False
        out = cli.run("doctor", "--backend", "fake", "--spool", str(tmp_path / "s"),
                      DISPLAY=x.display)  # fmt: skip
        assert out.returncode == 0
        if importlib.util.find_spec("pystray") is not None:
            assert "[warn] tray icon: no system tray on this desktop" in out.stdout
