"""Pre-action observations: which records start an action, and the ring of raw frames.

With ``[screenshots] pre_action = true`` the screenshot worker keeps a small
ring of raw frames (no encoding) while input is active, and when an action
begins it encodes and stores the last frame grabbed *before* it. This module
holds the two pieces that need no display:

* :class:`Triggers` (pipeline thread, called from the worker's observer): is
  this record the start of an action (a click or drag press, the first wheel
  step of a scroll, a hotkey, a special key, the first key of typing), and
  before which moment must its frame have been grabbed? For a press that is
  when the pointer arrived (its last move before the press), so the frame
  shows the screen before hover effects; for a hotkey, the first modifier's
  press. The rules mirror the dataset reducer's (docs/dataset.md).
* :class:`Ring` (the bounded frame store): frames in grab order, each tagged
  with the *epoch* it was grabbed in. Clearing bumps the epoch, so a frame
  the worker is encoding while the ring is dropped (pause, lock, exclusion)
  is recognised as stale and never stored.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any

from deskcorder.events import MODIFIER_KEYS

_SHORTCUT_MODS = frozenset({"ctrl", "alt", "super"})
DOUBLE_CLICK_NS = 500_000_000  # a second press this soon and close is the same action
DOUBLE_CLICK_PX = 4
SCROLL_GAP_NS = 700_000_000  # wheel steps closer than this continue one scroll
TYPING_PAUSE_NS = 2_000_000_000  # keys closer than this continue typing / a key repeat


@dataclass(frozen=True, slots=True)
class Request:
    """Store the frame for the action whose first record has session time ``act``.

    The frame must be grabbed before ``before_ns`` (monotonic); when the ring
    has none that old, one grabbed before ``fallback_ns`` (the record itself)
    will do.
    """

    act: int
    before_ns: int
    fallback_ns: int


class Triggers:
    """Decides, record by record, where actions begin (pipeline thread only)."""

    def __init__(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns
        self._press: tuple[int, int, int] | None = None  # ns, x, y of the last press
        self._scroll_ns = -SCROLL_GAP_NS - 1
        self._typing_ns = -TYPING_PAUSE_NS - 1  # last printable key; -inf: not typing
        self._key: tuple[str, int] | None = None  # last special key and when
        self._mods: dict[str, int] = {}  # held modifier key -> ns of its press

    def reset(self) -> None:
        """After a pause or an exclusion: nothing continues across it."""
        self._press = None
        self._scroll_ns = -SCROLL_GAP_NS - 1
        self._typing_ns = -TYPING_PAUSE_NS - 1
        self._key = None
        self._mods.clear()

    def record(self, rec: dict[str, Any], last_move_ns: int) -> Request | None:
        kind = rec["k"]
        t = rec["t"]
        ns = self.t0_ns + t * 1000
        if kind == "bd":
            x, y = rec["x"], rec["y"]
            press = self._press
            self._press = (ns, x, y)
            self._typing_ns = self._scroll_ns = -TYPING_PAUSE_NS - 1
            self._key = None
            if (
                press is not None
                and ns - press[0] <= DOUBLE_CLICK_NS
                and abs(x - press[1]) <= DOUBLE_CLICK_PX
                and abs(y - press[2]) <= DOUBLE_CLICK_PX
            ):
                return None  # the second or third click of one action
            arrived = last_move_ns if 0 < last_move_ns <= ns else ns
            return Request(t, arrived, ns)
        if kind == "sc":
            previous, self._scroll_ns = self._scroll_ns, ns
            self._typing_ns = -TYPING_PAUSE_NS - 1
            self._key = None
            return None if ns - previous <= SCROLL_GAP_NS else Request(t, ns, ns)
        if kind == "kd":
            if "cls" in rec:
                previous, self._typing_ns = self._typing_ns, ns
                self._key = None
                return None if ns - previous <= TYPING_PAUSE_NS else Request(t, ns, ns)
            name = rec.get("key")
            if name is None:
                return None
            if name in MODIFIER_KEYS:
                self._mods.setdefault(name, ns)
                return None
            mods = rec.get("mods") or ()
            if mods and (_SHORTCUT_MODS.intersection(mods) or "shift" in mods):
                self._key = None
                self._typing_ns = -TYPING_PAUSE_NS - 1
                first = min(
                    (v for k, v in self._mods.items() if MODIFIER_KEYS[k] in mods), default=ns
                )
                return Request(t, first, ns)
            if self._typing_ns >= ns - TYPING_PAUSE_NS and name in ("backspace", "delete"):
                return None  # an edit while typing belongs to the typing
            key, self._key = self._key, (name, ns)
            if key is not None and key[0] == name and ns - key[1] <= TYPING_PAUSE_NS:
                return None  # the same key again: one action with a count
            self._typing_ns = -TYPING_PAUSE_NS - 1
            return Request(t, ns, ns)
        if kind == "ku":
            name = rec.get("key")
            if name is not None:
                self._mods.pop(name, None)
        return None


@dataclass(frozen=True, slots=True)
class RingFrame:
    """One raw frame: grabbed at ``ns`` in ``epoch``, with what privacy decided then."""

    ns: int
    epoch: int
    frame: Any  # screenshots.Frame
    region: tuple[int, int, int, int]
    masks: tuple[tuple[int, int, int, int], ...]
    window_id: int


class Ring:
    """The last ``size`` raw frames. Appended by the worker, dropped from any thread."""

    def __init__(self, size: int) -> None:
        self._frames: collections.deque[RingFrame] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame: RingFrame) -> bool:
        """Keep ``frame`` unless the ring was dropped since it was grabbed."""
        with self._lock:
            if frame.epoch != self.epoch:
                return False
            self._frames.append(frame)
            return True

    def make_room(self) -> None:
        """Forget the oldest frame when full, before a grab: the ring never holds more
        than ``size`` frames, the one being grabbed included."""
        with self._lock:
            if self._frames.maxlen is not None and len(self._frames) >= self._frames.maxlen:
                self._frames.popleft()

    def drop(self) -> None:
        """Forget every frame now; frames grabbed or taken before this are stale."""
        with self._lock:
            self.epoch += 1
            self._frames.clear()

    def valid(self, frame: RingFrame) -> bool:
        return frame.epoch == self.epoch

    def before(self, ns: int) -> RingFrame | None:
        """The newest frame grabbed strictly before ``ns``."""
        with self._lock:
            for frame in reversed(self._frames):
                if frame.ns < ns:
                    return frame
        return None
