"""Screenshot worker logic with a fake screen: triggers, budget, privacy, dedup."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.capture import screenshots as shots_mod
from deskcorder.capture.screenshots import (
    TRIGGER_QUEUE,
    ScreenshotWorker,
    changed_fraction,
    choose_region,
    scaled_size,
    thumbnail,
)
from deskcorder.events import WindowInfo
from deskcorder.policy.model import Screenshots
from deskcorder.storage.blobs import BlobStore
from tests.screenshots.fakes import MONITORS, FakeGates, FakeGrabber, FakeProbe, Recorder
from tests.xserver import wait_for

pytest.importorskip("PIL")
from PIL import Image

EDITOR = WindowInfo(id=11, title="editor", x=100, y=100, width=800, height=600)
RIGHT = WindowInfo(id=12, title="browser", x=2000, y=50, width=1000, height=700)
VAULT = WindowInfo(id=13, title="vault", x=300, y=200, width=200, height=100)


def click(x: int = 150, y: int = 150) -> dict[str, Any]:
    return {"k": "bd", "t": 1, "x": x, "y": y, "b": "left"}


class Rig:
    def __init__(self, tmp: Path, cfg: Screenshots, probe: FakeProbe | None = None) -> None:
        self.gates = FakeGates()
        self.probe = probe or FakeProbe(EDITOR)
        self.grabber = FakeGrabber()
        self.store = BlobStore(tmp / "blobs")
        self.out = Recorder()
        self.worker = ScreenshotWorker(
            cfg, gates=self.gates, probe=self.probe, store=self.store, emit=self.out,
            grabber_factory=lambda: self.grabber,
        )  # fmt: skip

    def image(self, sha: str) -> Image.Image:
        return Image.open(io.BytesIO(self.store.read(sha))).convert("RGB")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, max_width=4000))
    yield r
    r.worker.stop(5)


def test_choose_region_scopes() -> None:
    assert choose_region("all_monitors", MONITORS, EDITOR, None) == MONITORS[0]
    assert choose_region("active_monitor", MONITORS, EDITOR, None) == MONITORS[1]
    assert choose_region("active_monitor", MONITORS, EDITOR, (2500, 10)) == MONITORS[2]
    assert choose_region("active_monitor", MONITORS, RIGHT, None) == MONITORS[2]
    assert choose_region("active_window", MONITORS, RIGHT, None) == (2000, 50, 1000, 700)
    off = WindowInfo(id=1, x=3500, y=900, width=800, height=400)
    assert choose_region("active_window", MONITORS, off, None) == (3500, 900, 340, 180)
    assert choose_region("active_monitor", MONITORS, None, None) == MONITORS[1]
    assert scaled_size(1920, 1080, 1280) == (1280, 720)
    assert scaled_size(800, 600, 1280) == (800, 600)


def test_click_takes_a_shot_with_geometry_and_window(rig: Rig) -> None:
    rig.worker.start()
    rig.worker.observe(click(2500, 300))
    rig.probe.active = RIGHT
    wait_for(lambda: rig.out.shots, 5, "a shot")
    shot = rig.out.shots[0]
    assert shot.reason == "click"
    assert shot.window_id == RIGHT.id
    assert shot.monitor == (1920, 0, 1920, 1080)
    assert (shot.width, shot.height) == (1920, 1080)
    assert shot.fmt == "webp"
    assert rig.store.has(shot.sha256)
    assert rig.image(shot.sha256).size == (1920, 1080)


def test_identical_frames_stored_once_and_not_reencoded(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = shots_mod.encode

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(shots_mod, "encode", counting)
    rig.worker.start()
    for n in range(1, 4):
        rig.worker.observe(click())
        wait_for(lambda n=n: len(rig.out.shots) >= n, 5, f"shot {n}")
    assert len({s.sha256 for s in rig.out.shots}) == 1
    assert len(list(rig.store)) == 1
    assert len(calls) == 1
    assert rig.worker.reused == 2
    rig.grabber.fill = (0, 0, 0)  # a changed screen is a new blob
    rig.worker.observe(click())
    wait_for(lambda: len(rig.out.shots) >= 4, 5, "shot 4")
    assert len(list(rig.store)) == 2 and len(calls) == 2


@pytest.mark.parametrize(
    "setup",
    ["paused_gate", "gate_raises", "focus_excluded", "focus_unknown", "pipeline_excl",
     "pipeline_pause", "probe_raises", "excluded_visible_without_rect"],
)  # fmt: skip
def test_no_screenshot_when_privacy_forbids(rig: Rig, setup: str) -> None:
    if setup == "paused_gate":
        rig.gates.blocked = "user"
    elif setup == "gate_raises":
        rig.gates.raise_on_check = True
    elif setup == "focus_excluded":
        rig.gates.excluded_titles.add("editor")
    elif setup == "focus_unknown":
        rig.probe.active = None
    elif setup == "pipeline_excl":
        rig.worker.observe({"k": "excl", "t": 1, "rule": "title"})
    elif setup == "pipeline_pause":
        rig.worker.observe({"k": "pause", "t": 1, "src": "lock"})
    elif setup == "probe_raises":

        def boom() -> list[WindowInfo]:
            raise OSError("X connection lost")

        rig.probe.visible_windows = boom  # type: ignore[method-assign]
    elif setup == "excluded_visible_without_rect":
        rig.gates.excluded_titles.add("vault")
        rig.probe.visible = [WindowInfo(id=99, title="vault"), EDITOR]
    rig.worker.start()
    if setup.startswith("pipeline_"):
        # an input record would mean the pipeline recorded again; use a timer trigger
        rig.worker._trigger(shots_mod._Trigger("interval", time.monotonic_ns()))
    else:
        rig.worker.observe(click())
    # the refusal is counted; nothing was grabbed, stored or emitted
    wait_for(lambda: rig.worker.refused == 1, 5, "refusal")
    assert rig.grabber.grabs == []
    assert rig.out.shots == []
    assert list(rig.store) == []


def test_resume_and_focus_records_reopen_screenshots(rig: Rig) -> None:
    rig.worker.observe({"k": "pause", "t": 1, "src": "user"})
    rig.worker.observe({"k": "resume", "t": 2, "src": "user"})
    rig.worker.observe({"k": "excl", "t": 3, "rule": "title"})
    rig.worker.observe({"k": "focus", "t": 4, "win": {"id": 11}})
    rig.worker.start()
    wait_for(lambda: rig.out.shots, 5, "focus shot")
    assert rig.out.shots[0].reason == "focus"


def test_state_change_during_encode_discards_frame(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shots_mod.encode

    def encode_then_pause(*args: Any, **kwargs: Any) -> bytes:
        rig.gates.blocked = "lock"  # screen locked while we were encoding
        return real(*args, **kwargs)

    monkeypatch.setattr(shots_mod, "encode", encode_then_pause)
    rig.worker.start()
    rig.worker.observe(click())
    wait_for(lambda: rig.worker.refused == 1, 5, "refusal")
    assert list(rig.store) == [] and rig.out.shots == []


def test_excluded_visible_window_is_black(rig: Rig) -> None:
    rig.gates.excluded_titles.add("vault")
    rig.probe.visible = [EDITOR, VAULT]
    rig.grabber.patches.append(((300, 200, 200, 100), (10, 200, 30)))  # the vault's pixels
    rig.worker.start()
    rig.worker.observe(click())
    wait_for(lambda: rig.out.shots, 5, "shot")
    img = rig.image(rig.out.shots[0].sha256)
    inside = img.crop((305, 205, 495, 295)).getextrema()
    assert all(hi <= 8 for _, hi in inside), inside  # black (lossy tolerance)
    assert min(img.getpixel((150, 150))) >= 240  # the rest is untouched


def test_trigger_queue_is_bounded_and_skips_become_a_gap(rig: Rig) -> None:
    for _ in range(TRIGGER_QUEUE + 12):
        rig.worker.observe(click())
    assert rig.worker.queue_skipped == 12
    rig.worker.start()
    wait_for(lambda: rig.out.gaps, 5, "gap record")
    assert rig.out.gaps[0] == {"cause": "screenshot_skip", "dropped": 12}
    # the queued triggers were merged into one shot
    wait_for(lambda: rig.out.shots, 5, "shot")
    assert rig.worker.status()["coalesced"] == TRIGGER_QUEUE - 1


def test_flood_stays_within_budget(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, per_hour=5))
    r.worker.start()
    try:
        w = r.worker
        for i in range(200):  # a flood: bursts the worker merges, and separate clicks
            r.grabber.fill = (i % 256, 0, 0)  # every frame different
            w.observe(click())
            if i % 10 == 0:
                wait_for(lambda: not w._triggers and w._pending is None, 5, "caught up")
        for _ in range(10):
            done = w.decided + 1
            w.observe(click())
            wait_for(lambda done=done: w.decided == done, 5, "handled")
        skipped = lambda: w.budget_skipped + w.queue_skipped  # noqa: E731
        wait_for(lambda: sum(g["dropped"] for g in r.out.gaps) == skipped(), 5, "gap")
    finally:
        assert r.worker.stop(5)
    assert len(r.out.shots) == 5
    assert len(list(r.store)) <= 5
    assert r.worker.budget_skipped > 0
    dropped = sum(g["dropped"] for g in r.out.gaps)
    assert dropped == r.worker.budget_skipped + r.worker.queue_skipped


def test_min_spacing_merges_triggers(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0.3, after_typing_s=0))
    r.worker.start()
    try:
        r.worker.observe(click())
        wait_for(lambda: r.out.shots, 5, "first shot")
        t_first = time.monotonic()
        for _ in range(5):
            r.worker.observe(click())
        wait_for(lambda: len(r.out.shots) >= 2, 5, "second shot")
        assert time.monotonic() - t_first >= 0.25
        assert len(r.out.shots) == 2
        assert r.worker.status()["coalesced"] == 4
    finally:
        r.worker.stop(5)


def test_typing_pause_and_interval_triggers(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0.2, on_click=False))
    r.worker.start()
    try:
        for _ in range(3):
            r.worker.observe({"k": "kd", "t": 1, "cls": "letter"})
        wait_for(lambda: r.out.shots, 5, "typing shot")
        assert [s.reason for s in r.out.shots] == ["typing"]
        r.worker.observe(click())  # on_click off: no shot
        wait_for(lambda: not r.worker._triggers, 5, "idle")
        assert len(r.out.shots) == 1
    finally:
        r.worker.stop(5)
    r2 = Rig(tmp_path / "2", Screenshots(min_spacing_s=0, after_typing_s=0, interval_s=0.1))
    r2.worker.start()
    try:
        wait_for(lambda: len(r2.out.shots) >= 3, 5, "interval shots")
        assert {s.reason for s in r2.out.shots} == {"interval"}
    finally:
        r2.worker.stop(5)


def test_diff_threshold_skips_near_identical(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, diff_threshold=0.05))
    r.worker.start()
    try:
        r.worker.observe(click())
        wait_for(lambda: r.out.shots, 5, "first")
        r.grabber.patches.append(((10, 10, 20, 20), (0, 0, 0)))  # a cursor-sized change
        r.worker.observe(click())
        wait_for(lambda: r.worker.similar_skipped == 1, 5, "similar skipped")
        r.grabber.patches.append(((0, 0, 1920, 540), (0, 0, 0)))  # half the screen
        r.worker.observe(click())
        wait_for(lambda: len(r.out.shots) == 2, 5, "changed frame stored")
    finally:
        r.worker.stop(5)
    a = thumbnail(Image.new("RGB", (1280, 720), "white"))
    b = thumbnail(Image.new("RGB", (1280, 720), "black"))
    assert changed_fraction(a, b) == 1.0 and changed_fraction(a, a) == 0.0


def test_downscale_and_jpeg(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, format="jpeg",
                                  max_width=960, scope="all_monitors"))  # fmt: skip
    r.worker.start()
    try:
        r.worker.observe(click())
        wait_for(lambda: r.out.shots, 5, "shot")
    finally:
        r.worker.stop(5)
    shot = r.out.shots[0]
    assert shot.fmt == "jpeg" and shot.monitor == MONITORS[0]
    assert (shot.width, shot.height) == (960, 270)
    assert r.store.read(shot.sha256)[:2] == b"\xff\xd8"


def test_grab_failure_is_counted_as_a_gap(rig: Rig) -> None:
    def broken(rect: Any) -> Any:
        raise OSError("XGetImage failed")

    rig.grabber.grab = broken  # type: ignore[method-assign]
    rig.worker.start()
    rig.worker.observe(click())
    wait_for(lambda: rig.out.gaps, 5, "gap")
    assert rig.out.gaps == [{"cause": "screenshot_skip", "dropped": 1}]
    assert rig.worker.status()["last_error"] == "OSError: XGetImage failed"
    assert rig.out.shots == [] and list(rig.store) == []


def test_interval_with_spent_budget_does_not_spin(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, interval_s=0.05, per_hour=2))
    r.worker.start()
    try:
        wait_for(lambda: r.worker.budget_skipped >= 3, 5, "budget skips")
        skipped, t0 = r.worker.budget_skipped, time.monotonic()
        wait_for(lambda: time.monotonic() - t0 > 0.3, 5, "time to pass")
        # one skip per interval at most (0.3 s / 0.05 s, with slack), not a busy loop
        assert r.worker.budget_skipped - skipped <= 10
    finally:
        r.worker.stop(5)
    assert len(r.out.shots) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux")
def test_worker_thread_runs_at_lower_priority(rig: Rig) -> None:
    rig.worker.start()
    rig.worker.observe(click())
    wait_for(lambda: rig.out.shots, 5, "shot")
    thread = rig.worker._thread
    assert thread is not None and thread.native_id is not None
    stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
    nice = int(stat.rsplit(")", 1)[1].split()[16])
    assert nice >= 10
    assert os.getpriority(os.PRIO_PROCESS, 0) < 10  # the rest of the process is untouched


def test_worker_never_clears_an_expired_pause_itself(tmp_path: Path) -> None:
    from deskcorder.capture.gates import Gates
    from deskcorder.policy.model import Policy

    gates = Gates(Policy())
    gates.paused_until = time.time() - 1  # expired; only the pipeline thread may clear it
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0))
    r.worker.gates = gates
    r.worker.start()
    try:
        r.worker.observe(click())
        wait_for(lambda: r.worker.refused == 1, 5, "refusal")
        assert gates.paused_until is not None and r.out.shots == []
        gates.paused_until = None  # the pipeline's tick clears it
        r.worker.observe(click())
        wait_for(lambda: r.out.shots, 5, "shot after the pause")
    finally:
        r.worker.stop(5)


def test_excluded_window_moving_during_the_grab_discards_the_frame(rig: Rig) -> None:
    rig.gates.excluded_titles.add("vault")
    rig.probe.visible = [EDITOR, VAULT]
    real_grab = rig.grabber.grab

    def grab_while_vault_moves(rect: Any) -> Any:
        frame = real_grab(rect)
        moved = WindowInfo(id=VAULT.id, title="vault", x=600, y=200, width=200, height=100)
        rig.probe.visible = [EDITOR, moved]  # the mask computed before the grab is stale
        return frame

    rig.grabber.grab = grab_while_vault_moves  # type: ignore[method-assign]
    rig.worker.start()
    rig.worker.observe(click())
    wait_for(lambda: rig.worker.refused == 1, 5, "refusal")
    assert rig.out.shots == [] and list(rig.store) == []


def test_hidpi_frame_masks_scaled_and_geometry_logical(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, max_width=4000))
    r.gates.excluded_titles.add("vault")
    r.probe.visible = [EDITOR, VAULT]
    r.grabber.scale = 2
    r.grabber.patches.append(((300, 200, 200, 100), (10, 200, 30)))  # the vault's pixels
    r.worker.start()
    try:
        r.worker.observe(click())
        wait_for(lambda: r.out.shots, 5, "shot")
    finally:
        r.worker.stop(5)
    shot = r.out.shots[0]
    assert shot.monitor == (0, 0, 1920, 1080)  # screen coordinates
    assert (shot.width, shot.height) == (3840, 2160)  # pixels as grabbed
    img = r.image(shot.sha256)
    inside = img.crop((602, 402, 998, 598)).getextrema()  # the vault at 2x
    assert all(hi <= 8 for _, hi in inside), inside
    assert min(img.getpixel((300, 300))) >= 240 and min(img.getpixel((1100, 500))) >= 240


def test_triggers_during_min_spacing_do_not_wake_the_worker(tmp_path: Path) -> None:
    r = Rig(tmp_path, Screenshots(min_spacing_s=2.0, after_typing_s=0))
    r.worker.start()
    try:
        r.worker.observe(click())
        wait_for(lambda: r.out.shots, 5, "first shot")
        r.worker.observe(click())  # held until the spacing has passed
        wait_for(lambda: r.worker._holding, 5, "worker holding a trigger")
        for _ in range(1000):  # a burst of clicks: merged, not queued, not lost
            r.worker.observe(click())
        assert len(r.worker._triggers) == 0
        assert r.worker.merged_while_waiting == 1000 and r.worker.queue_skipped == 0
        assert r.worker.status()["coalesced"] == 1000
    finally:
        r.worker.stop(5)
    assert r.out.gaps == [] and len(r.out.shots) == 1
