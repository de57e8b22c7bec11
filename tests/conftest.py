"""Shared fixtures. Every test gets its own runtime dir (lock + control socket)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _runtime_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("rt")
    path.chmod(0o700)
    monkeypatch.setenv("DESKCORDER_RUNTIME_DIR", str(path))
    return path


class Cli:
    """Runs ``python -m deskcorder`` as a real subprocess."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deskcorder", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **env},
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "deskcorder", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **env},
        )


@pytest.fixture
def cli(_runtime_dir: Path) -> Iterator[Cli]:
    env = dict(os.environ)
    env["DESKCORDER_RUNTIME_DIR"] = str(_runtime_dir)
    yield Cli(env)
