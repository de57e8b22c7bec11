"""The pipeline through storage faults on real file systems (no X server).

A failed write never stops the pipeline: it enters the ``storage`` gate, holds
what it could not write, counts the input it cannot record, and resumes by
itself with one ``gap`` record (cause, count, since) once writing works again.
"""

from __future__ import annotations

import logging
import random
import shutil
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.capture.pipeline import Pipeline
from deskcorder.events import RAW_FOCUS, RAW_KEY, RAW_TITLE, WindowInfo, validate_record
from deskcorder.policy.model import Policy
from deskcorder.storage.chunk import read_chunk
from deskcorder.storage.spool import Spool
from tests.core.helpers import header, make_policy
from tests.fs import fill, require_mount, tmpfs
from tests.xserver import wait_for

WIN = WindowInfo(id=7, title="editor", app="Editor")
RNG = random.Random(19)
LETTERS = string.ascii_lowercase


def now() -> int:
    return time.monotonic_ns()


def words(n: int) -> str:
    """Random lower-case words: they compress little, and the title scrubber keeps them
    (a long hex string would become ``[SECRET]``)."""
    return " ".join("".join(RNG.choice(LETTERS) for _ in range(6)) for _ in range(n))


def titles(n: int) -> list[tuple[Any, ...]]:
    """Title changes of random words (they fill a page fast)."""
    return [(RAW_TITLE, now(), WIN.id, words(16)) for _ in range(n)]


def keys(n: int) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for _ in range(n):
        out.append((RAW_KEY, now(), True, "a", None, None))
        out.append((RAW_KEY, now(), False, "a", None, None))
    return out


_RUNS: list[Run] = []


@pytest.fixture(autouse=True)
def _stop_pipelines() -> Iterator[None]:
    """A failed test must not leave a pipeline writing into an unmounted file system."""
    yield
    while _RUNS:
        _RUNS.pop().pipeline.stop(5)


class Run:
    def __init__(self, root: Path, policy: Policy) -> None:
        self.spool = Spool(root, policy.spool)
        self.spool.ensure()
        self.pipeline = Pipeline(policy, self.spool, header, session_id="s")
        self.pipeline.start()
        _RUNS.append(self)
        self.feed([(RAW_FOCUS, now(), WIN)])

    def feed(self, raws: list[tuple[Any, ...]]) -> None:
        for raw in raws:
            self.pipeline.queue.put_control(raw)

    def written(self, n: int) -> None:
        wait_for(lambda: self.pipeline.written_records >= n, 5, f"{n} records written")

    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in sorted((self.spool.sessions_dir / "s").glob("*.jsonl.zst")):
            decoded = read_chunk(chunk)
            assert decoded.complete
            out += decoded.records
        return out


@pytest.fixture
def small_fs() -> Iterator[Path]:
    require_mount()
    with tmpfs(4096) as where:
        yield where


def policy(**spool: Any) -> Policy:
    return make_policy(spool={"flush_interval_s": 0.05, "min_free_mb": 0, **spool})


def test_full_disk_pauses_holds_counts_and_resumes(small_fs: Path) -> None:
    run = Run(small_fs / "spool", policy())
    before = titles(5)
    run.feed(before)
    run.written(7)  # start, focus, 5 titles
    filler = fill(small_fs)
    held = titles(200)  # written into the failing flush: held in memory, not lost
    run.feed(held)
    wait_for(lambda: run.pipeline.storage is not None, 5, "the storage gate")
    status = run.pipeline.status()
    assert status["blocked"] == "storage" and not status["recording"]
    assert status["storage"]["cause"] == "disk_full" and status["storage"]["errno"] == "ENOSPC"
    assert status["storage"]["ok"] is False and "free some space" in status["storage"]["todo"]
    run.feed(keys(10))  # 20 input events that cannot be recorded
    wait_for(lambda: run.pipeline.storage.not_recorded == 20, 5, "events counted")
    filler.unlink()
    wait_for(lambda: run.pipeline.storage is None, 10, "writing works again")
    after = titles(3)
    run.feed(after)
    assert run.pipeline.stop(5)
    records = run.records()
    for record in records:
        validate_record(record)
    written_titles = [r["title"] for r in records if r["k"] == "title"]
    assert written_titles == [raw[3] for raw in before + held + after]  # once each, in order
    assert not any(r["k"] == "kd" for r in records)
    (gap,) = [r for r in records if r["k"] == "gap"]
    assert gap["cause"] == "disk_full" and gap["dropped"] == 20 and gap["errno"] == "ENOSPC"
    kinds = [(r["k"], r.get("src")) for r in records if r["k"] in ("pause", "resume", "gap")]
    assert kinds == [("pause", "storage"), ("gap", None), ("resume", "storage")]
    pause = next(r for r in records if r["k"] == "pause")
    assert pause["t"] == gap["since"] <= gap["t"]
    ts = [r["t"] for r in records]
    assert ts == sorted(ts)
    assert records[records.index(gap) + 2]["k"] == "focus"  # the window, after resume
    assert not list(run.spool.sessions_dir.glob("*/*.part"))


def test_low_free_space_pauses_before_the_disk_is_full(small_fs: Path) -> None:
    run = Run(small_fs / "spool", policy(min_free_mb=2))
    run.written(2)
    filler = fill(small_fs, leave_bytes=1 << 20)
    wait_for(lambda: run.pipeline.storage is not None, 5, "the storage gate")
    assert run.pipeline.storage.cause == "low_disk"
    # the open chunk was sealed while there was room; nothing waits to be written
    wait_for(lambda: run.pipeline.status()["chunks_sealed"] == 1, 5, "chunk sealed")
    assert not list(run.spool.sessions_dir.glob("*/*.part"))
    run.feed(keys(4))
    wait_for(lambda: run.pipeline.storage.not_recorded == 8, 5, "events counted")
    free_then = shutil.disk_usage(small_fs).free
    assert free_then >= 1 << 19  # never written down to the last byte
    filler.unlink()
    wait_for(lambda: run.pipeline.storage is None, 5, "space back")
    assert run.pipeline.stop(5)
    records = run.records()
    (gap,) = [r for r in records if r["k"] == "gap"]
    assert gap["cause"] == "low_disk" and gap["dropped"] == 8 and "errno" not in gap


def test_spool_folder_deleted_under_the_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "home" / "spool"
    run = Run(root, policy())
    run.feed(titles(3))
    run.written(5)
    shutil.rmtree(tmp_path / "home")
    (tmp_path / "home").write_text("a file where the folder was")  # cannot be re-created
    wait_for(lambda: run.pipeline.storage is not None, 5, "the storage gate")
    assert run.pipeline.storage.cause == "spool_missing"
    run.feed(keys(3))
    wait_for(lambda: run.pipeline.storage.not_recorded == 6, 5, "events counted")
    (tmp_path / "home").unlink()
    wait_for(lambda: run.pipeline.storage is None, 10, "spool re-created")
    assert run.pipeline.stop(5)
    records = run.records()  # only what was written after the folder came back
    assert records[0]["k"] == "pause" and records[0]["src"] == "storage"
    assert records[1]["k"] == "gap" and records[1]["cause"] == "spool_missing"
    assert records[1]["dropped"] == 6
    assert (root / "state").is_dir() and (root / "blobs").is_dir()


def test_stopping_while_the_disk_is_full_loses_nothing_durable(
    small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = Run(small_fs / "spool", policy())
    first = titles(5)
    run.feed(first)
    run.written(7)
    filler = fill(small_fs)
    run.feed(titles(200))
    wait_for(lambda: run.pipeline.storage is not None, 5, "the storage gate")
    with caplog.at_level(logging.WARNING):
        assert run.pipeline.stop(5)  # no exception: the agent exits normally
    assert "stopped while the spool cannot be written (disk_full)" in caplog.text
    filler.unlink()
    (manifest,) = run.spool.recover()  # the next start seals what was durable
    assert manifest.recovered
    records = run.records()
    assert [r["title"] for r in records if r["k"] == "title"] == [raw[3] for raw in first]
