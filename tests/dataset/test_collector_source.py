"""``dataset build --from`` a collector's data, on both storage backends.

Two agents (two device keys, two people) upload with the real uploader to a
real collector on loopback; their chunk headers carry no pseudonym (agents
with device keys never write one), so every pseudonym in the export comes
from the collector's index. The folder is built from while the collector
runs, then copied into a fleet backend (SeaweedFS + PostgreSQL) with
``collector copy`` and built from ``s3://`` too: the same rows.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.collector.identities import derive
from deskcorder.dataset._export import iter_rows
from deskcorder.policy.model import Upload
from deskcorder.upload.uploader import Uploader, pending_chunks
from tests.collector.helpers import (
    ENROLL,
    PSEUDONYM_KEY,
    TEST_CLAIMS,
    CollectorProc,
    install_key,
    key_no,
)
from tests.conftest import Cli
from tests.dataset.spool import make_spool
from tests.services import FleetTarget
from tests.xserver import wait_for

PEOPLE = {  # login -> (session, device key)
    "alice": ("20261127T090000Z-aaaaaaaa", key_no(21)),
    "bob": ("20261128T090000Z-bbbbbbbb", key_no(22)),
}


def pseudonym(login: str) -> str:
    return derive(PSEUDONYM_KEY.encode(), login, TEST_CLAIMS["machine_id"]).user


def upload(collector: CollectorProc, root: Path, login: str) -> None:
    """``login``'s agent records one session and the real uploader delivers it."""
    session, key = PEOPLE[login]
    spool = make_spool(root / f"spool-{login}", [(session, None)], device=key.device)
    install_key(spool, key)
    settings = Upload(endpoint=collector.url, enroll_secret=ENROLL, timeout_s=5.0)
    claims = {**TEST_CLAIMS, "login": login}
    up = Uploader(settings, spool, claims=claims, backoff_base=0.05)
    up.start()
    try:
        wait_for(lambda: not pending_chunks(spool), 30, f"{login}'s session uploaded")
    finally:
        up.stop(5)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProc]:
    root = tmp_path_factory.mktemp("collector")
    proc = CollectorProc(root).start()
    try:
        for login in PEOPLE:
            upload(proc, root, login)
        yield proc
    finally:
        proc.stop()


def build(cli: Cli, source: str, out: Path, *extra: str, **env: str) -> Any:
    done = cli.run(
        "dataset", "build", "--from", source, "--out", str(out), "--purpose", "analysis",
        *extra, **env,
    )  # fmt: skip
    return done


def lineage(out: Path) -> list[dict[str, Any]]:
    folder = out.with_name(out.name + ".lineage")
    return [
        json.loads(x) for f in sorted(folder.glob("*.jsonl")) for x in f.read_text().splitlines()
    ]


def rows(out: Path) -> list[dict[str, Any]]:
    return sorted(iter_rows(out), key=lambda r: (r["session"], r["episode"], r["step"]))


def test_local_collector_pseudonyms_come_from_its_index_and_erase_finds_them(
    cli: Cli, collector: CollectorProc, tmp_path: Path
) -> None:
    data = collector.data
    admin = collector.admin("GET", "/v1/admin/sessions").json()["sessions"]
    users = {s["session"]: s["user"] for s in admin}
    machines = {s["session"]: s["machine"] for s in admin}
    assert users == {session: pseudonym(login) for login, (session, _) in PEOPLE.items()}
    # a body the running collector is receiving, and chunk files it never acknowledged
    (data / "tmp" / "in-flight").write_bytes(b"a request body")
    stray = data / "chunks" / "20261129T090000Z-cccccccc"
    shutil.copytree(data / "chunks" / PEOPLE["bob"][0], stray)

    out = tmp_path / "ds"
    done = build(cli, str(data), out)

    assert done.returncode == 0, done.stderr
    assert (data / "tmp" / "in-flight").exists()  # read only: nothing of the collector's touched
    assert collector.healthy()
    entries = lineage(out)
    assert {(e["session"], e["user"], e["machine"]) for e in entries} == {
        (s, users[s], machines[s]) for s in users
    }
    devices = {session: key.device for session, key in PEOPLE.values()}
    assert all(e["device"] == devices[e["session"]] for e in entries)
    got = rows(out)
    assert {r["session"] for r in got} == set(users)  # the unindexed folder is not read
    assert all(r["user"] == users[r["session"]] and r["machine"] for r in got)

    alice = pseudonym("alice")
    erased = cli.run("dataset", "erase", "--lineage", str(out) + ".lineage", "--user", alice)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"erased {alice}: 2 episodes, 7 rows, ")
    assert {r["user"] for r in rows(out)} == {pseudonym("bob")}


def test_fleet_collector_builds_the_same_rows_with_jobs(
    cli: Cli, collector: CollectorProc, fleet: FleetTarget, tmp_path: Path
) -> None:
    copied = cli.run(
        "collector", "copy", "--from", str(collector.data), "--to-store", fleet.store,
        "--s3-endpoint", fleet.endpoint, "--to-db", fleet.db, **fleet.env,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    local = tmp_path / "local"
    assert build(cli, str(collector.data), local, "--images", "none").returncode == 0

    remote = tmp_path / "remote"
    s3 = ("--s3-endpoint", fleet.endpoint, "--db", fleet.db)
    done = build(cli, fleet.store, remote, *s3, "--jobs", "2", **fleet.env)

    assert done.returncode == 0, done.stderr
    strip = ("observation", "after")  # images: none here, copied there
    want = [{k: v for k, v in r.items() if k not in strip} for r in rows(local)]
    assert [{k: v for k, v in r.items() if k not in strip} for r in rows(remote)] == want
    assert all((remote / r["observation"]).is_file() for r in rows(remote) if r["observation"])
    info = json.loads((remote / "dataset_info.json").read_text())
    assert info["shards"] == ["part-0-of-2", "part-1-of-2"]
    # both agents saw the same four screens: four images, each copied once
    assert info["counts"]["missing_images"] == 0 and info["counts"]["images"] == 4
    assert {(e["session"], e["user"]) for e in lineage(remote)} == {
        (e["session"], e["user"]) for e in lineage(local)
    }

    embed = tmp_path / "embed"
    assert build(cli, fleet.store, embed, *s3, "--images", "embed", **fleet.env).returncode == 0
    import hashlib

    import pyarrow.parquet as pq

    table = pq.read_table(embed / "data", columns=["observation_sha256", "observation_bytes"])
    shots = [r for r in table.to_pylist() if r["observation_sha256"]]
    assert shots and all(
        hashlib.sha256(r["observation_bytes"]).hexdigest() == r["observation_sha256"] for r in shots
    )
    link = build(cli, fleet.store, tmp_path / "link", *s3, "--images", "link", **fleet.env)
    assert link.returncode == 2 and link.stderr.strip().count("\n") == 0
    assert f"--images link: {fleet.store} is not on this machine" in link.stderr
    assert not (tmp_path / "link").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "s3://bucket/prefix"], "--from s3://bucket/prefix: needs --db postgresql://"),
        (["--from", "s3://", "--db", "postgresql://u@h/d"], "--from 's3://': expected s3://B"),
        (["--db", "postgresql://u@h/d"], "--db and --s3-endpoint go with --from s3://"),
    ],
)
def test_fleet_source_options_are_one_line_errors(
    cli: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    base = ["--from", str(tmp_path), "--out", str(tmp_path / "ds")]
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    done = cli.run("dataset", "build", *base, *args, **env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert not (tmp_path / "ds").exists()
