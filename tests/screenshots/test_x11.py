"""Screenshots of a real X server (Xvfb + openbox): pixels, masking, dedup, geometry."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deskcorder.capture.gates import Gates
from deskcorder.capture.screenshots import MssGrabber, Rect, ScreenshotWorker
from deskcorder.policy.model import Policy, Screenshots
from deskcorder.storage.blobs import BlobStore
from tests.screenshots.conftest import MONITORS
from tests.screenshots.fakes import Recorder
from tests.screenshots.helpers import QUADRANTS, XdoProbe, geometry, pattern_window
from tests.xserver import XServer, wait_for

pytest.importorskip("PIL")
from PIL import Image, ImageChops, ImageStat

pytestmark = pytest.mark.x11

POLICY = Policy.model_validate({"exclusions": {"titles": ["^secret-"]}})


def close(proc: object) -> None:
    stdin = getattr(proc, "stdin", None)
    if stdin is not None:
        stdin.close()
    proc.wait(10)  # type: ignore[attr-defined]


def reference(x: XServer, rect: Rect) -> Image.Image:
    grabber = MssGrabber(x.display)
    try:
        frame = grabber.grab(rect)
    finally:
        grabber.close()
    return Image.frombytes("RGB", (frame.width, frame.height), bytes(frame.pixels), "raw", "BGRX")


def drawn(x: XServer, title: str) -> tuple[int, int, int, int]:
    """Wait until the pattern window shows its four quadrants; return its geometry."""
    wid = x.window_ids(title)[0]

    def ok() -> bool:
        gx, gy, gw, gh = geometry(x, wid)
        img = reference(x, (gx, gy, gw, gh))
        return (
            img.getpixel((gw // 4, gh // 4)) == QUADRANTS[0]
            and img.getpixel((3 * gw // 4, 3 * gh // 4)) == QUADRANTS[3]
        )

    wait_for(ok, 15, f"{title} drawn")
    return geometry(x, wid)


class Rig:
    def __init__(self, x: XServer, tmp: Path, cfg: Screenshots,
                 monitors: list[Rect] = MONITORS) -> None:  # fmt: skip
        self.store = BlobStore(tmp / "blobs")
        self.out = Recorder()
        self.worker = ScreenshotWorker(
            cfg, gates=Gates(POLICY), probe=XdoProbe(x), store=self.store, emit=self.out,
            grabber_factory=lambda: MssGrabber(x.display),
            monitors=lambda: monitors,
        )  # fmt: skip
        self.worker.start()

    def click(self, x: XServer, px: int, py: int, n: int = 1) -> None:
        x.xdotool("mousemove", str(px), str(py), "click", "1")
        self.worker.observe({"k": "bd", "t": 1, "x": px, "y": py, "b": "left"})

    def image(self, sha: str) -> Image.Image:
        return Image.open(io.BytesIO(self.store.read(sha))).convert("RGB")


def assert_quadrants(img: Image.Image, rect: Rect, origin: tuple[int, int] = (0, 0),
                     scale: float = 1.0) -> None:  # fmt: skip
    gx, gy, gw, gh = rect
    for i, (fx, fy) in enumerate(((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75))):
        px = round((gx - origin[0] + fx * gw) * scale)
        py = round((gy - origin[1] + fy * gh) * scale)
        got = img.getpixel((px, py))
        assert all(abs(a - b) <= 24 for a, b in zip(got, QUADRANTS[i], strict=True)), (i, got)


@pytest.mark.parametrize(("fmt", "scope"), [("webp", "active_monitor"), ("jpeg", "active_window")])
def test_stored_image_matches_screen(x: XServer, tmp_path: Path, fmt: str, scope: str) -> None:
    proc = pattern_window(x, "shot-pattern", "400x300+200+150")
    rig = Rig(x, tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, max_width=1920,
                                       quality=90, format=fmt, scope=scope))  # fmt: skip
    try:
        x.activate("shot-pattern")
        rect = drawn(x, "shot-pattern")
        rig.click(x, rect[0] + 10, rect[1] + 10)
        wait_for(lambda: rig.out.shots, 10, "shot")
        shot = rig.out.shots[0]
        assert shot.reason == "click" and shot.fmt == fmt
        assert shot.window_id == int(x.window_ids("shot-pattern")[0])
        expected = (0, 0, 1920, 1080) if scope == "active_monitor" else rect
        assert shot.monitor == expected
        img = rig.image(shot.sha256)
        assert img.size == (shot.width, shot.height) == expected[2:]
        ref = reference(x, expected)
        diff = ImageStat.Stat(ImageChops.difference(img, ref)).mean
        assert max(diff) < 3.0, diff  # lossy codec, same picture
        assert_quadrants(img, rect, expected[:2])
    finally:
        rig.worker.stop(5)
        close(proc)


def test_downscaled_to_max_width(x: XServer, tmp_path: Path) -> None:
    proc = pattern_window(x, "shot-small", "600x400+300+300")
    rig = Rig(x, tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, max_width=960))
    try:
        x.activate("shot-small")
        rect = drawn(x, "shot-small")
        rig.click(x, rect[0] + 5, rect[1] + 5)
        wait_for(lambda: rig.out.shots, 10, "shot")
        shot = rig.out.shots[0]
        assert (shot.width, shot.height) == (960, 540)
        assert_quadrants(rig.image(shot.sha256), rect, scale=0.5)
    finally:
        rig.worker.stop(5)
        close(proc)


@pytest.mark.parametrize("excluded", ["secret-vault", "Bank statement - Private Browsing"])
def test_excluded_window_is_black_and_never_shot_when_focused(
    x: XServer, tmp_path: Path, excluded: str
) -> None:
    """A policy title rule, and the built-in private-browsing rule."""
    main = pattern_window(x, "shot-main", "500x400+50+50")
    vault = pattern_window(x, excluded, "400x300+800+300")
    rig = Rig(x, tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, max_width=1920,
                                       quality=90))  # fmt: skip
    try:
        vrect = drawn(x, excluded)
        x.activate("shot-main")
        mrect = drawn(x, "shot-main")
        rig.click(x, mrect[0] + 20, mrect[1] + 20)
        wait_for(lambda: rig.out.shots, 10, "shot")
        img = rig.image(rig.out.shots[0].sha256)
        vx, vy, vw, vh = vrect
        inside = img.crop((vx + 2, vy + 2, vx + vw - 2, vy + vh - 2))
        assert all(hi <= 10 for _, hi in inside.getextrema()), inside.getextrema()
        assert_quadrants(img, mrect)  # the focused window is intact
        # focus the excluded window: no screenshot at all
        x.activate(excluded)
        blobs = set(rig.store)
        rig.click(x, vx + 10, vy + 10)
        wait_for(lambda: rig.worker.refused >= 1, 10, "refusal")
        assert len(rig.out.shots) == 1 and set(rig.store) == blobs
    finally:
        rig.worker.stop(5)
        close(vault)
        close(main)


def test_identical_frames_stored_once_and_flood_within_budget(x: XServer, tmp_path: Path) -> None:
    proc = pattern_window(x, "shot-same", "400x300+400+400")
    rig = Rig(x, tmp_path, Screenshots(min_spacing_s=0, after_typing_s=0, per_hour=4))
    try:
        x.activate("shot-same")
        rect = drawn(x, "shot-same")
        rig.click(x, rect[0] + 5, rect[1] + 5)
        wait_for(lambda: len(rig.out.shots) == 1, 10, "first shot")
        rig.click(x, rect[0] + 5, rect[1] + 5)
        wait_for(lambda: len(rig.out.shots) == 2, 10, "second shot")
        a, b = rig.out.shots
        assert a.sha256 == b.sha256
        assert list(rig.store) == [a.sha256]
        assert rig.worker.bytes_written == rig.store.path(a.sha256).stat().st_size
        w = rig.worker
        for i in range(10):  # a stream of clicks, each one a separate trigger
            done = w.decided + 1
            w.observe({"k": "bd", "t": 1, "x": 5, "y": 5, "b": "left"})
            wait_for(lambda done=done: w.decided == done, 10, f"click {i} handled")
        wait_for(lambda: sum(g["dropped"] for g in rig.out.gaps) == 8, 10, "gap for skips")
    finally:
        rig.worker.stop(5)
        close(proc)
    assert len(rig.out.shots) == 4  # the hourly budget
    assert rig.worker.budget_skipped == 8 and rig.worker.queue_skipped == 0


def test_multi_monitor_geometry(x: XServer, tmp_path: Path) -> None:
    grabber = MssGrabber(x.display)
    try:
        assert grabber.monitors()[0] == (0, 0, 3840, 1080)  # mss's virtual screen
    finally:
        grabber.close()
    proc = pattern_window(x, "shot-right", "400x300+2400+300")
    one = Rig(x, tmp_path / "one", Screenshots(min_spacing_s=0, after_typing_s=0, max_width=1920))
    every = Rig(x, tmp_path / "all", Screenshots(min_spacing_s=0, after_typing_s=0,
                scope="all_monitors"))  # fmt: skip
    try:
        x.activate("shot-right")
        rect = drawn(x, "shot-right")
        one.click(x, rect[0] + 5, rect[1] + 5)
        every.worker.observe({"k": "bd", "t": 1, "x": rect[0], "y": rect[1], "b": "left"})
        wait_for(lambda: one.out.shots and every.out.shots, 10, "shots")
        s1, s2 = one.out.shots[0], every.out.shots[0]
        assert s1.monitor == (1920, 0, 1920, 1080) and (s1.width, s1.height) == (1920, 1080)
        img = one.image(s1.sha256)
        assert_quadrants(img, rect, origin=(1920, 0))
        ref = reference(x, s1.monitor)
        assert max(ImageStat.Stat(ImageChops.difference(img, ref)).mean) < 3.0
        assert s2.monitor == (0, 0, 3840, 1080) and (s2.width, s2.height) == (1280, 360)
        assert_quadrants(every.image(s2.sha256), rect, scale=1 / 3)
    finally:
        one.worker.stop(5)
        every.worker.stop(5)
        close(proc)
