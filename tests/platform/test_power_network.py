"""Battery and metered-network probes at the platform seam, and the rules built on them.

psutil's battery reading, Windows' connection cost and macOS's path monitor are
replaced where the OS is called; NetworkManager's ``Metered`` is read over a
real D-Bus session bus from a mock NetworkManager (python-dbusmock).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from deskcorder.conditions import Conditions, power_rule, upload_hold
from deskcorder.events import K_POWER, RAW_MARK, validate_record
from deskcorder.platform import power
from deskcorder.platform.base import Battery
from deskcorder.platform.linux.network import NetworkManagerProbe, parse_gdbus_uint32
from deskcorder.platform.macos.network import PathProbe
from deskcorder.platform.windows.network import (
    NLM_CONNECTION_COST_APPROACHINGDATALIMIT,
    NLM_CONNECTION_COST_FIXED,
    NLM_CONNECTION_COST_ROAMING,
    NLM_CONNECTION_COST_UNRESTRICTED,
    CostProbe,
)
from deskcorder.policy.model import Power, Upload
from tests.core.helpers import make_policy
from tests.services import unavailable
from tests.xserver import wait_for

# -- psutil -------------------------------------------------------------------------------


def test_battery_reading_through_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    reading = SimpleNamespace(percent=42.7, secsleft=3600, power_plugged=False)
    monkeypatch.setattr(power, "_sensors", lambda: reading)
    assert power.battery() == Battery(percent=42.7, plugged=False)
    monkeypatch.setattr(power, "_sensors", lambda: None)  # a desktop
    assert power.battery() is None
    reading = SimpleNamespace(percent=80, secsleft=-2, power_plugged=None)
    monkeypatch.setattr(power, "_sensors", lambda: reading)
    assert power.battery() == Battery(percent=80.0, plugged=None)

    def unsupported() -> Any:
        raise AttributeError("sensors_battery")

    monkeypatch.setattr(power, "_sensors", unsupported)
    assert power.battery() is None


def test_psutil_answers_here() -> None:
    """The real call works on this machine (no battery in a VM: None)."""
    assert power.battery() is None or isinstance(power.battery(), Battery)


# -- the power rule -----------------------------------------------------------------------

CFG = Power(
    battery_screenshot_spacing_s=5,
    screenshots_off_below_percent=20,
    uploads_wait_below_percent=30,
    critical_percent=10,
)


@pytest.mark.parametrize(
    ("battery", "shots", "spacing", "uploads"),
    [
        (None, "on", 0, True),  # a desktop
        (Battery(15, True), "on", 0, True),  # low but charging
        (Battery(None, None), "on", 0, True),  # cannot tell: no reason to hold back
        (Battery(90, False), "spaced", 5, True),
        (Battery(25, False), "spaced", 5, False),
        (Battery(19.5, False), "off", 0, False),
        (Battery(10, False), "off", 0, False),  # critical
        (Battery(None, False), "spaced", 5, True),  # on battery, charge unknown
    ],
)
def test_power_rule(battery: Battery | None, shots: str, spacing: float, uploads: bool) -> None:
    rule = power_rule(CFG, battery)
    assert (rule.screenshots, rule.spacing_s, rule.uploads) == (shots, spacing, uploads)


def test_power_rule_says_why() -> None:
    assert power_rule(CFG, Battery(25, False)).why == (
        "on battery at 25%: screenshots at most every 5 s, uploads wait below 30%"
    )
    assert "critical (<= 10%)" in power_rule(CFG, Battery(8, False)).why
    assert power_rule(Power(), Battery(50, False)).why == "on battery at 50%"
    off = Power(critical_percent=0, screenshots_off_below_percent=0, uploads_wait_below_percent=0)
    assert power_rule(off, Battery(1, False)).screenshots == "on"  # 0 = never


def test_upload_hold() -> None:
    fine = power_rule(CFG, None)
    assert upload_hold(Upload(), fine, None) is None
    assert upload_hold(Upload(), fine, False) is None
    assert upload_hold(Upload(), fine, True) == "metered network"
    assert upload_hold(Upload(on_metered="upload"), fine, True) is None
    low = power_rule(CFG, Battery(25, False))
    assert upload_hold(Upload(on_metered="upload"), low, False) == (
        "on battery at 25% (policy [power])"
    )


class Probes:
    def __init__(self) -> None:
        self.battery: Battery | None = Battery(90, True)
        self.metered: bool | None = False
        self.fail = False

    def power(self) -> Battery | None:
        if self.fail:
            raise OSError("sysfs went away")
        return self.battery

    def network(self) -> bool | None:
        return self.metered


class FakeHost:
    def __init__(self) -> None:
        self.emitted: list[tuple[Any, ...]] = []

    def emit(self, raw: tuple[Any, ...]) -> None:
        self.emitted.append(raw)


def test_conditions_tell_on_changes_and_record_what_capture_loses() -> None:
    probes = Probes()
    policy = make_policy(power=CFG.model_dump())
    cond = Conditions(policy, probes.power, probes.network, poll_s=3600)
    host = FakeHost()
    woken: list[int] = []
    cond.on_change.append(lambda: woken.append(1))
    cond.start(host)  # type: ignore[arg-type]
    try:
        assert host.emitted == [] and cond.upload_hold() is None
        probes.metered = True
        assert cond.refresh() and cond.upload_hold() == "metered network" and woken == [1]
        assert host.emitted == []  # the network does not change what is captured
        probes.battery = Battery(15, False)
        assert cond.refresh() and cond.screenshots() == (False, 0.0)
        ((tag, _, kind, fields),) = host.emitted
        assert (tag, kind) == (RAW_MARK, K_POWER)
        assert fields == {"battery": True, "percent": 15, "screenshots": "off"}
        validate_record({"k": kind, "t": 0, **fields})
        assert not cond.refresh()  # nothing new
        probes.fail = True  # a failing probe means unknown, never a crash
        assert cond.refresh() and cond.screenshots() == (True, 0.0) and cond.errors == 1
        status = cond.status()
        assert status["battery"] is None and status["metered"] is True
        assert status["upload_hold"] == "metered network"
    finally:
        cond.stop(1)


def test_conditions_poll_by_themselves() -> None:
    probes = Probes()
    cond = Conditions(make_policy(), probes.power, probes.network, poll_s=0.01)
    cond.start(FakeHost())  # type: ignore[arg-type]
    try:
        probes.metered = True
        wait_for(lambda: cond.upload_hold() == "metered network", 5, "the next poll")
    finally:
        cond.stop(1)


# -- Windows: the Network List Manager's connection cost ----------------------------------


def test_windows_cost_flags() -> None:
    assert CostProbe(lambda: NLM_CONNECTION_COST_UNRESTRICTED)() is False
    assert CostProbe(lambda: NLM_CONNECTION_COST_FIXED)() is True
    assert CostProbe(lambda: NLM_CONNECTION_COST_UNRESTRICTED | NLM_CONNECTION_COST_ROAMING)()
    approaching = NLM_CONNECTION_COST_UNRESTRICTED | NLM_CONNECTION_COST_APPROACHINGDATALIMIT
    assert CostProbe(lambda: approaching)() is False
    assert CostProbe(lambda: 0)() is None


# -- macOS: the path monitor ----------------------------------------------------------------


class FakePathAPI:
    def __init__(self) -> None:
        self.handler: Any = None
        self.started = 0

    def start(self, on_path: Any) -> object:
        self.started += 1
        self.handler = on_path
        return object()

    def expensive(self, path: dict[str, bool]) -> bool:
        return path["expensive"]

    def constrained(self, path: dict[str, bool]) -> bool:
        return path["constrained"]


def test_macos_path_monitor() -> None:
    api = FakePathAPI()
    probe = PathProbe(api)
    assert probe() is None and api.started == 1  # no path reported yet
    api.handler({"expensive": False, "constrained": False})
    assert probe() is False
    api.handler({"expensive": True, "constrained": False})  # iPhone hotspot
    assert probe() is True
    api.handler({"expensive": False, "constrained": True})  # Low Data Mode
    assert probe() is True and api.started == 1


# -- Linux: NetworkManager over a real D-Bus (python-dbusmock) --------------------------------


def test_parse_gdbus_uint32() -> None:
    assert parse_gdbus_uint32("(<uint32 4>,)\n") == 4
    assert parse_gdbus_uint32("(<'x'>,)") is None


@pytest.fixture(scope="module")
def session_bus() -> Iterator[dict[str, str]]:
    """A private session bus (dbus-daemon); the env to reach it."""
    if not shutil.which("dbus-daemon") or not shutil.which("gdbus"):
        unavailable("dbus-daemon and gdbus are needed (Debian: dbus, libglib2.0-bin)")
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    try:
        yield {**os.environ, "DBUS_SESSION_BUS_ADDRESS": address}
    finally:
        proc.kill()
        proc.communicate(timeout=5)


@pytest.fixture
def mock_nm(session_bus: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """python-dbusmock's NetworkManager template on the session bus (Debian's python3)."""
    python = "/usr/bin/python3"
    check = subprocess.run([python, "-c", "import dbusmock"], capture_output=True, check=False)
    if check.returncode != 0:
        unavailable("python-dbusmock is needed (Debian: python3-dbusmock)")
    proc = subprocess.Popen(
        [python, "-m", "dbusmock", "--session", "--template", "networkmanager"],
        env=session_bus,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session_bus["DBUS_SESSION_BUS_ADDRESS"])

    def gdbus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gdbus", "call", "--session", "--dest", "org.freedesktop.NetworkManager",
             "--object-path", "/org/freedesktop/NetworkManager", *args],
            capture_output=True, text=True, env=session_bus, check=False,
        )  # fmt: skip

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return gdbus("--method", "org.freedesktop.NetworkManager.state").returncode == 0

    try:
        wait_for(up, 15, "the mock NetworkManager on the bus")

        added: list[int] = []

        def set_metered(value: int) -> None:
            method = (
                "org.freedesktop.DBus.Properties.Set"
                if added
                else ("org.freedesktop.DBus.Mock.AddProperty")
            )
            done = gdbus(
                "--method", method,
                "org.freedesktop.NetworkManager", "Metered", f"<uint32 {value}>",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            added.append(value)

        yield set_metered
    finally:
        proc.kill()
        proc.communicate(timeout=5)


def test_network_manager_probe_on_a_real_bus(mock_nm: Any) -> None:
    probe = NetworkManagerProbe(bus="session")
    assert probe() is None and probe.last_error  # no Metered property yet: unknown
    for value, metered in ((1, True), (2, False), (3, True), (4, False), (0, None)):
        mock_nm(value)
        assert probe() is metered, value
    assert probe.last_error is None


def test_network_manager_probe_without_network_manager(
    session_bus: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session_bus["DBUS_SESSION_BUS_ADDRESS"])
    probe = NetworkManagerProbe(bus="session")
    assert probe() is None and "NetworkManager" in (probe.last_error or "")
