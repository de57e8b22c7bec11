"""Pre-action frames: which records start actions, and the ring under every privacy rule."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deskcorder.capture import screenshots as shots_mod
from deskcorder.capture.preaction import Request, Ring, RingFrame, Triggers
from deskcorder.capture.screenshots import ScreenshotWorker
from deskcorder.events import WindowInfo
from deskcorder.policy.model import Screenshots
from deskcorder.storage.blobs import BlobStore
from tests.screenshots.fakes import FakeGates, FakeGrabber, FakeProbe, Recorder
from tests.xserver import wait_for

pytest.importorskip("PIL")
from PIL import Image

T0 = 5_000_000_000
EDITOR = WindowInfo(id=11, title="editor", x=100, y=100, width=800, height=600)
VAULT = WindowInfo(id=13, title="vault", x=300, y=200, width=200, height=100)


def ns(ms: float) -> int:
    return T0 + int(ms * 1_000_000)


def rec(k: str, ms: float, **fields: Any) -> dict[str, Any]:
    return {"k": k, "t": int(ms * 1000), **fields}


# -- Triggers (pure) --------------------------------------------------------------------------


def test_a_press_wants_the_frame_from_before_the_pointer_arrived() -> None:
    trig = Triggers(T0)
    assert trig.record(rec("bd", 1000, x=5, y=5), last_move_ns=ns(700)) == Request(
        1_000_000, ns(700), ns(1000)
    )
    # the second press of a double click is the same action; a press far away is not
    assert trig.record(rec("bd", 1400, x=7, y=5), ns(700)) is None
    assert trig.record(rec("bd", 1500, x=50, y=5), ns(1450)) == Request(
        1_500_000, ns(1450), ns(1500)
    )
    # no move recorded yet: before the press itself
    assert Triggers(T0).record(rec("bd", 10, x=1, y=1), 0) == Request(10_000, ns(10), ns(10))


def test_scroll_typing_hotkey_and_key_starts() -> None:
    trig = Triggers(T0)
    got = [
        trig.record(r, 0)
        for r in (
            rec("sc", 100, x=1, y=1, dx=0, dy=-1),
            rec("sc", 700, x=1, y=1, dx=0, dy=-1),  # 600 ms later: the same scroll
            rec("sc", 1500, x=1, y=1, dx=0, dy=-1),  # 800 ms later: a new one
            rec("kd", 2000, cls="letter"),
            rec("kd", 2100, cls="letter"),
            rec("kd", 2150, key="backspace"),  # an edit while typing
            rec("kd", 2300, key="ctrl_l"),
            rec("kd", 2400, key="s", mods=["ctrl"]),
            rec("ku", 2450, key="ctrl_l"),
            rec("kd", 3000, key="down"),
            rec("kd", 3100, key="down"),  # the same key again
            rec("kd", 3200, key="enter"),
        )
    ]
    starts = [(r.act // 1000, (r.before_ns - T0) // 1_000_000) for r in got if r is not None]
    assert starts == [(100, 100), (1500, 1500), (2000, 2000), (2400, 2300), (3000, 3000),
                      (3200, 3200)]  # fmt: skip
    trig.reset()
    assert trig.record(rec("kd", 3300, key="enter"), 0) is not None


def test_ring_is_bounded_and_a_drop_makes_frames_in_flight_stale() -> None:
    ring = Ring(2)
    frames = [RingFrame(n, 0, None, (0, 0, 1, 1), (), 1) for n in (10, 20, 30)]
    for f in frames:
        assert ring.add(f)
    assert len(ring) == 2 and ring.before(25) is frames[1] and ring.before(10) is None
    ring.drop()
    assert len(ring) == 0 and not ring.valid(frames[2])
    assert not ring.add(frames[2])  # grabbed before the drop: not kept


# -- the worker's ring with a fake screen ------------------------------------------------


class Rig:
    def __init__(self, tmp: Path, **cfg: Any) -> None:
        self.gates = FakeGates()
        self.probe = FakeProbe(EDITOR)
        self.grabber = FakeGrabber()
        self.grabber.fill = (0, 0, 255)  # blue: the screen before the actions
        self.store = BlobStore(tmp / "blobs")
        self.out = Recorder()
        self.shed = 0
        self.t0 = time.monotonic_ns()
        settings = Screenshots(
            on_click=False, on_focus=False, after_typing_s=0, pre_action=True, max_width=4000,
            pre_action_hz=20, **cfg,
        )  # fmt: skip
        self.worker = ScreenshotWorker(
            settings, gates=self.gates, probe=self.probe, store=self.store, emit=self.out,
            grabber_factory=lambda: self.grabber, t0_ns=self.t0, last_move=lambda: 0,
            shed=lambda: self.shed,
        )  # fmt: skip

    def now_t(self) -> int:
        """Session µs now, rounded down to ms like the pipeline."""
        return (time.monotonic_ns() - self.t0) // 1_000_000 * 1000

    def input(self) -> None:
        self.worker.observe({"k": "ku", "t": self.now_t(), "cls": "letter"})

    def wait_ring(self, grabs: int = 1) -> None:
        start = self.worker.ring_grabs
        self.input()
        wait_for(lambda: self.worker.ring_grabs >= start + grabs, 5, "a ring frame")

    def colour(self, sha: str) -> tuple[int, int, int]:
        with Image.open(io.BytesIO(self.store.read(sha))) as img:
            return img.convert("RGB").getpixel((400, 500))  # type: ignore[return-value]

    def pre_shots(self) -> list[Any]:
        return [s for s in self.out.shots if s.reason == "pre_action"]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    r.worker.start()
    yield r
    r.worker.stop(5)


def test_the_stored_frame_is_the_one_grabbed_before_the_action(rig: Rig) -> None:
    rig.wait_ring()
    t = rig.now_t() + 1000  # the press, 1 ms after the last ring grab
    rig.grabber.fill = (255, 0, 0)  # the click's result: the screen turns red
    rig.worker.observe({"k": "bd", "t": t, "x": 400, "y": 500, "b": "left"})
    wait_for(rig.pre_shots, 5, "a pre-action frame")
    shot = rig.pre_shots()[0]
    assert (shot.act, shot.window_id, shot.monitor) == (t, EDITOR.id, (0, 0, 1920, 1080))
    assert 0 <= shot.age < 1_000_000
    assert rig.colour(shot.sha256) == (0, 0, 255)
    assert rig.worker.status()["pre_action_shots"] == 1


def test_two_actions_on_one_frame_store_it_once(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    encodes: list[int] = []
    real = shots_mod.encode
    monkeypatch.setattr(shots_mod, "encode", lambda *a, **k: encodes.append(1) or real(*a, **k))
    rig.wait_ring()
    rig.shed = 1  # no more ring grabs: both actions see the same newest frame
    t = rig.now_t() + 1000
    rig.worker.observe({"k": "kd", "t": t, "key": "enter"})
    rig.worker.observe({"k": "kd", "t": t + 1000, "key": "tab"})
    wait_for(lambda: len(rig.pre_shots()) == 2 or rig.worker.pre_missed, 5, "two frames")
    shots = rig.pre_shots()
    assert len(shots) == 2 and shots[0].sha256 == shots[1].sha256 and len(encodes) == 1


@pytest.mark.parametrize("how", ["pause", "excl"])
def test_the_ring_is_dropped_at_once_on_pause_or_exclusion(rig: Rig, how: str) -> None:
    rig.wait_ring()
    assert rig.worker.status()["ring_frames"] >= 1
    if how == "pause":
        rig.gates.blocked = "lock"
        rig.worker.observe({"k": "pause", "t": rig.now_t(), "src": "lock"})
    else:
        rig.gates.excluded_titles.add("editor")
        rig.worker.observe({"k": "excl", "t": rig.now_t(), "rule": "title"})
    assert rig.worker.status()["ring_frames"] == 0  # on the observer's own thread, at once
    grabs = len(rig.grabber.grabs)
    rig.worker.observe({"k": "bd", "t": rig.now_t(), "x": 400, "y": 500, "b": "left"})
    wait_for(lambda: rig.worker.pre_missed >= 1, 5, "the press found no frame")
    looks = rig.worker.ring_looks
    wait_for(lambda: rig.worker.ring_looks >= looks + 3, 5, "three more ring periods")
    assert len(rig.grabber.grabs) == grabs and rig.pre_shots() == []
    assert list(rig.store) == []


def test_an_excluded_visible_window_is_black_in_the_frame(rig: Rig) -> None:
    rig.probe.visible = [EDITOR, VAULT]
    rig.gates.excluded_titles.add("vault")
    rig.wait_ring(2)
    rig.worker.observe({"k": "kd", "t": rig.now_t() + 1000, "key": "f5"})
    wait_for(rig.pre_shots, 5, "a pre-action frame")
    with Image.open(io.BytesIO(rig.store.read(rig.pre_shots()[0].sha256))) as img:
        rgb = img.convert("RGB")
        assert rgb.getpixel((350, 250)) == (0, 0, 0)  # inside the vault
        assert rgb.getpixel((150, 150)) == (0, 0, 255)


def test_a_failing_privacy_check_drops_the_ring(rig: Rig) -> None:
    rig.wait_ring()
    rig.gates.raise_on_check = True
    wait_for(lambda: rig.worker.status()["ring_frames"] == 0, 5, "the ring dropped")


def test_a_pause_during_the_encode_discards_the_frame(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shots_mod.encode

    def paused_meanwhile(*args: Any, **kwargs: Any) -> bytes:
        rig.worker.observe({"k": "pause", "t": rig.now_t(), "src": "user"})
        return real(*args, **kwargs)

    monkeypatch.setattr(shots_mod, "encode", paused_meanwhile)
    rig.wait_ring()
    rig.worker.observe({"k": "kd", "t": rig.now_t() + 1000, "key": "f5"})
    wait_for(lambda: rig.worker.pre_refused >= 1, 5, "the frame refused")
    assert rig.pre_shots() == [] and list(rig.store) == []


def test_shedding_screenshots_empties_the_ring(rig: Rig) -> None:
    rig.wait_ring()
    rig.shed = 1
    wait_for(lambda: rig.worker.status()["ring_frames"] == 0, 5, "the ring dropped")


def test_the_ring_holds_at_most_its_size(tmp_path: Path) -> None:
    r = Rig(tmp_path, pre_action_frames=3)
    r.worker.start()
    try:
        for _ in range(5):
            r.wait_ring()
        assert r.worker.status()["ring_frames"] == 3
    finally:
        r.worker.stop(5)
