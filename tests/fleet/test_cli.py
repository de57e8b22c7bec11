"""`collector migrate` and `collector serve --store`: schema versions, secrets, one-line errors."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import psycopg
import pytest

from deskcorder.collector.backends.migrations import LATEST, MIGRATIONS
from tests.collector.helpers import ADMIN
from tests.collector.test_cli import one_line_error
from tests.conftest import Cli, FleetFactory
from tests.services import FleetTarget


def versions(target: FleetTarget) -> list[int]:
    with psycopg.connect(target.db, password=target.env["PGPASSWORD"]) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [int(r[0]) for r in rows]


def test_migrate_from_three_processes_at_once_applies_each_migration_once(
    cli: Cli, fleet_factory: FleetFactory
) -> None:
    target = fleet_factory(migrated=False)
    with concurrent.futures.ThreadPoolExecutor(3) as ex:
        runs = list(
            ex.map(
                lambda _: cli.run("collector", "migrate", "--db", target.db, **target.env),
                [0, 1, 2],
            )
        )
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    applied = [line for r in runs for line in r.stdout.splitlines() if line.startswith("applied")]
    assert applied == [f"applied migration {n}: {name}" for n, name, _ in MIGRATIONS]
    assert all(f"schema at version {LATEST}" in r.stdout for r in runs)
    assert versions(target) == [n for n, _, _ in MIGRATIONS]
    again = cli.run("collector", "migrate", "--db", target.db, **target.env)
    assert again.returncode == 0 and "applied" not in again.stdout


def test_serve_refuses_a_database_that_is_not_migrated(
    cli: Cli, fleet_factory: FleetFactory
) -> None:
    target = fleet_factory(migrated=False)
    done = cli.run("collector", "serve", *target.args(), "--port", "0", **target.env)
    assert done.returncode == 1
    one_line_error(done.stderr, f"schema version 0, this deskcorder needs {LATEST}")
    assert "collector migrate" in done.stderr


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"db": "postgresql://u:secret@127.0.0.1:5/db"}, "no password on the command line"),
        ({"db": "mysql://u@h/db"}, "expected postgresql://"),
        ({"store": "https://bucket/prefix"}, "expected s3://BUCKET/PREFIX"),
        ({"endpoint": "localhost:9000"}, "expected http(s)://HOST[:PORT]"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "S3 credentials missing"),
    ],
)
def test_bad_fleet_options_are_one_line_errors(
    cli: Cli, fleet: FleetTarget, change: dict[str, str], words: str
) -> None:
    store = change.get("store", fleet.store)
    endpoint = change.get("endpoint", fleet.endpoint)
    db = change.get("db", fleet.db)
    env = {**fleet.env, **{k: v for k, v in change.items() if k.isupper()}}
    args = ["--store", store, "--s3-endpoint", endpoint, "--db", db, "--port", "0"]
    done = cli.run("collector", "serve", *args, **env)
    assert done.returncode == 2
    one_line_error(done.stderr, words)


def test_wrong_s3_credentials_are_a_one_line_error(cli: Cli, fleet: FleetTarget) -> None:
    env = {**fleet.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    done = cli.run("collector", "serve", *fleet.args(), "--port", "0", **env)
    assert done.returncode == 1
    one_line_error(done.stderr, f"{fleet.store} at {fleet.endpoint}")


def test_credentials_from_files(cli: Cli, fleet: FleetTarget, tmp_path: Path) -> None:
    """S3 keys and the database password from files: nothing secret in the environment."""
    creds = tmp_path / "s3.env"
    creds.write_text(
        "# the bucket's keys\n"
        f"AWS_ACCESS_KEY_ID={fleet.env['AWS_ACCESS_KEY_ID']}\n"
        f"AWS_SECRET_ACCESS_KEY='{fleet.env['AWS_SECRET_ACCESS_KEY']}'\n"
    )
    password = tmp_path / "db-password"
    password.write_text(fleet.env["PGPASSWORD"] + "\n")
    (tmp_path / "admin").write_text(ADMIN)
    env = {k: "" for k in fleet.env}
    proc = cli.start(
        "collector", "serve", *fleet.args(), "--port", "0",
        "--s3-credentials-file", str(creds), "--db-password-file", str(password), **env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("collector listening on http://127.0.0.1:"), line
        assert f"objects in {fleet.store} at {fleet.endpoint}" in line
    finally:
        proc.terminate()
        proc.wait(15)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
