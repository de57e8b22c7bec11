"""Spools for the export tests: raw events through the real pipeline, real WebP blobs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from deskcorder.capture.pipeline import Pipeline
from deskcorder.events import (
    RAW_BUTTON,
    RAW_CONTROL,
    RAW_FOCUS,
    RAW_KEY,
    RAW_MOVE,
    RAW_SCROLL,
    RAW_SHOT,
    ShotInfo,
    WindowInfo,
)
from deskcorder.policy.model import Policy
from deskcorder.storage.blobs import BlobStore
from deskcorder.storage.spool import Spool
from tests.collector.helpers import chunk_header
from tests.core.helpers import make_policy

T0 = 1_000_000_000
# 2026-11-27 09:00:00 UTC: the wall clock at session time 0
UNIX0 = 1_795_770_000 * 1_000_000_000
EDITOR = WindowInfo(
    7, "notes.txt - Editor", "gedit", 100, "gedit", "/usr/bin/gedit", 0, 0, 960, 1080
)
BROWSER = WindowInfo(
    9, "Inbox - Browser", "firefox", 200, "firefox", "/usr/bin/firefox", 960, 0, 960, 1080
)


def ms(n: float) -> int:
    return T0 + int(n * 1_000_000)


def webp(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(out, "WEBP", quality=80)
    return out.getvalue()


def header_factory(session: str, user: str | None, device: str, unix0: int) -> Any:
    def header(seq: int) -> dict[str, Any]:
        return {
            **chunk_header(session, seq, device, user),
            "identity": "pseudonymous",
            "org": "test",
            "agent": "deskcorder/test",
            "backend": "fake",
            "os": "Linux",
            "screen": [[0, 0, 1920, 1080]],
            "keyboard_layout": "us",
            "policy_digest": "ab" * 32,
            "keystrokes": "redacted",
            "mouse_move_hz": 0,
            "streams": {"mouse": True, "keyboard": True, "window": True, "screenshots": True},
            "clock": {"t": 0, "unix_ns": unix0, "utc": "2026-11-27T09:00:00Z"},
        }

    return header


def session_events(store: BlobStore, shade: int) -> list[tuple[Any, ...]]:
    """A short session: click, double click, drag, scroll, typing, ctrl+s, a pause, a click."""
    shots = [store.put(webp((shade, 10 * n, 200)))[0] for n in range(4)]

    def shot(t: float, n: int, reason: str) -> tuple[Any, ...]:
        return (RAW_SHOT, ms(t), ShotInfo(shots[n], "webp", 64, 36, (0, 0, 1920, 1080), reason, 7))

    return [
        (RAW_FOCUS, ms(1), EDITOR),
        shot(5, 0, "focus"),
        (RAW_MOVE, ms(10), 100, 100),
        (RAW_BUTTON, ms(20), 100, 100, "left", True),
        (RAW_BUTTON, ms(60), 100, 100, "left", False),
        shot(80, 1, "click"),
        (RAW_BUTTON, ms(1000), 300, 200, "left", True),
        (RAW_BUTTON, ms(1050), 300, 200, "left", False),
        (RAW_BUTTON, ms(1200), 300, 200, "left", True),
        (RAW_BUTTON, ms(1250), 300, 200, "left", False),
        (RAW_BUTTON, ms(2000), 400, 400, "left", True),
        (RAW_MOVE, ms(2050), 420, 410),
        (RAW_MOVE, ms(2100), 480, 440),
        (RAW_BUTTON, ms(2150), 480, 440, "left", False),
        (RAW_SCROLL, ms(3000), 480, 440, 0, -1),
        (RAW_SCROLL, ms(3100), 480, 440, 0, -1),
        (RAW_KEY, ms(4000), True, "h", None, 104),
        (RAW_KEY, ms(4050), False, "h", None, 104),
        (RAW_KEY, ms(4100), True, "5", None, 53),
        (RAW_KEY, ms(4150), False, "5", None, 53),
        (RAW_KEY, ms(4500), True, None, "ctrl_l", 0xFFE3),
        (RAW_KEY, ms(4510), True, "s", None, 115),
        (RAW_KEY, ms(4550), False, "s", None, 115),
        (RAW_KEY, ms(4560), False, None, "ctrl_l", 0xFFE3),
        shot(4700, 2, "typing"),
        (RAW_CONTROL, ms(5000), "pause", 10**12),
        (RAW_CONTROL, ms(6000), "resume", None),
        (RAW_FOCUS, ms(6100), BROWSER),
        (RAW_BUTTON, ms(6200), 1500, 300, "left", True),
        (RAW_BUTTON, ms(6250), 1500, 300, "left", False),
        shot(6300, 3, "click"),
    ]


def make_spool(
    root: Path,
    sessions: list[tuple[str, str | None]],
    policy: Policy | None = None,
    device: str | None = None,
) -> Path:
    """A spool with one recorded session per ``(session id, user)``; returns its root.

    ``user`` None: no pseudonym in the headers (as agents with a device key write them);
    ``device``: the headers' device (default ``d-<user>``)."""
    policy = policy or make_policy(
        capture={"mouse_move_hz": 0, "screenshots": True}, pause={"max_minutes": 0}
    )
    spool = Spool(root, policy.spool)
    spool.ensure()
    store = BlobStore(spool.blobs_dir)
    for n, (session_id, user) in enumerate(sessions):
        pipeline = Pipeline(
            policy,
            spool,
            header_factory(session_id, user, device or f"d-{user}", UNIX0 + n * 86_400 * 10**9),
            session_id=session_id,
            t0_ns=T0,
            clock_ns=lambda: T0,
        )
        pipeline.start()
        for raw in session_events(store, 40 * n):
            pipeline.queue.put_control(raw)
        assert pipeline.stop(10)
    return root
