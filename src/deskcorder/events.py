"""Event kinds: the in-memory tuples sources enqueue and the on-disk records.

Two representations exist on purpose:

* **Raw events** are plain tuples that OS hooks put on the bounded queue. A hook
  must only timestamp, copy scalars and ``put_nowait``; building a tuple is the
  cheapest way to do that. The first item is one of the ``RAW_*`` tags, the
  second is ``deskcorder.platform.clock.now_ns()`` (the session clock: monotonic, and it
  keeps counting while the machine sleeps).
* **Records** are what a chunk stores, one JSON object per line. The pydantic
  models below are the reference for their fields (docs/format.md explains
  them) and export the JSON Schema. The pipeline writes records with plain
  ``json`` for speed; tests validate what it writes against these models.

Times in records (``t``) are integer microseconds since the session start on
one clock that counts sleep too; each chunk header anchors it to UTC (a ``clock``
record re-anchors it after a suspend or a wall-clock step). The pipeline
rounds input times down to whole milliseconds (``Pipeline.time_resolution_us``):
devices poll every 1-8 ms, so the finer digits were host jitter that cost about
a quarter of the compressed size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

FORMAT_NAME = "deskcorder-chunk"
FORMAT_VERSION = 1

# ---------------------------------------------------------------------------
# Raw events (source -> queue). Tuples: (tag, clock.now_ns(), *scalars)
# ---------------------------------------------------------------------------

RAW_MOVE = 1  # (RAW_MOVE, t_ns, x, y)
RAW_BUTTON = 2  # (RAW_BUTTON, t_ns, x, y, button: str, pressed: bool)
RAW_SCROLL = 3  # (RAW_SCROLL, t_ns, x, y, dx, dy)
RAW_KEY = 4  # (RAW_KEY, t_ns, pressed: bool, char: str|None, name: str|None, vk: int|None)
RAW_FOCUS = 5  # (RAW_FOCUS, t_ns, WindowInfo|None)   None = unknown window
RAW_TITLE = 6  # (RAW_TITLE, t_ns, window_id: int, title: str)
RAW_SESSION = 7  # (RAW_SESSION, t_ns, locked: bool|None, active: bool|None)
RAW_SHOT = 8  # (RAW_SHOT, t_ns, ShotInfo)
RAW_CONTROL = 9  # (RAW_CONTROL, t_ns, command: str, arg: object)
RAW_MARK = 10  # (RAW_MARK, t_ns, kind: str, fields: dict)  pre-built record (gaps, shed, ...)
# (RAW_ELEMENT, t_ns, window_id: int, src: "click"|"focus", act: int|None, Element)
RAW_ELEMENT = 11


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """What is known about one top-level window. Any field may be unknown."""

    id: int
    title: str | None = None
    app: str | None = None  # WM_CLASS class / bundle id / exe stem
    pid: int | None = None
    process: str | None = None  # process name (comm)
    exe: str | None = None  # executable path
    x: int | None = None  # geometry in screen coordinates, when known
    y: int | None = None
    width: int | None = None
    height: int | None = None

    def as_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"id": self.id}
        for key in ("title", "app", "pid", "process", "exe"):
            value = getattr(self, key)
            if value is not None:
                rec[key] = value
        if self.width is not None and self.height is not None:
            rec["rect"] = [self.x or 0, self.y or 0, self.width, self.height]
        return rec


@dataclass(frozen=True, slots=True)
class ShotInfo:
    """A screenshot already stored in the blob store."""

    sha256: str
    fmt: str
    width: int
    height: int
    monitor: tuple[int, int, int, int]  # left, top, width, height of the captured area
    reason: str
    window_id: int | None = None
    act: int | None = None  # pre_action: ``t`` (session µs) of the record the frame precedes
    age: int | None = None  # pre_action: µs the frame was grabbed before ``act``


# ---------------------------------------------------------------------------
# On-disk record kinds (the "k" field)
# ---------------------------------------------------------------------------

K_START = "start"
K_END = "end"
K_MOVE = "mv"
K_BUTTON_DOWN = "bd"
K_BUTTON_UP = "bu"
K_SCROLL = "sc"
K_KEY_DOWN = "kd"
K_KEY_UP = "ku"
K_FOCUS = "focus"
K_TITLE = "title"
K_SHOT = "shot"
K_PAUSE = "pause"
K_RESUME = "resume"
K_EXCLUDED = "excl"
K_GAP = "gap"
K_TEXT = "text"
K_SHED = "shed"
K_CLOCK = "clock"
K_POWER = "power"
K_SCREEN = "screen"
K_ELEMENT = "el"

#: Version of the ``el`` record's fields; the chunk header's ``elements`` says which one a
#: session wrote (absent: element capture was off). Bumped when a reader of the previous
#: version would misread an ``el`` record.
ELEMENT_VERSION = 1

ALL_KINDS = (
    K_START,
    K_END,
    K_MOVE,
    K_BUTTON_DOWN,
    K_BUTTON_UP,
    K_SCROLL,
    K_KEY_DOWN,
    K_KEY_UP,
    K_FOCUS,
    K_TITLE,
    K_SHOT,
    K_PAUSE,
    K_RESUME,
    K_EXCLUDED,
    K_GAP,
    K_TEXT,
    K_SHED,
    K_CLOCK,
    K_POWER,
    K_SCREEN,
    K_ELEMENT,
)

INPUT_KINDS = frozenset(
    {K_MOVE, K_BUTTON_DOWN, K_BUTTON_UP, K_SCROLL, K_KEY_DOWN, K_KEY_UP, K_TEXT}
)

# Key classes used by the ``redacted`` keystroke mode.
KEY_CLASSES = ("letter", "digit", "space", "punct")

# Modifier names as written in records (``mods`` field), in this order.
MODIFIERS = ("shift", "ctrl", "alt", "super", "altgr")

# Key names (pynput's, as in ``kd``/``ku`` records) of the modifier keys -> their modifier.
MODIFIER_KEYS = {
    "shift": "shift",
    "shift_l": "shift",
    "shift_r": "shift",
    "ctrl": "ctrl",
    "ctrl_l": "ctrl",
    "ctrl_r": "ctrl",
    "alt": "alt",
    "alt_l": "alt",
    "alt_r": "alt",
    "alt_gr": "altgr",
    "iso_level3_shift": "altgr",
    "cmd": "super",
    "cmd_l": "super",
    "cmd_r": "super",
    "super": "super",
    "super_l": "super",
    "super_r": "super",
}


def event_count(record: dict[str, Any]) -> int:
    """How many input events one record stands for (a move batch holds many)."""
    if record.get("k") == K_MOVE:
        return 1 + len(record.get("dt", ()))
    return 1


def expand_moves(record: dict[str, Any]) -> list[tuple[int, int, int]]:
    """Decode a ``mv`` batch into absolute ``(t, x, y)`` points."""
    t, x, y = record["t"], record["x"], record["y"]
    points = [(t, x, y)]
    for dt, dx, dy in zip(
        record.get("dt", ()), record.get("dx", ()), record.get("dy", ()), strict=True
    ):
        t += dt
        x += dx
        y += dy
        points.append((t, x, y))
    return points


# ---------------------------------------------------------------------------
# Pydantic reference models (validation and JSON Schema)
# ---------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", defer_build=True)
Micros = Annotated[int, Field(ge=0, description="microseconds since session start")]


class ClockAnchor(BaseModel):
    model_config = _STRICT
    t: Micros = Field(description="session time at which the anchor was read")
    unix_ns: int = Field(description="wall clock (UTC, ns since the Unix epoch) at that moment")
    utc: str = Field(description="the same instant as ISO 8601 UTC, for people")


class ChunkHeader(BaseModel):
    """First line of every chunk."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    format: Literal["deskcorder-chunk"]
    format_version: int
    session: str
    seq: int = Field(ge=0)
    device: str = Field(description="this agent's device id (from its key)")
    user: str | None = Field(description="user pseudonym (null before enrollment) or login")
    machine: str | None = Field(None, description="machine pseudonym or host name")
    agent: str
    os: str
    screen: list[list[int]] = Field(description="monitors as [left, top, width, height]")
    keyboard_layout: str | None = None
    policy_digest: str
    keystrokes: Literal["full", "redacted", "shortcuts", "off"]
    mouse_move_hz: float
    clock: ClockAnchor
    elements: int | None = Field(
        None, description="version of the el records written (absent: element capture off)"
    )


class _Rec(BaseModel):
    model_config = _STRICT
    t: Micros


class StartRec(_Rec):
    k: Literal["start"]
    reason: str = "start"


class EndRec(_Rec):
    k: Literal["end"]
    reason: str


class MoveRec(_Rec):
    """A batch of sampled mouse positions: the first absolute, then deltas."""

    k: Literal["mv"]
    x: int
    y: int
    dt: list[int] = Field(default_factory=list)
    dx: list[int] = Field(default_factory=list)
    dy: list[int] = Field(default_factory=list)


class ButtonRec(_Rec):
    k: Literal["bd", "bu"]
    x: int
    y: int
    b: str = Field(description="left, right, middle, x1, x2 or button<N>")


class ScrollRec(_Rec):
    k: Literal["sc"]
    x: int
    y: int
    dx: int
    dy: int


class KeyRec(_Rec):
    k: Literal["kd", "ku"]
    key: str | None = Field(None, description="key name or character (not in redacted mode)")
    ch: str | None = Field(None, description="character produced, when printable and allowed")
    vk: int | None = Field(None, description="keysym / virtual key code, when allowed")
    cls: Literal["letter", "digit", "space", "punct"] | None = Field(
        None, description="class of a printable key in redacted mode"
    )
    mods: list[str] | None = Field(None, description="modifiers held, e.g. ['ctrl']")


class WindowRec(BaseModel):
    model_config = _STRICT
    id: int
    title: str | None = None
    app: str | None = None
    pid: int | None = None
    process: str | None = None
    exe: str | None = None
    rect: list[int] | None = None


class FocusRec(_Rec):
    k: Literal["focus"]
    win: WindowRec | None = Field(description="null when the window cannot be known")


class TitleRec(_Rec):
    k: Literal["title"]
    id: int
    title: str


class ShotRec(_Rec):
    k: Literal["shot"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    fmt: Literal["webp", "jpeg", "png"]
    w: int
    h: int
    mon: list[int]
    reason: str = Field(description="click, focus, typing, interval or pre_action")
    win: int | None = None
    act: Micros | None = Field(
        None, description="pre_action: t of the input record (the action) the frame precedes"
    )
    age: int | None = Field(
        None, ge=0, description="pre_action: µs between the grab and the action's record"
    )


class PauseRec(_Rec):
    k: Literal["pause", "resume"]
    src: Literal["user", "lock", "inactive", "schedule", "consent", "quota", "error", "storage"]


class ExcludedRec(_Rec):
    k: Literal["excl"]
    rule: str = Field(description="which kind of rule matched; never the window's title")


class GapRec(_Rec):
    k: Literal["gap"]
    cause: str = Field(
        description="queue_full, crash_recovery, quota_drop, retention, input_hook_lost, "
        "screenshot_skip; storage faults: disk_full, disk_quota, low_disk, read_only, "
        "spool_missing, io_error, no_permission, write_error"
    )
    dropped: int | None = Field(None, ge=0, description="events lost, when known")
    chunk: str | None = Field(None, description="<session>/<seq> of a deleted chunk")
    since: Micros | None = Field(
        None, description="storage faults: session time the spool stopped being written"
    )
    errno: str | None = Field(None, description="storage faults: the error's errno name")


class TextRec(_Rec):
    k: Literal["text"]
    text: str = Field(description="scrubbed typed text (keystrokes=full only)")
    win: int | None = None


class ShedRec(_Rec):
    k: Literal["shed"]
    what: str
    level: int


class ClockRec(_Rec):
    """A fresh clock anchor: after a suspend (``slept_us``) or a wall-clock step (``step_us``).

    From ``t`` on, wall times follow ``clock`` instead of the header's anchor.
    """

    k: Literal["clock"]
    cause: Literal["suspend", "step"]
    clock: ClockAnchor
    slept_us: int | None = Field(None, ge=0, description="suspend: how long the machine slept")
    step_us: int | None = Field(
        None, description="step: how far the wall clock moved against session time"
    )


class PowerRec(_Rec):
    """What the power state lets screenshots do changed (policy ``[power]``)."""

    k: Literal["power"]
    battery: bool = Field(description="running on battery")
    percent: int | None = Field(None, ge=0, le=100, description="battery charge, when known")
    screenshots: Literal["on", "spaced", "off"]
    spacing_s: float | None = Field(None, ge=0, description="spaced: seconds between shots")


class ScreenRec(_Rec):
    """The monitors changed (added, removed, resized); the next chunk's header has them too."""

    k: Literal["screen"]
    screen: list[list[int]] = Field(description="monitors as [left, top, width, height]")


class ElementRec(_Rec):
    """The accessible element under a click, or newly focused (header ``elements``: 1)."""

    k: Literal["el"]
    src: Literal["click", "focus"] = Field(
        description="click: the element under the pointer at a button press; focus: the "
        "element that received keyboard focus"
    )
    win: int = Field(description="id of the focused window (as in its focus record)")
    act: Micros | None = Field(None, description="click: t of the bd record it belongs to")
    role: str = Field(description="accessible role, e.g. push button, text, password text")
    name: str | None = Field(
        None, description="accessible name (label), scrubbed like titles; never for passwords"
    )
    rect: list[int] | None = Field(None, description="[left, top, width, height] on screen")
    path: list[str] | None = Field(
        None, description="roles from the window down to the element (at most 16, the last ones)"
    )


Record = Annotated[
    StartRec
    | EndRec
    | MoveRec
    | ButtonRec
    | ScrollRec
    | KeyRec
    | FocusRec
    | TitleRec
    | ShotRec
    | PauseRec
    | ExcludedRec
    | GapRec
    | TextRec
    | ShedRec
    | ClockRec
    | PowerRec
    | ScreenRec
    | ElementRec,
    Field(discriminator="k"),
]


@functools.cache
def record_adapter() -> TypeAdapter[Any]:
    """Built on first use: the agent itself never needs it (tests and tools do)."""
    return TypeAdapter(Record)


def validate_record(record: dict[str, Any]) -> None:
    """Raise ``pydantic.ValidationError`` if ``record`` is not a valid record."""
    record_adapter().validate_python(record)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the header and of every record kind."""
    return {
        "header": ChunkHeader.model_json_schema(),
        "record": record_adapter().json_schema(),
    }
