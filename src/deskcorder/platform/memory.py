"""Giving freed memory back to the OS (glibc ``malloc_trim``; elsewhere nothing)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def _malloc_trim() -> Callable[[], object] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


_trim = _malloc_trim()


def release_memory() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``; elsewhere nothing).

    After a pre-action encode the full-size RGB copy and its downscaled image
    (about 9 MB at 1920x1080) are freed inside the heap; without a trim they
    would stay resident (docs/performance.md, pre-action frames).
    """
    if _trim is not None:
        _trim()
