"""Write failures in the storage layer, on real small file systems (tmpfs, ext4).

A failed write leaves the journal with exactly what was flushed; the chunk is
repaired once writing works again; nothing half-written is left behind.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from deskcorder.errors import DeskcorderError
from deskcorder.platform.disk import free_bytes, is_read_only
from deskcorder.storage import chunk as chunk_mod
from deskcorder.storage.chunk import ChunkWriter, chunk_name, part_name, read_chunk
from deskcorder.storage.faults import Backoff, classify, describe
from deskcorder.storage.spool import SessionWriter, Spool
from tests.fs import ext4, fill, require_mount, tmpfs

HEADER = {"format": "deskcorder-chunk", "format_version": 1, "session": "s", "seq": 0}


def header(seq: int) -> dict[str, Any]:
    return {**HEADER, "seq": seq}


def noisy(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Records that do not compress (random titles), to fill a disk quickly."""
    return [
        {"k": "title", "t": i, "id": 1, "title": secrets.token_hex(96)}
        for i in range(start, start + n)
    ]


def open_spool(
    root: Path, records: list[dict[str, Any]] | None = None
) -> tuple[Spool, SessionWriter]:
    """A spool at ``root`` with session ``s`` open; ``records`` written and flushed."""
    spool = Spool(root)
    spool.ensure()
    session = spool.open_session(header, "s")
    if records:
        session.write_many(records)
        session.flush()
    return spool, session


@pytest.fixture
def small_fs() -> Any:
    require_mount()
    with tmpfs(2048) as where:
        yield where


def write_until_full(session: SessionWriter) -> list[dict[str, Any]]:
    """Write and flush batches until the disk is full; return what was flushed."""
    flushed: list[dict[str, Any]] = []
    with pytest.raises(OSError) as failed:
        for i in range(100_000):
            batch = noisy(10, i * 10)
            session.write_many(batch)
            session.flush()
            flushed += batch
    assert failed.value.errno == errno.ENOSPC
    return flushed


def test_classify_names_the_cause_and_errno() -> None:
    assert classify(OSError(errno.ENOSPC, "full")) == ("disk_full", "ENOSPC")
    assert classify(OSError(errno.EROFS, "ro")) == ("read_only", "EROFS")
    assert classify(OSError(errno.ENOENT, "gone")) == ("spool_missing", "ENOENT")
    assert classify(OSError(errno.EIO, "io")) == ("io_error", "EIO")
    assert classify(OSError(errno.EDQUOT, "quota")) == ("disk_quota", "EDQUOT")
    assert classify(OSError(errno.EMFILE, "fds")) == ("write_error", "EMFILE")
    assert classify(ValueError("x")) == ("write_error", None)
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as exc:
            raise DeskcorderError("spool is not writable") from exc
    except DeskcorderError as wrapped:
        assert classify(wrapped) == ("disk_full", "ENOSPC")
    what, todo = describe("disk_full")
    assert "full" in what and "free" in todo
    assert describe("no-such-cause") == describe("write_error")


def test_backoff_doubles_up_to_its_cap() -> None:
    b = Backoff(first=1.0, cap=60.0)
    assert [b.next_delay() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_free_bytes_asks_the_nearest_existing_folder(tmp_path: Path) -> None:
    free = free_bytes(tmp_path / "not" / "yet")
    assert free is not None and free > 0
    assert not is_read_only(tmp_path / "not" / "yet")


def test_full_disk_keeps_exactly_what_was_flushed(small_fs: Path) -> None:
    reserve = small_fs / "reserve"  # repairing writes a copy: 2-3 times the journal
    reserve.write_bytes(os.urandom(1_400_000))
    spool, session = open_spool(small_fs / "spool")
    flushed = write_until_full(session)
    assert flushed, "the disk filled before the first flush"
    abandoned = session.abandon()
    assert abandoned is not None and abandoned.seq == 0 and session.seq == 1
    # the failed batch's bytes are cut off: they will be written again elsewhere
    assert abandoned.part_path.stat().st_size == abandoned.durable_size
    with pytest.raises(OSError):  # still full: repairing fails and changes nothing
        spool.repair("s", abandoned)
    assert abandoned.part_path.stat().st_size == abandoned.durable_size
    assert [p.name for p in abandoned.part_path.parent.iterdir()] == [part_name(0)]
    reserve.unlink()
    manifest, removed = spool.repair("s", abandoned)
    session.repaired(abandoned, manifest, removed)
    assert manifest is not None and manifest.recovered and not removed
    sealed = read_chunk(spool.sessions_dir / "s" / chunk_name(0))
    assert sealed.complete and sealed.records == flushed  # no gap: the pipeline writes it
    assert not abandoned.part_path.exists()
    assert session.sealed == [manifest]
    session.write_many(noisy(3))  # the next chunk is seq 1
    session.flush()
    assert (spool.sessions_dir / "s" / part_name(1)).exists()


def test_opening_a_chunk_on_a_full_disk_leaves_no_journal(small_fs: Path) -> None:
    (small_fs / "s").mkdir()
    fill(small_fs)
    with pytest.raises(OSError) as failed:
        ChunkWriter(small_fs / "s", "s", 0, HEADER)
    assert failed.value.errno == errno.ENOSPC
    assert list((small_fs / "s").iterdir()) == []


def test_an_empty_journal_is_removed_and_its_seq_used_again(tmp_path: Path) -> None:
    spool, session = open_spool(tmp_path / "spool")
    session.writer  # noqa: B018 - opens seq 0 (header only)
    abandoned = session.abandon()
    assert abandoned is not None
    manifest, removed = spool.repair("s", abandoned)
    session.repaired(abandoned, manifest, removed)
    assert manifest is None and removed
    assert session.seq == 0 and list((spool.sessions_dir / "s").iterdir()) == []


def test_a_seal_that_got_as_far_as_the_rename_gets_its_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool, session = open_spool(tmp_path / "spool", noisy(5))

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(chunk_mod, "write_manifest", full)
    with pytest.raises(OSError):
        session.seal()
    monkeypatch.undo()
    abandoned = session.abandon()
    assert abandoned is not None
    manifest, removed = spool.repair("s", abandoned)
    assert manifest is not None and manifest.records == 5 and not removed
    assert [c.seq for c in spool.sealed_chunks()] == [0]


def test_recovery_at_start_on_a_full_disk_waits_for_space(small_fs: Path) -> None:
    spool, session = open_spool(small_fs / "spool", noisy(50))
    part = session.writer.part_path
    session.writer.abandon()  # the agent died
    before = part.read_bytes()
    filler = fill(small_fs)
    assert spool.recover() == []  # no exception, nothing sealed, nothing lost
    assert spool.unrecovered == [part] and part.read_bytes() == before
    assert [p.name for p in part.parent.iterdir()] == [part.name]
    assert spool.recover_pending() == [] and spool.unrecovered == [part]
    filler.unlink()
    (manifest,) = spool.recover_pending()
    assert manifest.recovered and manifest.records == 51 and spool.unrecovered == []
    sealed = read_chunk(part.with_name(chunk_name(0)))
    assert sealed.records[-1] == {"k": "gap", "t": 49, "cause": "crash_recovery"}


def test_a_deleted_journal_is_noticed(tmp_path: Path) -> None:
    _, session = open_spool(tmp_path / "spool", noisy(2))
    assert session.linked()
    session.writer.part_path.unlink()
    assert not session.linked()


def test_read_only_remount_then_repair() -> None:
    """The kernel remounts ext4 read-only after a disk error; IT fsck's and remounts."""
    require_mount()
    with ext4(16) as fs:
        spool = Spool(fs.mnt / "spool")
        spool.ensure()
        session = spool.open_session(header, "s")
        flushed = noisy(40)
        session.write_many(flushed)
        session.flush()
        fs.fail()  # (an emergency read-only remount does not show in statvfs's flags)
        with pytest.raises(OSError) as failed:
            session.write_many(noisy(10, 40))
            session.flush()
        assert classify(failed.value)[0] == "read_only"
        abandoned = session.abandon()
        assert abandoned is not None
        fs.repair()  # unmounting works: abandon() closed the journal
        assert not is_read_only(spool.root)
        manifest, removed = spool.repair("s", abandoned)
        assert manifest is not None and not removed
        assert read_chunk(spool.sessions_dir / "s" / chunk_name(0)).records == flushed
