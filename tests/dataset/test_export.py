"""The export: Parquet/JSONL, purpose limitation, lineage and erase, shards, readers."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from deskcorder.dataset import BuildOptions, build, episodes, erase
from deskcorder.dataset._export import ANALYSIS_COLUMNS, COLUMNS, iter_rows
from deskcorder.errors import UsageError
from deskcorder.storage.blobs import BlobStore
from tests.conftest import Cli
from tests.dataset.spool import UNIX0, make_spool

ALICE = ("20261127T090000Z-aaaaaaaa", "u-alice")
BOB = ("20261128T090000Z-bbbbbbbb", "u-bob")
EXPECTED = [  # (kind, code) of each session, in order; episode 1 begins after the pause
    ("click", "pyautogui.click(x=100, y=100)", 0),
    ("double_click", "pyautogui.doubleClick(x=300, y=200)", 0),
    (
        "drag",
        "pyautogui.moveTo(x=400, y=400); "
        "pyautogui.dragTo(x=480, y=440, duration=0.15, button='left')",
        0,
    ),
    ("scroll", "pyautogui.scroll(-2, x=480, y=440)", 0),
    ("type", "pyautogui.write('LD')", 0),
    ("hotkey", "pyautogui.hotkey('ctrl', 's')", 0),
    ("click", "pyautogui.click(x=1500, y=300)", 1),
]


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_spool(tmp_path_factory.mktemp("src") / "spool", [ALICE, BOB])


def rows_of(out: Path) -> list[dict[str, Any]]:
    return list(iter_rows(out))


def by_episode(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["episode_id"], []).append(row)
    return {k: sorted(v, key=lambda r: r["step"]) for k, v in out.items()}


def test_training_export_has_no_person_identifier_nor_wall_clock(
    spool: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "ds"
    info = build(spool, BuildOptions(out=out))
    files = sorted(out.glob("data/day=*/*.parquet"))
    assert [f.relative_to(out).as_posix() for f in files] == [
        "data/day=2026-11-27/part-0-of-1.parquet",
        "data/day=2026-11-28/part-0-of-1.parquet",
    ]
    table = pq.read_table(files[0])
    assert table.column_names == [c[0] for c in COLUMNS]
    text = json.dumps(table.to_pylist()) + json.dumps(info)
    for secret in ("u-alice", "d-u-alice", ALICE[0], "2026-11-27T", str(UNIX0)[:10]):
        assert secret not in text
    rows = rows_of(out)
    episodes_ = by_episode(rows)
    assert len(episodes_) == 4
    assert all(re.fullmatch(r"[0-9a-f]{16}", e) for e in episodes_)
    for steps in episodes_.values():
        assert steps[0]["t_start_ms"] == 0  # relative to the episode's start
    got = sorted([(r["day"], r["kind"], r["code"]) for r in rows], key=lambda r: (r[0], r[1], r[2]))
    want = sorted(
        [(day, kind, code) for day in ("2026-11-27", "2026-11-28") for kind, code, _ in EXPECTED]
    )
    assert got == want
    assert info["purpose"] == "training" and "not for assessing" in info["purpose_note"]
    assert info["counts"]["episodes"] == 4 and info["counts"]["actions"] == 14
    assert info["policies"] == [
        {
            "policy_digest": "ab" * 32,
            "keystrokes": "redacted",
            "mouse_move_hz": 0,
            "streams": {"mouse": True, "keyboard": True, "window": True, "screenshots": True},
            "pre_action": False,
            "agent": "deskcorder/test",
            "format_version": 1,
        }
    ]
    assert [c["name"] for c in info["columns"]] == table.column_names


def test_rows_reference_images_beside_them(spool: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build(spool, BuildOptions(out=out))
    store = BlobStore(spool / "blobs")
    rows = rows_of(out)
    click = next(r for r in rows if r["kind"] == "click" and r["x"] == 100)
    assert click["observation"].startswith("images/") and click["observation"].endswith(".webp")
    assert (out / click["observation"]).read_bytes() == store.read(click["observation_sha256"])
    assert click["observation_exact"] is False and click["observation_age_ms"] == 15
    assert (out / click["after"]).read_bytes() == store.read(click["after_sha256"])
    assert (click["window_title"], click["window_app"]) == ("notes.txt - Editor", "gedit")
    assert (click["nx"], click["ny"], click["screen"]) == (
        round(100 / 1920, 5),
        round(100 / 1080, 5),
        [0, 0, 1920, 1080],
    )
    drag = next(r for r in rows if r["kind"] == "drag")
    assert drag["path"][0] == {"t_ms": drag["t_start_ms"], "x": 400, "y": 400}
    assert drag["path"][-1]["x"] == 480


def test_analysis_export_keeps_pseudonyms_and_times(spool: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    info = build(spool, BuildOptions(out=out, purpose="analysis", images="none"))
    rows = rows_of(out)
    assert set(rows[0]) >= {c[0] for c in ANALYSIS_COLUMNS}
    first = next(r for r in rows if r["session"] == ALICE[0] and r["step"] == 0)
    assert (first["user"], first["device"], first["episode_id"]) == (
        "u-alice",
        "d-u-alice",
        f"{ALICE[0]}/0",
    )
    assert first["t_start_utc"].isoformat() == "2026-11-27T09:00:00.020000+00:00"
    assert (first["record_first"], first["record_last"]) == (4, 5)
    assert first["observation"] is None and first["observation_sha256"]
    assert info["purpose"] == "analysis" and "personal data" in info["purpose_note"]
    assert not (out / "images").exists()


def test_other_readers_read_the_export_as_is(
    spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "ds"
    build(spool, BuildOptions(out=out))
    want = Counter(kind for kind, _, _ in EXPECTED) + Counter(kind for kind, _, _ in EXPECTED)
    glob = str(out / "data" / "day=*" / "*.parquet")

    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(
        f"SELECT kind, count(*) FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY kind"
    ).fetchall()
    assert Counter(dict(got)) == want
    days = duckdb.sql(
        f"SELECT DISTINCT day FROM read_parquet('{glob}', hive_partitioning=true) ORDER BY 1"
    ).fetchall()
    assert [str(d[0]) for d in days] == ["2026-11-27", "2026-11-28"]

    polars = pytest.importorskip("polars")
    frame = polars.read_parquet(glob, hive_partitioning=True)
    assert Counter(frame["kind"].to_list()) == want
    assert frame.filter(polars.col("kind") == "drag")["path"].to_list()[0][0]["x"] == 400

    import pyarrow.dataset as pads

    table = pads.dataset(out / "data", format="parquet", partitioning="hive").to_table()
    assert Counter(table["kind"].to_pylist()) == want
    import pyarrow.parquet as pq

    assert pq.read_table(out / "data").num_rows == 14

    datasets = pytest.importorskip("datasets")
    hf = datasets.load_dataset(
        "parquet", data_files=glob, split="train", cache_dir=str(tmp_path / "hf")
    )
    assert Counter(hf["kind"]) == want
    drag = next(row for row in hf if row["kind"] == "drag")
    assert drag["path"][0]["x"] == 400 and drag["observation"].startswith("images/")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_erase_removes_a_persons_rows_and_images(spool: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "ds"
    build(spool, BuildOptions(out=out, fmt=fmt))
    lineage = tmp_path / "ds.lineage"
    lineage_file = lineage / "part-0-of-1.jsonl"
    assert stat.S_IMODE(lineage_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(lineage.stat().st_mode) == 0o700
    entries = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    alice_ids = {e["episode_id"] for e in entries if e["user"] == "u-alice"}
    assert len(alice_ids) == 2 and {e["session"] for e in entries} == {ALICE[0], BOB[0]}
    alice_images = {sha for e in entries if e["user"] == "u-alice" for sha in e["images"]}
    assert alice_images and all(list((out / "images").glob(f"*/{s}*")) for s in alice_images)

    done = erase(lineage, "u-alice")

    assert done == {"episodes": 2, "rows": 7, "images": len(alice_images)}
    rows = rows_of(out)
    assert len(rows) == 7 and not alice_ids & {r["episode_id"] for r in rows}
    assert not any(list((out / "images").glob(f"*/{s}*")) for s in alice_images)
    for row in rows:  # bob's images stay
        assert (out / row["observation"]).exists() if row["observation"] else True
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["counts"]["actions"] == 7 and info["counts"]["episodes"] == 2
    remaining = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    assert {e["user"] for e in remaining} == {"u-bob"}
    assert erase(lineage, "u-alice") == {"episodes": 0, "rows": 0, "images": 0}


def test_shards_together_equal_one_build_and_jobs_use_processes(
    spool: Path, tmp_path: Path
) -> None:
    def summary(out: Path) -> list[tuple[str, str]]:
        return sorted((r["day"], r["code"]) for r in rows_of(out))

    whole = tmp_path / "whole"
    build(spool, BuildOptions(out=whole))
    sharded = tmp_path / "sharded"
    for i in (0, 1):
        build(spool, BuildOptions(out=sharded, shard=(i, 2)))
    assert summary(sharded) == summary(whole)
    info = json.loads((sharded / "dataset_info.json").read_text())
    assert info["shards"] == ["part-0-of-2", "part-1-of-2"] and info["counts"]["actions"] == 14
    jobs = tmp_path / "jobs"
    build(spool, BuildOptions(out=jobs), jobs=2)
    assert summary(jobs) == summary(whole)


def test_since_keeps_episodes_that_began_that_day_or_later(spool: Path, tmp_path: Path) -> None:
    import datetime as dt

    out = tmp_path / "ds"
    info = build(spool, BuildOptions(out=out, since=dt.date(2026, 11, 28)))
    assert {r["day"] for r in rows_of(out)} == {"2026-11-28"}
    assert info["counts"]["actions"] == 7


def test_images_embedded_or_linked(spool: Path, tmp_path: Path) -> None:
    store = BlobStore(spool / "blobs")
    build(spool, BuildOptions(out=tmp_path / "e", images="embed"))
    import pyarrow.parquet as pq

    table = pq.read_table(next((tmp_path / "e").glob("data/day=*/*.parquet")))
    row = table.to_pylist()[0]
    assert row["observation_bytes"] == store.read(row["observation_sha256"])
    assert row["observation"] is None
    build(spool, BuildOptions(out=tmp_path / "l", images="link"))
    linked = next((tmp_path / "l" / "images").glob("*/*.webp"))
    assert linked.stat().st_ino == store.path(linked.stem).stat().st_ino


def test_episodes_iterator_pairs_observations_with_actions(spool: Path) -> None:
    eps = list(episodes(spool))
    assert [(e.session, e.number, len(e)) for e in eps] == [
        (ALICE[0], 0, 6),
        (ALICE[0], 1, 1),
        (BOB[0], 0, 6),
        (BOB[0], 1, 1),
    ]
    image, action = eps[0].steps[0]
    assert action.kind == "click" and image is not None and image.read_bytes()[:4] == b"RIFF"
    from PIL import Image

    with Image.open(image) as img:
        assert img.size == (64, 36)
    assert [a.kind for _, a in eps[1]] == ["click"]


def collector_data(spool: Path, data: Path) -> Path:
    """A collector data folder holding the spool's chunks and blobs as a collector from before
    device keys stored them: its own index (rows naming the header's user) and folders, the
    chunk and blob files byte for byte."""
    import hashlib
    import sqlite3

    from deskcorder.collector.backends import open_local
    from deskcorder.storage.chunk import read_chunk

    open_local(data).close()
    db = sqlite3.connect(data / "index.sqlite3")
    for session in (spool / "sessions").iterdir():
        dest = data / "chunks" / session.name
        dest.mkdir(parents=True)
        for seq, chunk in enumerate(sorted(session.glob("*.jsonl.zst"))):
            body = chunk.read_bytes()
            (dest / chunk.name).write_bytes(body)
            decoded = read_chunk(chunk)
            if seq == 0:
                header = decoded.header
                db.execute(
                    "INSERT INTO sessions VALUES (?, ?, ?, 0)",
                    (session.name, header["device"], header["user"]),
                )
            db.execute(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, 0)",
                (session.name, seq, hashlib.sha256(body).hexdigest(), len(body), 1),
            )
    db.commit()
    db.close()
    for blob in (spool / "blobs").glob("*/*"):
        (data / "blobs" / blob.parent.name).mkdir(parents=True, exist_ok=True)
        (data / "blobs" / blob.parent.name / blob.name).write_bytes(blob.read_bytes())
    return data


def test_collector_data_folder_is_a_source(spool: Path, tmp_path: Path) -> None:
    from deskcorder.commands.dataset import source_opener

    data = collector_data(spool, tmp_path / "collector")
    with pytest.raises(UsageError, match="a collector data folder: open it with"):
        build(data, BuildOptions(out=tmp_path / "no"))
    out = tmp_path / "ds"
    info = build(source_opener(data), BuildOptions(out=out))
    assert info["counts"]["actions"] == 14 and info["counts"]["missing_images"] == 0
    assert [(e.session, len(e)) for e in episodes(source_opener(data))][:2] == [
        (ALICE[0], 6),
        (ALICE[0], 1),
    ]


# -- the command line ------------------------------------------------------------------------


def test_cli_build_and_head(cli: Cli, spool: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = ("dataset", "build", "--from", str(spool), "--out", str(out), "--format", "jsonl")
    done = cli.run(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dataset: 4 episodes, 14 actions, 8 images in ")
    assert done.stderr == ""  # no progress bar without a terminal
    head = cli.run("dataset", "head", str(out), "-n", "2")
    rows = [json.loads(line) for line in head.stdout.splitlines()]
    assert [r["code"] for r in rows] == [EXPECTED[0][1], EXPECTED[1][1]]
    again = cli.run(
        "dataset", "build", "--from", str(spool), "--out", str(out), "--format", "jsonl"
    )
    assert again.returncode == 2
    assert "already holds shard 0/1" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "/nonexistent"], "/nonexistent: no such folder"),
        (["--shard", "3/2"], "--shard '3/2': need 0 <= I < N"),
        (["--since", "yesterday"], "--since 'yesterday': expected a date YYYY-MM-DD"),
        (["--drag-px", "0"], "--drag-px: threshold drag_px must be at least 1"),
        (["--jobs", "0"], "--jobs must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    cli: Cli, spool: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    base = {"--from": str(spool), "--out": str(tmp_path / "ds")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    done = cli.run("dataset", "build", *[x for kv in base.items() for x in kv])
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert not (tmp_path / "ds").exists()


def test_readme_dataset_commands_work(cli: Cli, spool: Path, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Turn recordings into training data", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", section, re.S)[0]
    commands = [line.split() for line in block.splitlines() if line.strip()]
    assert [c[:3] for c in commands] == [
        [".venv/bin/deskcorder", "dataset", "build"],
        [".venv/bin/deskcorder", "dataset", "head"],
    ]
    collector_data(spool, tmp_path / "demo-collector")
    outputs = []
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "deskcorder", *command[1:]],
            cwd=tmp_path,
            env=cli.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    rows = [json.loads(line) for line in outputs[1].splitlines()]
    assert [r["kind"] for r in rows] == ["click", "double_click", "drag"]
    assert all((tmp_path / "demo-dataset" / r["observation"]).is_file() for r in rows)
