"""Content-addressed blob store for screenshots: ``<spool>/blobs/<sha[:2]>/<sha>``.

A blob is stored once under the sha256 of its bytes, written atomically
(temp file in the same folder + fsync + rename + fsync of the folder), so a
reader never sees a torn blob and a crash leaves at most a ``.tmp`` file that
:meth:`BlobStore.gc` removes later. Blobs have no extension: sniff the bytes
(``RIFF....WEBP`` or ``\\xff\\xd8`` JPEG).

Sealed chunks reference blobs in ``Manifest.blobs``; the uploader sends a
chunk's blobs before the chunk (:meth:`BlobStore.path`, :meth:`BlobStore.has`)
and, once chunks are acknowledged, calls :meth:`BlobStore.gc` with every sha
still referenced by an unsent chunk (including the open one).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from deskcorder.errors import DeskcorderError
from deskcorder.storage.chunk import fsync_dir

log = logging.getLogger(__name__)

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
GC_GRACE_S = 600.0
"""Blobs (and temp files) younger than this are never collected: a blob just
written, or just referenced again, may belong to a chunk that is still open."""


def is_sha256(value: str) -> bool:
    return bool(_SHA_RE.match(value))


class BlobStore:
    """The spool's blob folder. Safe to use from several threads."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._counter = 0
        self._lock = threading.Lock()

    def path(self, sha: str) -> Path:
        """Where the blob ``sha`` lives (whether or not it exists). Rejects non-sha names."""
        if not is_sha256(sha):
            raise ValueError(f"{sha!r} is not a lowercase hex sha256")
        return self.root / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` under its sha256; returns ``(sha, written)``.

        ``written`` is False when the blob already existed (its mtime is
        refreshed so that :meth:`gc`'s grace period covers the new reference).
        """
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        if final.is_file():
            self.touch(sha)
            return sha, False
        folder = final.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._lock:
                self._counter += 1
                n = self._counter
            tmp = folder / f".{sha}.{os.getpid()}.{threading.get_ident()}.{n}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            fsync_dir(folder)
        except OSError as exc:
            raise DeskcorderError(f"{final}: cannot store blob: {exc.strerror}") from exc
        return sha, True

    def touch(self, sha: str) -> bool:
        """Refresh a blob's mtime (a new reference to it). False if it is gone."""
        try:
            os.utime(self.path(sha))
        except OSError:
            return False
        return True

    def read(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def __iter__(self) -> Iterator[str]:
        """Every stored sha (no temp files)."""
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for entry in sorted(shard.iterdir()):
                if is_sha256(entry.name) and entry.name[:2] == shard.name:
                    yield entry.name

    def size_bytes(self) -> int:
        total = 0
        for sha in self:
            with contextlib.suppress(OSError):
                total += self.path(sha).stat().st_size
        return total

    def gc(self, referenced: set[str], *, grace_s: float = GC_GRACE_S) -> int:
        """Delete blobs not in ``referenced`` (and stale temp files); return how many.

        ``referenced`` must hold every sha named by a chunk that has not been
        acknowledged yet, the open chunk included. Blobs written or touched in
        the last ``grace_s`` seconds are kept regardless, which covers a shot
        taken after the caller collected ``referenced``.
        """
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - grace_s
        removed = 0
        for shard in self.root.iterdir():
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for entry in shard.iterdir():
                name = entry.name
                is_blob = is_sha256(name)
                if is_blob and name in referenced:
                    continue
                if not is_blob and not name.endswith(".tmp"):
                    continue
                try:
                    if entry.stat().st_mtime > cutoff:
                        continue
                    entry.unlink()
                except OSError:
                    continue
                if is_blob:
                    removed += 1
            with contextlib.suppress(OSError):
                shard.rmdir()  # only succeeds when empty
        if removed:
            log.info("removed %d unreferenced screenshot blob(s)", removed)
        return removed
