"""The README and docs stay true: every documented command exists, CI runs the README's tests."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import Cli

ROOT = Path(__file__).parents[2]


def readme_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [
        line
        for block in re.findall(r"```sh\n(.*?)```", quick, re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    assert commands == ["bash .ci/demo", "bash .ci/test"]
    assert "exec bash .ci/test" in (ROOT / ".ci" / "run").read_text()


def test_every_documented_command_has_help(cli: Cli) -> None:
    documented = set()
    for block in readme_blocks():
        for line in block.splitlines():
            words = line.split("#")[0].split()
            if len(words) >= 2 and words[0] == "deskcorder" and not words[1].startswith("-"):
                sub = [words[1]] + (
                    [words[2]]
                    if words[1]
                    in ("policy", "collector", "service", "consent", "review", "dataset")
                    and len(words) > 2
                    and not words[2].startswith("-")
                    else []
                )
                documented.add(tuple(w.split("|")[0] for w in sub))
    assert ("run",) in documented and ("inspect",) in documented
    for sub in sorted(documented):
        done = cli.run(*sub, "--help")
        assert done.returncode == 0, (sub, done.stderr)
        assert "usage: deskcorder" in done.stdout


def test_exit_codes_in_readme_match_the_cli() -> None:
    from deskcorder import cli, errors

    text = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d) \| (.+?) \|$", text, re.M))
    assert set(table) == {"0", "1", "2", "3", "4", "5"}
    assert errors.PolicyError.exit_code == 2 and errors.UsageError.exit_code == 2
    assert errors.EnvironmentUnsupported.exit_code == 3
    assert errors.AlreadyRunning.exit_code == 4 and errors.AgentNotRunning.exit_code == 5
    assert cli.__doc__ is not None
    for code in table:
        assert f"    {code}  " in cli.__doc__
