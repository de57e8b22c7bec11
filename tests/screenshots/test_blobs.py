from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from deskcorder.errors import DeskcorderError
from deskcorder.storage.blobs import BlobStore


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_put_stores_once_under_sha_path(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = b"RIFF0000WEBPVP8 fake image"
    sha, written = store.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert written
    assert store.path(sha) == tmp_path / "blobs" / sha[:2] / sha
    assert store.has(sha) and store.read(sha) == data
    assert store.put(data) == (sha, False)
    assert list(store) == [sha]
    assert [p.name for p in store.path(sha).parent.iterdir()] == [sha]  # no temp files left


def test_path_rejects_non_sha(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    for bad in ("../etc/passwd", "A" * 64, "ab", "g" * 64):
        with pytest.raises(ValueError):
            store.path(bad)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(DeskcorderError, match="cannot store blob"):
        store.put(b"data")
    sha = hashlib.sha256(b"data").hexdigest()
    assert not store.has(sha)
    assert list(store.path(sha).parent.iterdir()) == []


def test_gc_keeps_referenced_and_recent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    keep, _ = store.put(b"referenced")
    drop, _ = store.put(b"unreferenced")
    young, _ = store.put(b"just written")
    stale_tmp = store.path(drop).parent / f".{drop}.1.2.3.tmp"
    stale_tmp.write_bytes(b"torn")
    for sha in (keep, drop):
        _age(store.path(sha), 3600)
    _age(stale_tmp, 3600)
    assert store.gc({keep}) == 1
    assert store.has(keep) and store.has(young) and not store.has(drop)
    assert not stale_tmp.exists()
    # a new reference refreshes the blob, so the grace period covers it again
    _age(store.path(keep), 3600)
    assert store.put(b"referenced") == (keep, False)
    assert store.gc(set()) == 0
    assert store.gc(set(), grace_s=-1) == 2
    assert list(store) == []
