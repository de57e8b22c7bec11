"""Shared fixtures. Every test gets its own runtime dir (lock + control socket)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import FleetTarget, Postgres, SeaweedFS, missing_server, unavailable


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


# -- SeaweedFS and PostgreSQL, once per test session (tests/services.py) --------------------


def need(what: str) -> None:
    """Skip a test whose real server cannot run here (off Linux, or not installed); under
    ``bash .ci/test`` (which installs them all) a missing one fails the test instead."""
    why = missing_server(what)
    if why is not None:
        unavailable(why)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 server (SeaweedFS), started once for the whole session."""
    need("seaweedfs")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster, started once for the whole session."""
    need("postgres")
    server = Postgres()
    try:
        yield server.start()
    finally:
        server.stop()


_fleet_ids = itertools.count()


class FleetFactory:
    """Fleet backends for one test: each a fresh bucket prefix and a fresh database."""

    def __init__(self, seaweedfs: SeaweedFS, postgres: Postgres) -> None:
        self.seaweedfs = seaweedfs
        self.postgres = postgres

    def __call__(self, *, migrated: bool = True) -> FleetTarget:
        name = f"t{os.getpid()}_{next(_fleet_ids)}"
        target = FleetTarget(
            store=f"s3://{self.seaweedfs.bucket}/{name}",
            endpoint=self.seaweedfs.endpoint,
            db=self.postgres.create_database(name),
            env={**self.seaweedfs.env, **self.postgres.env},
            seaweedfs=self.seaweedfs,
            prefix=name,
        )
        if migrated:
            target.migrate()
        return target


@pytest.fixture
def fleet_factory(seaweedfs: SeaweedFS, postgres: Postgres) -> FleetFactory:
    return FleetFactory(seaweedfs, postgres)


@pytest.fixture
def fleet(fleet_factory: FleetFactory) -> FleetTarget:
    """A migrated fleet backend of this test's own (bucket prefix + database)."""
    return fleet_factory()
