"""Screenshots: triggers, privacy checks, grab + mask + downscale + encode, blobs.

Everything expensive runs on one named worker thread. The pipeline observer
(:meth:`ScreenshotWorker.observe`, called on the pipeline thread for every
record after the gates) only appends a trigger to a small bounded deque and
sets an event; a full deque drops the trigger and counts it. Skipped frames
(trigger queue full, hourly budget spent, grab failed) become ``gap`` records
with cause ``screenshot_skip``.

Triggers (policy ``[screenshots]``): a ``bd`` record (``on_click``), a ``focus``
record (``on_focus``), a pause in typing (``after_typing_s``), a fixed interval
(``interval_s``). Triggers that arrive inside ``min_spacing_s`` of the last
shot are merged into one shot taken when the spacing has passed; at most
``per_hour`` shots are taken in any hour (0 = none).

Privacy (fail closed): no grab while the gates say capture is blocked
(paused, locked, schedule, consent, quota), while the pipeline last reported
the focused window as excluded, while the probe cannot tell the focused
window or it matches an exclusion rule (private browsing included), or when
any check raises. Visible, unfocused windows that match an exclusion rule are
blacked out at full resolution before the image is downscaled or encoded; if
such a window's rectangle is unknown, no screenshot is taken. All checks are
repeated after the grab and encode, before the blob reaches disk: if the
focused window or an excluded window's rectangle changed meanwhile, the frame
is discarded.

Identical frames: the raw pixels (plus masks and region) are hashed before
any encoding; a frame equal to a recent one only emits a new ``shot`` record
referencing the existing blob. With ``diff_threshold`` > 0, a frame whose
small grey thumbnail differs from the last stored one in fewer than that
fraction of pixels is skipped (no record).
"""

from __future__ import annotations

import collections
import hashlib
import io
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from deskcorder.capture.preaction import Request, Ring, RingFrame, Triggers
from deskcorder.events import (
    K_BUTTON_DOWN,
    K_EXCLUDED,
    K_FOCUS,
    K_GAP,
    K_KEY_DOWN,
    K_KEY_UP,
    K_PAUSE,
    K_RESUME,
    K_SCREEN,
    K_TEXT,
    RAW_MARK,
    RAW_SHOT,
    ShotInfo,
    WindowInfo,
)
from deskcorder.host import CaptureGates, Host
from deskcorder.platform import clock
from deskcorder.platform.base import Emit, WindowProbe
from deskcorder.platform.memory import release_memory
from deskcorder.platform.threads import lower_thread_priority
from deskcorder.policy.model import Screenshots
from deskcorder.storage.blobs import BlobStore

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

log = logging.getLogger(__name__)

Rect = tuple[int, int, int, int]  # left, top, width, height
Point = tuple[int, int]

TRIGGER_QUEUE = 8
"""Bound of the trigger deque between the pipeline observer and the worker."""
WEBP_METHOD = 0
"""libwebp effort (0 fastest .. 6 smallest); see docs/performance.md."""
GAP_EVERY_S = 1.0
"""Skips are reported as one ``gap`` record at most this often (and at stop)."""
RECENT_FRAMES = 16
"""Raw-pixel digests remembered for identical-frame reuse."""
THUMB_SIZE = (64, 36)
THUMB_LEVEL = 12  # grey levels a thumbnail pixel must change by to count as different
HOUR_S = 3600.0
MONITORS_REFRESH_S = 30.0
WORKER_NICE = 10

_INPUT_KINDS = frozenset({K_BUTTON_DOWN, K_KEY_DOWN, K_KEY_UP, K_TEXT, "bu", "sc", "mv", "title"})
_TYPING_KINDS = frozenset({K_KEY_DOWN, K_TEXT})
_PRE_INPUT = frozenset({K_BUTTON_DOWN, K_KEY_DOWN, K_KEY_UP, "sc"})
PRE_QUEUE = 16
"""Bound of the pre-action requests between the observer and the worker."""
RING_LOOK_NS = 100_000_000
"""The worker looks this often whether input started (cheap: two int reads)."""
RING_IDLE_NS = 2_000_000_000
"""Without input, the ring still takes a frame this often (a screen that changes while
the person reads is current when they act) ..."""
RING_IDLE_STOP_NS = 60_000_000_000
"""... for this long after the last input; then it stops, and its frames are too old
to be used."""
PRE_ACTION = "pre_action"


@dataclass(frozen=True, slots=True)
class Frame:
    """Raw pixels of one grab: BGRA (BGRX) rows, ``width * 4`` bytes each."""

    pixels: bytes | bytearray
    width: int
    height: int


class Grabber(Protocol):
    """Screen access. Created and used on the worker thread only."""

    def monitors(self) -> list[Rect]:
        """Index 0: the bounding box of all monitors; then one rect per monitor."""

    def grab(self, rect: Rect) -> Frame: ...

    def close(self) -> None: ...


class MssGrabber:
    """:class:`Grabber` on top of mss (X11, Windows, macOS). Lazily opens the display."""

    def __init__(self, display: str | None = None) -> None:
        self.display = display  # X11 only; None = $DISPLAY
        self._sct: Any = None
        self._opened = 0.0

    def _mss(self) -> Any:
        if self._sct is None:
            import mss

            factory = getattr(mss, "MSS", None) or mss.mss
            self._sct = factory(display=self.display) if self.display else factory()
            self._opened = time.monotonic()
        return self._sct

    def monitors(self) -> list[Rect]:
        if self._sct is not None and time.monotonic() - self._opened > MONITORS_REFRESH_S:
            self.close()  # mss caches the monitor list: reopen to see plugged/moved monitors
        return [
            (int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"]))
            for m in self._mss().monitors
        ]

    def grab(self, rect: Rect) -> Frame:
        left, top, width, height = rect
        shot = self._mss().grab({"left": left, "top": top, "width": width, "height": height})
        return Frame(shot.raw, shot.width, shot.height)

    def close(self) -> None:
        if self._sct is not None:
            self._sct.close()
            self._sct = None


GatesLike = CaptureGates  # what the worker asks of the pipeline's gates


# ---------------------------------------------------------------------------
# Pure helpers (tested without a display)
# ---------------------------------------------------------------------------


def intersect(a: Rect, b: Rect) -> Rect | None:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if right <= left or bottom <= top:
        return None
    return (left, top, right - left, bottom - top)


def contains(rect: Rect, point: Point) -> bool:
    return rect[0] <= point[0] < rect[0] + rect[2] and rect[1] <= point[1] < rect[1] + rect[3]


def window_rect(win: WindowInfo) -> Rect | None:
    if win.width is None or win.height is None or win.width <= 0 or win.height <= 0:
        return None
    return (win.x or 0, win.y or 0, win.width, win.height)


def choose_region(
    scope: str, monitors: list[Rect], win: WindowInfo | None, point: Point | None
) -> Rect:
    """The screen area to capture for ``scope``, in screen coordinates."""
    if not monitors:
        raise ValueError("no monitors")
    whole = monitors[0]
    screens = monitors[1:] or [whole]
    if scope == "all_monitors":
        return whole
    rect = window_rect(win) if win is not None else None
    if scope == "active_window" and rect is not None:
        clipped = intersect(rect, whole)
        if clipped is not None:
            return clipped
    # active monitor: the one holding the click, else the focused window's centre
    probes: list[Point] = []
    if point is not None:
        probes.append(point)
    if rect is not None:
        probes.append((rect[0] + rect[2] // 2, rect[1] + rect[3] // 2))
    for p in probes:
        for screen in screens:
            if contains(screen, p):
                return screen
    if rect is not None:  # centre off-screen: the monitor it overlaps most
        best = max(screens, key=lambda s: _area(intersect(s, rect)))
        if _area(intersect(best, rect)):
            return best
    return screens[0]


def _area(rect: Rect | None) -> int:
    return 0 if rect is None else rect[2] * rect[3]


def scaled_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    if width <= max_width:
        return width, height
    return max_width, max(1, round(height * max_width / width))


def to_image(frame: Frame, masks: list[Rect], region: Rect) -> PILImage.Image:
    """RGB image of ``frame`` with every mask rectangle (screen coords) blacked out.

    ``region`` is the grabbed area in screen coordinates. The frame may have
    more pixels than that (HiDPI: macOS grabs Retina screens at 2x); masks are
    scaled to the frame and rounded outwards, so they never cover less.
    """
    from PIL import Image, ImageDraw

    img = Image.frombuffer("RGB", (frame.width, frame.height), frame.pixels, "raw", "BGRX", 0, 1)
    if masks:
        sx, sy = frame.width / region[2], frame.height / region[3]
        draw = ImageDraw.Draw(img)  # BGRX -> RGB made a copy: the grab buffer is untouched
        for m in masks:
            local = intersect(m, region)
            if local is None:
                continue
            x0 = math.floor((local[0] - region[0]) * sx)
            y0 = math.floor((local[1] - region[1]) * sy)
            x1 = math.ceil((local[0] - region[0] + local[2]) * sx)
            y1 = math.ceil((local[1] - region[1] + local[3]) * sy)
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(0, 0, 0))
    return img


def downscale(img: PILImage.Image, max_width: int) -> PILImage.Image:
    from PIL import Image

    size = scaled_size(img.width, img.height, max_width)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.BOX)


def encode(img: PILImage.Image, fmt: str, quality: int, method: int = WEBP_METHOD) -> bytes:
    out = io.BytesIO()
    if fmt == "webp":
        img.save(out, "WEBP", quality=quality, method=method)
    elif fmt == "jpeg":
        img.save(out, "JPEG", quality=quality)
    elif fmt == "png":
        img.save(out, "PNG", compress_level=1)
    else:
        raise ValueError(f"unsupported screenshot format {fmt!r}")
    return out.getvalue()


def thumbnail(img: PILImage.Image) -> PILImage.Image:
    from PIL import Image

    return img.convert("L").resize(THUMB_SIZE, Image.Resampling.BOX)


def changed_fraction(a: PILImage.Image, b: PILImage.Image) -> float:
    """Fraction of thumbnail pixels that differ by more than :data:`THUMB_LEVEL`."""
    from PIL import ImageChops

    hist = ImageChops.difference(a, b).histogram()
    total = a.width * a.height
    return sum(hist[THUMB_LEVEL + 1 :]) / total


def pixel_key(frame: Frame, region: Rect, masks: list[Rect], settings: tuple[Any, ...]) -> bytes:
    """Digest of the raw pixels and everything else that shapes the stored image.

    sha256 because it is hardware-accelerated on current x86 and ARM CPUs
    (about 5 ms for a 1920x1080 frame here, half of blake2b's time).
    """
    h = hashlib.sha256()
    h.update(repr((region, frame.width, frame.height, sorted(masks), settings)).encode())
    h.update(frame.pixels)
    return h.digest()


# ---------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------


@dataclass
class _Trigger:
    reason: str
    t_ns: int
    point: Point | None = None


class ScreenshotWorker:
    """Takes screenshots on its own thread when triggers ask and privacy allows."""

    def __init__(
        self,
        cfg: Screenshots,
        *,
        gates: GatesLike,
        probe: WindowProbe,
        store: BlobStore,
        emit: Emit,
        grabber_factory: Callable[[], Grabber] = MssGrabber,
        monitors: Callable[[], list[Rect]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        t0_ns: int = 0,
        last_move: Callable[[], int] = lambda: 0,
        shed: Callable[[], int] = lambda: 0,
        power: Callable[[], tuple[bool, float]] = lambda: (True, 0.0),
    ) -> None:
        self.cfg = cfg
        self._power = power  # policy [power]: (allowed, extra spacing), deskcorder.conditions
        self.gates = gates
        self.probe = probe
        self.store = store
        self.emit = emit
        self._grabber_factory = grabber_factory
        self._monitors_override = monitors
        self._clock = clock
        self._settings = (cfg.scope, cfg.max_width, cfg.format, cfg.quality, WEBP_METHOD)
        self._on_click = cfg.on_click
        self._on_focus = cfg.on_focus
        self._on_typing = cfg.after_typing_s > 0
        # written by the pipeline thread (observe), read by the worker
        self._triggers: collections.deque[_Trigger] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_key_ns = 0
        self._pipeline_paused = False
        self._pipeline_excluded = False
        self._screens_changed = False  # a `screen` record: the grabber re-reads monitors
        self.queue_skipped = 0
        self.merged_while_waiting = 0
        # written by the worker, read by the pipeline thread
        self._holding = False  # sleeping until min_spacing_s with a pending trigger
        # worker-only state
        self._thread: threading.Thread | None = None
        self._pending: _Trigger | None = None
        self._typing_seen_ns = 0
        self._last_shot = float("-inf")
        self._last_attempt = float("-inf")
        self._taken: collections.deque[float] = collections.deque()
        self._recent: collections.OrderedDict[bytes, tuple[str, int, int]] = (
            collections.OrderedDict()
        )
        self._last_thumb: PILImage.Image | None = None
        self._reported_skips = 0
        self._last_gap = float("-inf")
        self.budget_skipped = 0
        self.power_skipped = 0
        self.failed = 0
        self.coalesced = 0
        self.refused = 0
        self.similar_skipped = 0
        self.shots = 0
        self.decided = 0  # pending triggers acted on (shot, refused, skipped or failed)
        self.reused = 0
        self.blobs_written = 0
        self.bytes_written = 0
        self.last_error: str | None = None
        # pre-action frames (docs/dataset.md): triggers on the pipeline thread, ring on ours
        self._pre = cfg.pre_action
        self._t0_ns = t0_ns
        self._last_move = last_move
        self._shed = shed
        self._ring = Ring(cfg.pre_action_frames)
        self._pre_triggers = Triggers(t0_ns)
        self._pre_requests: collections.deque[Request] = collections.deque()
        self._input_ns = 0  # latest input record observed (pipeline thread writes)
        self._ring_period_ns = int(1e9 / cfg.pre_action_hz)
        self._last_grab_ns = 0
        self._ring_active = False
        self._ring_check: tuple[WindowInfo, list[Rect]] | None = None
        self._ring_check_ns = 0
        self._ring_check_epoch = -1
        self._pre_taken: collections.deque[float] = collections.deque()
        self._pre_last: tuple[int, str, int, int] | None = None  # frame ns, sha, w, h
        self.pre_shots = 0
        self.pre_missed = 0
        self.pre_refused = 0
        self.ring_grabs = 0
        self.ring_cpu_ns = 0  # CPU time the ring's grabs and checks took
        self.ring_looks = 0  # times the ring was due to be considered (tests wait on it)

    # -- pipeline thread -------------------------------------------------------------
    def observe(self, record: dict[str, Any]) -> None:
        """Pipeline observer: O(1), never blocks, never raises on a well-formed record.

        Called for every record, so the frequent kinds (keys, moves) come first
        and cost a few attribute reads (about 0.2 us).
        """
        kind = record["k"]
        if self._pre:
            self._pre_observe(record, kind)
        if kind in _INPUT_KINDS:
            # input records only get past the gates while the focus is recordable
            if self._pipeline_excluded:
                self._pipeline_excluded = False
            if kind == K_BUTTON_DOWN:
                if self._on_click:
                    point = (record["x"], record["y"])
                    self._trigger(_Trigger("click", clock.now_ns(), point))
            elif self._on_typing and kind in _TYPING_KINDS:
                first = self._last_key_ns <= self._typing_seen_ns
                self._last_key_ns = clock.now_ns()
                if first:
                    self._wake.set()
        elif kind == K_FOCUS:
            self._pipeline_excluded = False
            if self._on_focus:
                self._trigger(_Trigger("focus", clock.now_ns()))
        elif kind == K_EXCLUDED:
            self._pipeline_excluded = True
            self._triggers.clear()
        elif kind == K_PAUSE:
            self._pipeline_paused = True
            self._triggers.clear()
        elif kind == K_RESUME:
            self._pipeline_paused = False
        elif kind == K_SCREEN:
            self._screens_changed = True

    def _pre_observe(self, record: dict[str, Any], kind: str) -> None:
        if kind in _PRE_INPUT:
            self._input_ns = clock.now_ns()
            req = self._pre_triggers.record(record, self._last_move())
            if req is not None:
                if len(self._pre_requests) < PRE_QUEUE:
                    self._pre_requests.append(req)
                    self._wake.set()
                else:
                    self.queue_skipped += 1
        elif kind in (K_PAUSE, K_EXCLUDED):
            # dropped at once: no frame of a paused, locked or excluded moment is kept
            self._ring.drop()
            self._pre_requests.clear()
            self._pre_triggers.reset()

    def _trigger(self, trig: _Trigger) -> None:
        if self._holding:
            # the worker already holds a trigger it fires when min_spacing_s has
            # passed; this one would be merged into it: no need to wake it
            self.merged_while_waiting += 1
            return
        if len(self._triggers) < TRIGGER_QUEUE:
            self._triggers.append(trig)
            self._wake.set()
        else:
            self.queue_skipped += 1

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="deskcorder-screenshots", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def status(self) -> dict[str, object]:
        return {
            "running": self._thread is not None and self._thread.is_alive(),
            "shots": self.shots,
            "reused": self.reused,
            "blobs_written": self.blobs_written,
            "bytes_written": self.bytes_written,
            "skipped_queue": self.queue_skipped,
            "skipped_budget": self.budget_skipped,
            "skipped_similar": self.similar_skipped,
            "coalesced": self.coalesced + self.merged_while_waiting,
            "refused_privacy": self.refused,
            "skipped_power": self.power_skipped,
            "failed": self.failed,
            "last_error": self.last_error,
            **(
                {
                    "pre_action_shots": self.pre_shots,
                    "pre_action_missed": self.pre_missed,
                    "pre_action_refused": self.pre_refused,
                    "ring_frames": len(self._ring),
                    "ring_grabs": self.ring_grabs,
                    "ring_cpu_s": round(self.ring_cpu_ns / 1e9, 3),
                }
                if self._pre
                else {}
            ),
        }

    # -- worker thread ----------------------------------------------------------------
    def _run(self) -> None:
        grabber: Grabber | None = None
        lower_thread_priority(WORKER_NICE)  # background work: the user's apps come first
        try:
            grabber = self._grabber_factory()
            while not self._stop.is_set():
                timeout = self._step(grabber)
                if timeout is not None:
                    self._wake.wait(timeout)
                    self._wake.clear()
        except Exception as exc:  # pragma: no cover - reported in status
            log.exception("screenshot worker failed; screenshots are off")
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            if grabber is not None:
                try:
                    grabber.close()
                except Exception:
                    log.debug("closing the grabber failed", exc_info=True)
            self._report_skips(force=True)

    def _skips(self) -> int:
        return self.queue_skipped + self.budget_skipped + self.failed

    def _report_skips(self, force: bool = False) -> None:
        skips = self._skips()
        if skips == self._reported_skips:
            return
        now = self._clock()
        if not force and now - self._last_gap < GAP_EVERY_S:
            return
        delta = skips - self._reported_skips
        self._reported_skips = skips
        self._last_gap = now
        self.emit(
            (
                RAW_MARK,
                clock.now_ns(),
                K_GAP,
                {"cause": "screenshot_skip", "dropped": delta},
            )
        )

    def _step(self, grabber: Grabber) -> float | None:
        """Pre-action frames first (they are waited for), then at most one shot."""
        if not self._pre:
            return self._step_shots(grabber)
        self._serve_pre()
        timeout = self._step_shots(grabber)
        ring_wait = self._ring_tick(grabber)
        return None if timeout is None else min(timeout, ring_wait)

    # -- pre-action frames ------------------------------------------------------------
    def _ring_tick(self, grabber: Grabber) -> float:
        """Grab a ring frame when due: at once when input starts after a rest (the screen
        before the approach), then every period while it goes on, every 2 s when idle
        (for up to a minute). Returns how long until the next look (at most 0.1 s)."""
        period = self._ring_period_ns
        now = clock.now_ns()
        self.ring_looks += 1
        # the watchdog sheds screenshots (watchdog.screenshots_allowed); a low battery
        # turns them off (policy [power])
        if self._shed() >= 1 or not self._power()[0]:
            if len(self._ring):
                self._ring.drop()
            return period / 1e9
        look = min(period, RING_LOOK_NS) / 1e9
        idle = now - max(self._input_ns, self._last_move())
        if idle > RING_IDLE_STOP_NS:
            if len(self._ring):
                self._ring.drop()
            return look
        active = idle <= 2 * period
        started, self._ring_active = active and not self._ring_active, active
        due = self._last_grab_ns + (period if active else RING_IDLE_NS)
        if now < due and not started:  # input (re)starting after a rest: a frame now
            return look
        self._last_grab_ns = now
        cpu = time.thread_time_ns()
        try:
            self._grab_into_ring(grabber)
        except Exception as exc:
            self._ring.drop()
            error = f"{type(exc).__name__}: {exc}"
            if error != self.last_error:
                log.warning("pre-action frame failed: %s", error, exc_info=True)
            self.last_error = error
        self.ring_cpu_ns += time.thread_time_ns() - cpu
        return look

    def _grab_into_ring(self, grabber: Grabber) -> None:
        """Grab one frame between two privacy checks that agree, or drop the ring.

        While the ring runs, the check after one grab is the check before the
        next (one probe round per frame instead of two); a check older than two
        periods is made afresh.
        """
        epoch = self._ring.epoch
        now = clock.now_ns()
        before = self._ring_check
        if (
            before is None
            or self._ring_check_epoch != epoch  # dropped since: pause, lock, exclusion
            or now - self._ring_check_ns > 2 * self._ring_period_ns
        ):
            before = self._check()
        self._ring_check = None
        if before is None:  # paused, locked, excluded, unknown window or a failed check
            self._ring.drop()
            return
        win, masks = before
        region = choose_region(self.cfg.scope, self._monitors(grabber), win, None)
        self._ring.make_room()
        ns = clock.now_ns()
        frame = grabber.grab(region)
        after = self._check()
        if after is None or after[0].id != win.id or sorted(after[1]) != sorted(masks):
            self._ring.drop()  # the frame is let go here: it never leaves memory
            return
        self._ring_check, self._ring_check_ns = after, clock.now_ns()
        self._ring_check_epoch = epoch
        self.ring_grabs += 1
        self._ring.add(RingFrame(ns, epoch, frame, region, tuple(masks), win.id))

    def _serve_pre(self) -> None:
        while self._pre_requests:
            req = self._pre_requests.popleft()
            frame = self._ring.before(req.before_ns) or self._ring.before(req.fallback_ns)
            if frame is None:
                self.pre_missed += 1
                continue
            now = self._clock()
            while self._pre_taken and self._pre_taken[0] <= now - HOUR_S:
                self._pre_taken.popleft()
            if len(self._pre_taken) >= self.cfg.pre_action_per_hour:
                self.budget_skipped += 1
                continue
            try:
                self._store_pre(frame, req, now)
            except Exception as exc:
                self.failed += 1
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:
                    log.warning("pre-action frame failed: %s", error, exc_info=True)
                self.last_error = error

    def _pre_allowed(self, frame: RingFrame) -> bool:
        """Not dropped since it was grabbed, and capture is not paused or excluded now."""
        return (
            self._ring.valid(frame)
            and not self._pipeline_paused
            and not self._pipeline_excluded
            and not self._gates_blocked()
        )

    def _store_pre(self, frame: RingFrame, req: Request, now: float) -> None:
        cfg = self.cfg
        if not self._pre_allowed(frame):
            self.pre_refused += 1
            return
        last = self._pre_last
        if last is not None and last[0] == frame.ns:
            sha, w, h = last[1], last[2], last[3]  # the same frame for the next action
        else:
            img = downscale(to_image(frame.frame, list(frame.masks), frame.region), cfg.max_width)
            data = encode(img, cfg.format, cfg.quality)
            if not self._pre_allowed(frame):  # dropped while we encoded
                self.pre_refused += 1
                return
            sha, written = self.store.put(data)
            if written:
                self.blobs_written += 1
                self.bytes_written += len(data)
            w, h = img.width, img.height
            self._pre_last = (frame.ns, sha, w, h)
            del img, data
            release_memory()
        self._pre_taken.append(now)
        self.pre_shots += 1
        age = max(0, (self._t0_ns + req.act * 1000 - frame.ns) // 1000)
        info = ShotInfo(
            sha, cfg.format, w, h, frame.region, PRE_ACTION, frame.window_id, req.act, age
        )
        self.emit((RAW_SHOT, clock.now_ns(), info))

    def _step_shots(self, grabber: Grabber) -> float | None:
        """Do at most one shot; return how long to wait for the next trigger (None: now)."""
        cfg = self.cfg
        now = self._clock()
        self._holding = False
        while self._triggers:
            trig = self._triggers.popleft()
            if self._pending is not None:
                self.coalesced += 1
                if self._pending.reason == "click" and trig.reason != "click":
                    trig = _Trigger("click", trig.t_ns, self._pending.point)
            self._pending = trig
        waits: list[float] = [GAP_EVERY_S]
        key_ns = self._last_key_ns
        if cfg.after_typing_s > 0 and key_ns > self._typing_seen_ns:
            left = key_ns / 1e9 + cfg.after_typing_s - clock.now_s()
            if left <= 0:
                self._typing_seen_ns = key_ns
                if self._pending is None:
                    self._pending = _Trigger("typing", clock.now_ns())
                else:
                    self.coalesced += 1
            else:
                waits.append(left)
        if cfg.interval_s > 0:
            due = max(self._last_shot, self._last_attempt) + cfg.interval_s
            if now >= due:
                if self._pending is None:
                    self._pending = _Trigger("interval", clock.now_ns())
            else:
                waits.append(due - now)
        self._report_skips()
        if self._pending is None:
            return min(waits)
        allowed, spacing = self._power()
        if not allowed:  # on a low battery: the `power` record says why none are taken
            self._pending = None
            self.power_skipped += 1
            return min(waits)
        ready = self._last_shot + max(cfg.min_spacing_s, spacing)
        if now < ready:
            self._holding = True
            return max(0.0, ready - now)
        trig, self._pending = self._pending, None
        try:
            self._decide(grabber, trig, now)
        finally:
            self.decided += 1
        return None

    def _decide(self, grabber: Grabber, trig: _Trigger, now: float) -> None:
        self._last_attempt = now  # the interval timer restarts whatever happens next
        while self._taken and self._taken[0] <= now - HOUR_S:
            self._taken.popleft()
        if len(self._taken) >= self.cfg.per_hour:
            self.budget_skipped += 1
            return
        try:
            self._shoot(grabber, trig)
        except Exception as exc:
            self.failed += 1
            error = f"{type(exc).__name__}: {exc}"
            if error != self.last_error:  # once per distinct error, not once per frame
                log.warning("screenshot failed: %s", error, exc_info=True)
            self.last_error = error

    # -- privacy --------------------------------------------------------------------
    def _check(self) -> tuple[WindowInfo, list[Rect]] | None:
        """The focused window and the rectangles to black out, or None: no screenshot."""
        try:
            if self._pipeline_paused or self._pipeline_excluded:
                return None
            if self._gates_blocked():
                return None
            win = self.probe.active_window()
            if win is None or self.gates.window_rule(win) is not None:
                return None
            masks: list[Rect] = []
            for other in self.probe.visible_windows():
                if other.id == win.id or self.gates.window_rule(other) is None:
                    continue
                rect = window_rect(other)
                if rect is None:
                    return None  # an excluded window we cannot locate: fail closed
                masks.append(rect)
            return win, masks
        except Exception:
            log.warning("screenshot privacy check failed; no screenshot", exc_info=True)
            return None

    def _gates_blocked(self) -> bool:
        """Ask the pipeline's gates, without letting them change state on this thread.

        ``Gates.blocked_reason`` clears an expired pause as a side effect; that
        write belongs to the pipeline thread (it could otherwise race with a new
        pause). An expired but not yet cleared pause counts as blocked here: the
        pipeline clears it on its next tick.
        """
        until = getattr(self.gates, "paused_until", None)
        if until is not None:
            timer: Callable[[], float] = getattr(self.gates, "timer", clock.now_s)
            if timer() >= until:
                return True
        return self.gates.blocked_reason() is not None

    def _still_allowed(self, win: WindowInfo, masks: list[Rect]) -> bool:
        """Re-check after the grab: same focused window, same excluded rectangles."""
        again = self._check()
        if again is None:
            return False
        return again[0].id == win.id and sorted(again[1]) == sorted(masks)

    # -- one shot ---------------------------------------------------------------------
    def _monitors(self, grabber: Grabber) -> list[Rect]:
        if self._monitors_override is not None:
            mons = self._monitors_override()
            if mons:
                return mons
        return grabber.monitors()

    def _shoot(self, grabber: Grabber, trig: _Trigger) -> None:
        cfg = self.cfg
        checked = self._check()
        if checked is None:
            self.refused += 1
            return
        win, masks = checked
        if self._screens_changed:  # mss keeps the monitor list it opened with
            self._screens_changed = False
            grabber.close()
        region = choose_region(cfg.scope, self._monitors(grabber), win, trig.point)
        t_ns = clock.now_ns()
        frame = grabber.grab(region)
        key = pixel_key(frame, region, masks, self._settings)
        known = self._recent.get(key)
        if known is not None and self.store.touch(known[0]):
            if not self._still_allowed(win, masks):
                self.refused += 1
                return
            self._recent.move_to_end(key)
            self.reused += 1
            self._emit_shot(t_ns, known[0], known[1], known[2], region, trig.reason, win)
            return
        img = downscale(to_image(frame, masks, region), cfg.max_width)
        del frame
        if cfg.diff_threshold > 0:
            thumb = thumbnail(img)
            last = self._last_thumb
            if last is not None and changed_fraction(thumb, last) < cfg.diff_threshold:
                self.similar_skipped += 1
                return
            self._last_thumb = thumb
        data = encode(img, cfg.format, cfg.quality)
        if not self._still_allowed(win, masks):
            self.refused += 1
            return
        sha, written = self.store.put(data)
        if written:
            self.blobs_written += 1
            self.bytes_written += len(data)
        self._recent[key] = (sha, img.width, img.height)
        while len(self._recent) > RECENT_FRAMES:
            self._recent.popitem(last=False)
        self._emit_shot(t_ns, sha, img.width, img.height, region, trig.reason, win)

    def _emit_shot(
        self, t_ns: int, sha: str, w: int, h: int, region: Rect, reason: str, win: WindowInfo
    ) -> None:
        self._report_skips(force=True)
        now = self._clock()
        self._last_shot = now
        self._taken.append(now)
        self.shots += 1
        info = ShotInfo(sha, self.cfg.format, w, h, region, reason, win.id)
        self.emit((RAW_SHOT, t_ns, info))


# ---------------------------------------------------------------------------
# Agent component
# ---------------------------------------------------------------------------


class ScreenshotComponent:
    """The agent component: wires a :class:`ScreenshotWorker` to the running agent."""

    name = "screenshots"

    def __init__(
        self,
        grabber_factory: Callable[[], Grabber] = MssGrabber,
        monitors: Callable[[], list[Rect]] | None = None,
    ) -> None:
        self._grabber_factory = grabber_factory
        self._monitors = monitors
        self.worker: ScreenshotWorker | None = None
        self._observers: list[Callable[[dict[str, Any]], None]] | None = None

    def start(self, host: Host) -> None:
        try:
            import PIL  # noqa: F401
        except ImportError as exc:
            from deskcorder.errors import EnvironmentUnsupported

            raise EnvironmentUnsupported(
                "screenshots are on in the policy but Pillow is not installed "
                "(pip install 'deskcorder[screenshots]')"
            ) from exc
        worker = ScreenshotWorker(
            host.policy.screenshots,
            gates=host.gates,
            probe=host.windows,
            store=BlobStore(host.spool.blobs_dir),
            emit=host.emit,
            grabber_factory=self._grabber_factory,
            monitors=self._monitors,
            t0_ns=host.t0_ns,
            last_move=lambda: host.last_move_ns,
            shed=lambda: host.shed_level,
            power=host.conditions.screenshots,
        )
        self.worker = worker
        self._observers = host.observers
        self._observers.append(worker.observe)
        worker.start()

    def stop(self, timeout: float) -> None:
        if self.worker is None:
            return
        if self._observers is not None and self.worker.observe in self._observers:
            self._observers.remove(self.worker.observe)
        if not self.worker.stop(timeout):
            log.warning("screenshot worker did not stop within %.1f s", timeout)

    def status(self) -> dict[str, object]:
        return {} if self.worker is None else self.worker.status()
