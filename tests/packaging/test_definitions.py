"""Package definitions that are built elsewhere (macOS, Windows) or by the slow .deb test:
the checks that can run here."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "packaging"
WORKFLOW = REPO / ".github/workflows/packages.yml"
SHELL_SCRIPTS = [
    PKG / "linux/build-deb.sh",
    PKG / "linux/debian/postinst",
    PKG / "linux/debian/prerm",
    PKG / "linux/debian/postrm",
    PKG / "macos/build-pkg.sh",
    PKG / "macos/scripts/postinstall",
    PKG / "macos/uninstall.sh",
]
WIX = "{http://wixtoolset.org/schemas/v4/wxs}"


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(PKG)))
def test_shell_scripts_parse_and_are_executable(script: Path) -> None:
    shell = "bash" if script.read_text().startswith("#!/usr/bin/env bash") else "sh"
    done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_installing_a_package_starts_no_capture() -> None:
    for script in (PKG / "linux/debian/postinst", PKG / "macos/scripts/postinstall"):
        text = script.read_text()
        commands = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith(("#", "echo"))
        ]
        for line in commands:
            assert not re.search(r"systemctl|launchctl|schtasks|service install| run\b", line), (
                f"{script.name}: {line}"
            )
        assert "nothing records yet" in text


def test_wix_definition() -> None:
    root = ET.parse(PKG / "windows/deskcorder.wxs").getroot()
    package = root.find(f"{WIX}Package")
    assert package is not None and package.get("Scope") == "perMachine"
    props = {p.get("Id"): p.get("Value") for p in package.iter(f"{WIX}Property")}
    assert props["ENABLESERVICE"] == "0"
    actions = {a.get("Id"): a.get("Value", "") for a in package.iter(f"{WIX}CustomAction")}
    assert "service install --all-users" in actions["SetEnableServiceCmd"]
    assert "pythonw.exe" in actions["SetEnableServiceCmd"]
    assert "service uninstall --all-users" in actions["SetDisableServiceCmd"]
    sequence = {c.get("Action"): c.get("Condition", "") for c in package.iter(f"{WIX}Custom")}
    assert 'ENABLESERVICE="1"' in sequence["EnableService"]
    assert 'REMOVE="ALL"' in sequence["DisableService"]


def test_workflow_builds_every_package_with_scripts_that_exist() -> None:
    text = WORKFLOW.read_text()
    for script in ("packaging/linux/build-deb.sh", "packaging/macos/build-pkg.sh"):
        assert script in text and (REPO / script).is_file()
    assert "packaging/windows/build-msi.ps1" in text
    assert (PKG / "windows/build-msi.ps1").is_file()
    for job in ("deb:", "macos:", "windows:"):
        assert f"\n  {job}\n" in text
