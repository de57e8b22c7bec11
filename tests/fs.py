"""Real small file systems for storage-fault tests: tmpfs and a loop-mounted ext4.

Root can mount them (the test machines and CI run as root); elsewhere the
tests that need them are skipped with the reason. Every mount is undone on
exit, lazily if something still holds it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.services import unavailable

_CAN_MOUNT: str | None = None  # "" = yes, else why not


def mount_unavailable() -> str:
    """Empty when this process may mount a tmpfs; else the reason it may not."""
    global _CAN_MOUNT
    if _CAN_MOUNT is None:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            _CAN_MOUNT = "mounting a test file system needs root"
        elif not shutil.which("mount"):
            _CAN_MOUNT = "no mount command"
        else:
            try:
                with tmpfs(64):
                    _CAN_MOUNT = ""
            except (OSError, subprocess.CalledProcessError) as exc:
                _CAN_MOUNT = f"cannot mount a tmpfs here: {exc}"
    return _CAN_MOUNT


def require_mount() -> None:
    why = mount_unavailable()
    if why:
        unavailable(why)


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(size_kb: int) -> Iterator[Path]:
    """A fresh tmpfs of ``size_kb`` KiB at a temporary folder (root only)."""
    where = Path(tempfile.mkdtemp(prefix="dc-tmpfs-"))
    try:
        _run("mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "tmpfs", str(where))
        try:
            yield where
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
    finally:
        with contextlib.suppress(OSError):
            where.rmdir()


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill ``folder``'s file system up to ENOSPC (or until ``leave_bytes`` are free)."""
    filler = folder / "filler"
    block = b"\0" * 65536
    with open(filler, "ab") as fh:
        while True:
            free = shutil.disk_usage(folder).free - leave_bytes
            if free <= 0:
                break
            try:
                fh.write(block[: min(len(block), free)])
                fh.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


class Ext4:
    """A small ext4 image mounted with ``errors=remount-ro`` (root only).

    :meth:`fail` makes the kernel remount it read-only as it does after a disk
    error (``/sys/fs/ext4/<dev>/trigger_fs_error``); :meth:`repair` is what IT
    does next: unmount, ``e2fsck``, mount again at the same place.
    """

    def __init__(self, size_mb: int = 16) -> None:
        self.image = Path(tempfile.mkstemp(prefix="dc-ext4-", suffix=".img")[1])
        self.mnt = Path(tempfile.mkdtemp(prefix="dc-ext4-"))
        # while unmounted (during repair) nothing may be written into the bare folder
        subprocess.run(["chattr", "+i", str(self.mnt)], capture_output=True, check=False)
        with open(self.image, "r+b") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        _run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", str(self.image))
        self.mount()

    def mount(self) -> None:
        _run("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mnt))

    @property
    def device(self) -> str:
        out = subprocess.run(
            ["findmnt", "-n", "-o", "SOURCE", str(self.mnt)],
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(out.stdout.strip()).name

    def fail(self) -> None:
        Path(f"/sys/fs/ext4/{self.device}/trigger_fs_error").write_text("deskcorder test\n")

    def repair(self) -> None:
        """Unmount (fails while anything still holds a file open), check, mount again."""
        deadline = time.monotonic() + 10  # a directory scan may hold it for a moment
        while subprocess.run(["umount", str(self.mnt)], capture_output=True).returncode:
            if time.monotonic() > deadline:
                _run("umount", str(self.mnt))  # raises with mount's message
            time.sleep(0.05)
        subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, check=False)
        self.mount()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True, check=False)
        subprocess.run(["chattr", "-i", str(self.mnt)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            self.mnt.rmdir()
        self.image.unlink(missing_ok=True)


@contextlib.contextmanager
def ext4(size_mb: int = 16) -> Iterator[Ext4]:
    fs = Ext4(size_mb)
    try:
        yield fs
    finally:
        fs.close()
