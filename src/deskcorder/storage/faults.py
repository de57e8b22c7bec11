"""Storage faults: what a failed spool write means, what to tell the user, when to retry.

The pipeline never dies of a write error (docs/architecture.md, "Storage
faults"). It classifies the ``OSError`` here into a **cause**, enters the
``storage`` gate, and retries with :class:`Backoff` until writing works again.
Everything here is pure; what the file system says about the spool's disk
(free space, read-only) is asked in ``deskcorder.platform.disk``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

#: cause -> (what happened, what to do). The cause is written into the ``gap``
#: record; both texts are shown by ``deskcorder status``, the tray and ``doctor``.
CAUSES: dict[str, tuple[str, str]] = {
    "disk_full": (
        "the disk holding the spool is full",
        "free some space on it; recording resumes by itself",
    ),
    "disk_quota": (
        "your disk quota is used up",
        "free some space or ask IT to raise the quota; recording resumes by itself",
    ),
    "low_disk": (
        "the disk holding the spool has less free space than policy keeps free (spool.min_free_mb)",
        "free some space on it; recording resumes by itself",
    ),
    "read_only": (
        "the file system holding the spool is read-only (often after a disk error)",
        "ask IT to check the disk; recording resumes once it is writable again",
    ),
    "spool_missing": (
        "the spool folder was removed and cannot be re-created",
        "make its parent folder exist and writable again; recording resumes by itself",
    ),
    "io_error": (
        "the disk reported an I/O error",
        "ask IT to check the disk; deskcorder keeps retrying",
    ),
    "no_permission": (
        "deskcorder may no longer write into its spool folder",
        "give the folder back to the user deskcorder runs as; recording resumes by itself",
    ),
    "write_error": (
        "writing the spool failed",
        "see `deskcorder status --json` for the error; deskcorder keeps retrying",
    ),
}

_ERRNO_CAUSE: dict[int, str] = {
    errno.ENOSPC: "disk_full",
    errno.EROFS: "read_only",
    errno.ENOENT: "spool_missing",
    errno.ENOTDIR: "spool_missing",
    errno.EEXIST: "spool_missing",  # a file now stands where a spool folder was
    errno.EIO: "io_error",
    errno.EACCES: "no_permission",
    errno.EPERM: "no_permission",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _ERRNO_CAUSE[errno.EDQUOT] = "disk_quota"

#: Causes that let the agent start anyway (in the storage gate) instead of
#: refusing to start: they come and go with the machine, not with its set-up.
TRANSIENT = frozenset({"disk_full", "disk_quota", "low_disk", "read_only", "io_error"})


def classify(exc: BaseException) -> tuple[str, str | None]:
    """``(cause, errno name)`` of a failed write; unknown errors are ``write_error``."""
    while not isinstance(exc, OSError) and exc.__cause__ is not None:
        exc = exc.__cause__  # a DeskcorderError wrapping the OSError
    if not isinstance(exc, OSError) or exc.errno is None:
        return "write_error", None
    name = errno.errorcode.get(exc.errno)
    return _ERRNO_CAUSE.get(exc.errno, "write_error"), name


def describe(cause: str) -> tuple[str, str]:
    """``(what happened, what to do)`` for a cause (unknown causes get the generic text)."""
    return CAUSES.get(cause, CAUSES["write_error"])


@dataclass
class Backoff:
    """Delays between retries: ``first`` doubling up to ``cap`` seconds."""

    first: float = 1.0
    cap: float = 60.0
    attempts: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2.0 ** min(self.attempts, 30))
        self.attempts += 1
        return delay


@dataclass
class StorageFault:
    """The storage gate's state while the spool cannot (or must not) be written."""

    cause: str
    errno: str | None
    since_t: int  # session µs when it began
    since_unix: float  # wall clock then (status only)
    error: str  # the last error, one line, for status
    next_try: float = 0.0  # time.monotonic() of the next write attempt
    not_recorded: int = 0  # input events that arrived while writing was impossible
    backoff: Backoff = field(default_factory=Backoff)

    def status(self, now: float) -> dict[str, object]:
        what, todo = describe(self.cause)
        return {
            "cause": self.cause,
            "errno": self.errno,
            "what": what,
            "todo": todo,
            "since_t": self.since_t,
            "since_unix": round(self.since_unix, 3),
            "not_recorded": self.not_recorded,
            "attempts": self.backoff.attempts,
            "retry_in_s": max(0.0, round(self.next_try - now, 1)),
            "error": self.error,
        }
