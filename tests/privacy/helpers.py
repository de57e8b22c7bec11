"""Helpers for privacy tests: every byte the agent left on disk, decompressed."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import zstandard

from deskcorder.capture.a11y import Answer, EpochInfo, FieldAnswers
from deskcorder.events import WindowInfo

SECRETS = {
    "card": "4111 1111 1111 1111",
    "email": "jane.doe@example.com",
    "password": "Tr0ub4dor&3xyz",
    "token": "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
}


def _decompress(data: bytes) -> bytes:
    """All frames of a (possibly torn) zstd file; the raw bytes if it is not zstd."""
    if not data.startswith(b"\x28\xb5\x2f\xfd"):
        return data
    out = io.BytesIO()
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    try:
        while chunk := reader.read(65536):
            out.write(chunk)
    except zstandard.ZstdError:
        pass  # torn tail of an open chunk: what was decoded so far is kept
    return out.getvalue()


def spool_bytes(root: Path) -> bytes:
    """Every file under ``root`` (zstd decompressed, like ``zstd -dc``), concatenated."""
    parts = [_decompress(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
    return b"\n".join(parts)


def assert_absent(blob: bytes, *literals: str) -> None:
    """No literal (nor its digits-only / no-space variant) appears in ``blob``."""
    for literal in literals:
        for variant in {literal, literal.replace(" ", ""), literal.replace(" ", "-")}:
            assert variant.encode() not in blob, f"{variant!r} reached disk"


class InstantField(FieldAnswers):
    """Secure-input answers as from an infinitely fast accessibility API: every reset is
    answered at once with ``value`` (True: password field, False: not, None: unknown)."""

    def __init__(
        self,
        value: bool | None = False,
        clock: Callable[[], int] = time.monotonic_ns,
        instant: bool = True,
    ) -> None:
        super().__init__(value)
        self.value = value
        self.instant = instant  # False: a reset stays unknown until set() answers
        self.clock = clock
        self.epoch = 0
        self.infos: dict[int, EpochInfo] = {0: EpochInfo()}
        self.resets = 0
        self._publish()

    def set(self, value: bool | None) -> None:
        """The focused field changes kind (the platform told the monitor)."""
        self.value = value
        self._publish()

    def reset(self, window: WindowInfo | None) -> None:
        self.resets += 1
        self.epoch += 1
        self.infos[self.epoch] = EpochInfo()
        if self.instant:
            self._publish()
        else:
            self._answer = Answer(self.epoch, None, self.clock())

    def info(self, epoch: int) -> EpochInfo | None:
        return self.infos.get(epoch)

    def _publish(self) -> None:
        now = self.clock()
        info = self.infos[self.epoch]
        if self.value is True:
            info.secure = True
        elif self.value is False:
            info.safe_ns = now
        self._answer = Answer(self.epoch, self.value, now)
