"""The real servers the fleet backend is tested on behave as the backend relies on."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from pathlib import Path

import obstore
import psycopg
import pytest
from obstore.exceptions import AlreadyExistsError

from tests.services import FleetTarget, Postgres, SeaweedFS


def test_conditional_put_has_exactly_one_winner(seaweedfs: SeaweedFS, fleet: FleetTarget) -> None:
    store = seaweedfs.store(fleet.prefix)
    bodies = [os.urandom(64 * 1024) for _ in range(8)]
    start = threading.Barrier(len(bodies))

    def create(body: bytes) -> bool:
        start.wait()
        try:
            obstore.put(store, "race", body, mode="create")
        except AlreadyExistsError:
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as ex:
        won = list(ex.map(create, bodies))
    assert won.count(True) == 1
    assert bytes(obstore.get(store, "race").bytes()) == bodies[won.index(True)]
    assert fleet.object_keys() == ["race"]


def test_s3_refuses_wrong_credentials(seaweedfs: SeaweedFS) -> None:
    from obstore.store import S3Store

    intruder = S3Store(
        seaweedfs.bucket,
        endpoint=seaweedfs.endpoint,
        access_key_id=seaweedfs.access_key,
        secret_access_key="not-the-secret-key",
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    with pytest.raises(obstore.exceptions.BaseError):
        obstore.put(intruder, "x", b"x")


def test_postgres_runs_unprivileged_and_wants_a_password(postgres: Postgres) -> None:
    assert postgres.proc is not None
    status = Path(f"/proc/{postgres.proc.pid}/status").read_text()
    uid = int(status.split("Uid:")[1].split()[0])
    assert uid != 0
    assert oct(postgres.root.stat().st_mode & 0o777) == "0o700"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(postgres.dsn(), password="wrong", connect_timeout=5)
    with psycopg.connect(postgres.dsn(), password=postgres.password) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
