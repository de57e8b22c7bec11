"""What the file system says about the disk holding a path: free space, read-only."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def _existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the disk holding ``path``.

    ``path`` need not exist (the nearest existing parent is asked); None when
    nothing can be asked.
    """
    existing = _existing(Path(path))
    if existing is None:
        return None
    try:
        return shutil.disk_usage(existing).free
    except OSError:
        return None


def is_read_only(path: Path) -> bool:
    """True when the file system holding ``path`` is mounted read-only (POSIX)."""
    if sys.platform == "win32":
        return False
    existing = _existing(Path(path))
    if existing is None:
        return False
    try:
        return bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        return False
