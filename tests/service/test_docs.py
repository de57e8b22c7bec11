"""docs/deployment.md stays true: every deskcorder command it shows exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Cli

DOC = Path(__file__).resolve().parents[2] / "docs/deployment.md"
GROUPS = ("policy", "service")


def documented_commands() -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", DOC.read_text(), re.S | re.M):
        if lang not in ("sh", ""):
            continue
        for line in block.splitlines():
            words = line.split("#")[0].replace("sudo ", "").split()
            if len(words) >= 2 and words[0] == "deskcorder" and not words[1].startswith("-"):
                sub = words[:3] if words[1] in GROUPS and len(words) > 2 else words[:2]
                found.add(tuple(sub[1:]))
    return found


def test_every_command_in_the_deployment_guide_exists(cli: Cli) -> None:
    commands = documented_commands()
    assert ("service", "install") in commands and ("doctor",) in commands
    for sub in sorted(commands):
        done = cli.run(*sub, "--help")
        assert done.returncode == 0, (sub, done.stderr)


def test_every_service_option_in_the_reference_exists(cli: Cli) -> None:
    text = DOC.read_text().split("## 7.", 1)[1]
    for action, options in re.findall(r"^deskcorder service (\w+)\s+(.*)$", text, re.M):
        help_text = cli.run("service", action, "--help").stdout
        for option in re.findall(r"--[a-z-]+", options):
            assert option in help_text, (action, option)
