"""A session's records (or its actions) -> the replay document. Pure: no I/O.

The document is one JSON-serialisable dict that the page's script draws
(docs/replay.md describes it). Times are integer **milliseconds since the
session start** (records carry microseconds; a page needs no more). Every
string in it comes from a record and is shown as text, never as markup.

Steps are what the player steps through. From raw records a step is one
record, except that

* ``mv`` batches are not steps: they are the pointer path drawn on the next
  pointer step (and the path of a drag);
* ``shot`` records are not steps: each step shows the screenshot taken for it
  (the first one after it starts, before the next step) or else the last one
  before it, with its age;
* a button's ``bu`` is folded into its ``bd`` (a click, or a drag when the
  pointer moved), a second click at the same place within
  :data:`MULTI_CLICK_MS` into a double (triple ...) click;
* printable ``kd`` records in a row (one window, less than
  :data:`TYPING_BREAK_MS` apart) are one *typing* step showing their key
  kinds, ``sc`` records in a row one *scroll* step; ``ku`` and modifier-only
  key downs are not steps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from deskcorder.dataset import Action
from deskcorder.events import (
    INPUT_KINDS,
    K_MOVE,
    MODIFIER_KEYS,
    event_count,
    expand_moves,
)
from deskcorder.replay.actions import ActionSteps, attach_action_shots, scroll_words

log = logging.getLogger(__name__)

REPLAY_FORMAT = "deskcorder-replay"
REPLAY_VERSION = 1

MULTI_CLICK_MS = 500  # a click this soon after another at the same place counts with it
MULTI_CLICK_PX = 4
DRAG_PX = 6  # a button held and moved further than this is a drag
TYPING_BREAK_MS = 2000  # printable keys further apart than this start a new typing step
SCROLL_BREAK_MS = 1000
SHOT_AFTER_MS = 3000  # a screenshot this soon after a step starts is the step's own
MAX_PATH_POINTS = 600  # pointer path points kept per step (the last ones)
MAX_BUCKETS = 20_000  # activity buckets; longer sessions get coarser buckets

KEY_KIND_LETTERS = {"letter": "L", "digit": "D", "space": " ", "punct": "P"}
_SPAN_LABELS = {"lock": "screen locked", "inactive": "session inactive"}


@dataclass(frozen=True)
class ChunkFacts:
    """What the summary shows about one chunk (from its manifest or the collector's index)."""

    seq: int
    bytes: int
    records: int | None = None
    sha256: str | None = None
    approved: bool | None = None  # review: None when review does not apply


def ms(t_us: int) -> int:
    return int(t_us) // 1000


def window_label(win: Mapping[str, Any] | None) -> str:
    if not win:
        return "unknown window"
    title, app = win.get("title"), win.get("app")
    if title and app:
        return f"{title} ({app})"
    return str(title or app or "untitled window")


def _is_modifier(name: object) -> bool:
    return isinstance(name, str) and name in MODIFIER_KEYS


def _dist(a: Sequence[int], b: Sequence[int]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


class _Builder:
    """One pass over the records; ``lead_in`` records only set the state."""

    def __init__(self, actions: ActionSteps | None = None) -> None:
        self.actions = actions  # steps from the action reduction, else from the records
        self._win_by_id: dict[tuple[Any, Any], int] = {}  # (window id, title) -> index
        self.windows: list[dict[str, Any]] = []
        self._win_index: dict[tuple[Any, ...], int] = {}
        self.win: int | None = None  # the focused window's index
        self.win_id: int | None = None
        self.win_rec: dict[str, Any] | None = None
        self.excluded = False
        self.paused: tuple[int, str] | None = None  # (t, src)
        self.excl_open: tuple[int, str] | None = None  # (t, rule)
        self.band: tuple[int, int] | None = None  # (t, window index)
        self.bands: list[list[int]] = []
        self.spans: list[dict[str, Any]] = []
        # clock anchors of `clock` records (suspend, wall-clock step): {from, t, unix_ms}
        self.clocks: list[dict[str, int]] = []
        self.steps: list[dict[str, Any]] = []
        self.shots: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.activity: dict[int, int] = {}
        self.path: list[list[int]] = []  # pointer positions since the last pointer step
        self.pointer: list[int] | None = None
        self.buttons: dict[str, dict[str, Any]] = {}  # button -> its open click step
        self.typing: dict[str, Any] | None = None
        self.scroll: dict[str, Any] | None = None
        self.t_first: int | None = None
        self.t_last = 0
        self.records = 0
        self.recording = True  # False while reading lead-in records
        self._carry = False  # the lead-in's state starts at the first record shown

    def start_showing(self) -> None:
        """Lead-in done: keep its window and pause state, forget its runs and paths."""
        self.recording = True
        self._carry = True
        self._end_runs()
        self.buttons.clear()
        self.path = []
        self.band = None

    def _carry_state(self, t: int) -> None:
        self._carry = False
        if self.win is not None and not self.excluded and self.paused is None:
            self.band = (t, self.win)
        if self.paused is not None:
            self.paused = (t, self.paused[1])
        if self.excl_open is not None:
            self.excl_open = (t, self.excl_open[1])

    # -- windows, bands and spans ---------------------------------------------------------
    def _window(self, rec: Mapping[str, Any]) -> int:
        key = (rec.get("app"), rec.get("title"), rec.get("process"))
        index = self._win_index.get(key)
        if index is None:
            index = self._win_index[key] = len(self.windows)
            self.windows.append(
                {k: rec[k] for k in ("app", "title", "process") if rec.get(k) is not None}
            )
        return index

    def _open_band(self, t: int) -> None:
        self._close_band(t)
        if self.win is not None and not self.excluded and self.paused is None:
            self.band = (t, self.win)

    def _close_band(self, t: int) -> None:
        if self.band is not None:
            start, index = self.band
            if self.recording and t > start:
                self.bands.append([start, t, index])
            self.band = None

    def _span(self, kind: str, t0: int, t1: int, label: str, cause: str, **extra: Any) -> None:
        if self.recording:
            self.spans.append({"kind": kind, "t0": t0, "t1": t1, "label": label, "cause": cause})
            self.spans[-1].update(extra)

    def _close_excl(self, t: int) -> None:
        if self.excl_open is not None:
            t0, rule = self.excl_open
            self._span("excluded", t0, t, f"excluded window ({rule})", rule)
            self.excl_open = None

    # -- steps ----------------------------------------------------------------------------
    def _step(self, t: int, kind: str, label: str, index: int, **fields: Any) -> dict[str, Any]:
        step: dict[str, Any] = {"t": t, "k": kind, "label": label, "rec": [index, index]}
        if self._shown_win() is not None:
            step["win"] = self.win
        step.update({k: v for k, v in fields.items() if v is not None})
        if self.recording:
            self.steps.append(step)
        return step

    def _shown_win(self) -> int | None:
        return None if self.excluded else self.win

    def _pointer_path(self) -> list[int] | None:
        if not self.path:
            return None
        flat = [v for point in self.path[-MAX_PATH_POINTS:] for v in point]
        self.path = []
        return flat

    def _end_runs(self) -> None:
        self.typing = None
        self.scroll = None

    # -- records --------------------------------------------------------------------------
    def add(self, rec: Mapping[str, Any], index: int) -> None:
        kind = rec.get("k")
        t = ms(rec.get("t", 0))
        if self._carry:
            self._carry_state(t)
        if self.recording:
            self.records += 1
            n = event_count(dict(rec))
            self.counts[str(kind)] = self.counts.get(str(kind), 0) + n
            end = t + (ms(sum(rec.get("dt", ()))) if kind == K_MOVE else 0)
            self.t_first = t if self.t_first is None else min(self.t_first, t)
            self.t_last = max(self.t_last, end)
            if kind in INPUT_KINDS:
                self.activity[t // 1000] = self.activity.get(t // 1000, 0) + n
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) else None
        if handler is not None:
            handler(rec, t, index)
        if self.actions is not None:
            if self.recording and self.actions.first_shown_us is None:
                self.actions.first_shown_us = int(rec.get("t", 0))
            for action in self.actions.feed(dict(rec)):
                self._action(action)

    def _action(self, action: Action) -> None:
        assert self.actions is not None
        step = self.actions.step(action, self._action_window)
        if step is not None and self.recording:
            self.steps.append(step)

    def _action_window(self, action: Action) -> int | None:
        win = action.window
        if win is None:
            return None
        found = self._win_by_id.get((win.id, win.title))
        if found is None:
            found = self._window({"app": win.app, "title": win.title})
        return found

    def _on_mv(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if self.actions is not None:
            for t_us, x, y in expand_moves(dict(rec)):
                self.actions.point(t_us, x, y)
            return
        for _t, x, y in expand_moves(dict(rec)):
            point = [x, y]
            if not self.path or _dist(self.path[-1], point) >= 2:
                self.path.append(point)
            self.pointer = point
        for step in self.buttons.values():
            step.setdefault("_drag", []).extend(self.path)
            self.path = []

    def _on_bd(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if self.actions is not None:
            return  # input steps come from the actions
        self._end_runs()
        button = str(rec.get("b", "left"))
        at = [int(rec.get("x", 0)), int(rec.get("y", 0))]
        self.pointer = at
        last = self.steps[-1] if self.steps else None
        if (
            last is not None
            and last.get("k") == "click"
            and last.get("button") == button
            and t - last.get("t1", last["t"]) <= MULTI_CLICK_MS
            and _dist([last["x"], last["y"]], at) <= MULTI_CLICK_PX
            and last.get("win") == self._shown_win()
            and self.recording
        ):
            last["n"] = last.get("n", 1) + 1
            last["t1"] = t
            last["rec"][1] = index
            last["label"] = f"{button} {_times(last['n'])}click"
            self.buttons[button] = last
            return
        step = self._step(t, "click", f"{button} click", index, button=button, x=at[0], y=at[1])
        path = self._pointer_path()
        if path:
            step["path"] = path
        self.buttons[button] = step

    def _on_bu(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if self.actions is not None:
            return  # input steps come from the actions
        button = str(rec.get("b", "left"))
        step = self.buttons.pop(button, None)
        at = [int(rec.get("x", 0)), int(rec.get("y", 0))]
        self.pointer = at
        if step is None:  # its bd was in an earlier chunk, or before a pause
            self._step(t, "release", f"{button} button released", index, x=at[0], y=at[1])
            return
        drag = step.pop("_drag", [])
        step["rec"][1] = index
        step["t1"] = t
        if _dist([step["x"], step["y"]], at) > DRAG_PX and step.get("n", 1) == 1:
            step["k"] = "drag"
            step["label"] = f"{button} drag"
            step["to"] = at
            step["drag"] = [step["x"], step["y"], *[v for p in drag for v in p], *at]

    def _on_sc(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if self.actions is not None:
            return  # input steps come from the actions
        dx, dy = int(rec.get("dx", 0)), int(rec.get("dy", 0))
        run = self.scroll
        if (
            run is not None
            and t - run["t1"] <= SCROLL_BREAK_MS
            and run.get("win") == self._shown_win()
            and self.recording
        ):
            run["dx"] += dx
            run["dy"] += dy
            run["t1"] = t
            run["rec"][1] = index
            run["label"] = f"scroll {scroll_words(run['dx'], run['dy'])}"
            return
        self.typing = None
        at = [int(rec.get("x", 0)), int(rec.get("y", 0))]
        self.pointer = at
        step = self._step(
            t, "scroll", f"scroll {scroll_words(dx, dy)}", index, x=at[0], y=at[1], t1=t
        )
        step["dx"], step["dy"] = dx, dy
        path = self._pointer_path()
        if path:
            step["path"] = path
        self.scroll = step if self.recording else None

    def _on_kd(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if self.actions is not None:
            return  # input steps come from the actions
        cls = rec.get("cls")
        key = rec.get("key")
        mods = [m for m in rec.get("mods") or () if isinstance(m, str)]
        run = self.typing
        if run is not None and (
            t - run["t1"] > TYPING_BREAK_MS or run.get("win") != self._shown_win()
        ):
            run = self.typing = None
        if cls in KEY_KIND_LETTERS or (key == "backspace" and run is not None):
            letter = KEY_KIND_LETTERS.get(str(cls), "\u232b")  # ⌫ for backspace
            if run is not None:
                run["keys"] += letter
                run["n"] += 1
                run["t1"] = t
                run["rec"][1] = index
                run["label"] = f"typing ({run['n']} keys)"
                return
            self.scroll = None
            step = self._step(t, "type", "typing (1 key)", index, keys=letter, n=1, t1=t)
            self.typing = step if self.recording else None
            return
        if key is None or _is_modifier(key):
            return  # a modifier alone (its effect shows in a shortcut's mods) or nothing
        self._end_runs()
        combo = "+".join([*mods, str(key)])
        shortcut = any(m in ("ctrl", "alt", "super") for m in mods)
        self._step(t, "hotkey" if shortcut else "key", combo, index, key=combo)

    def _on_text(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if self.actions is not None:
            return  # input steps come from the actions
        self._end_runs()
        text = str(rec.get("text", ""))
        self._step(t, "text", "typed text", index, text=text)

    def _on_focus(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        self._end_runs()
        self._close_excl(t)
        win = rec.get("win")
        self.excluded = False
        if isinstance(win, Mapping):
            self.win = self._window(win)
            self.win_id = win.get("id") if isinstance(win.get("id"), int) else None
            self.win_rec = dict(win)
            self._win_by_id[(self.win_id, win.get("title"))] = self.win
        else:
            self.win = None
            self.win_id = None
            self.win_rec = None
        self._open_band(t)
        self._step(t, "focus", f"window: {window_label(self.win_rec)}", index)

    def _on_title(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if self.win_rec is None or rec.get("id") != self.win_id or self.excluded:
            return  # a background window's title: the page shows the focused one
        self.win_rec = {**self.win_rec, "title": rec.get("title")}
        self.win = self._window(self.win_rec)
        self._win_by_id[(self.win_id, rec.get("title"))] = self.win
        self._open_band(t)
        self._step(t, "title", f"title: {rec.get('title')}", index)

    def _on_excl(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        self._end_runs()
        self.buttons.clear()
        self.path = []
        self._close_excl(t)
        self._close_band(t)
        rule = str(rec.get("rule", "?"))
        self.excluded = True
        self.excl_open = (t, rule)
        self._step(t, "excluded", f"excluded window ({rule}): nothing recorded", index, cause=rule)

    def _on_pause(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        self._end_runs()
        self.buttons.clear()
        self.path = []
        self._close_excl(t)
        self._close_band(t)
        src = str(rec.get("src", "?"))
        if self.paused is None:
            self.paused = (t, src)
        label = _SPAN_LABELS.get(src, f"paused ({src})")
        self._step(t, "pause", label, index, cause=src)

    def _on_resume(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        self._end_runs()
        if self.paused is not None:
            t0, src = self.paused
            kind = "lock" if src in ("lock", "inactive") else "pause"
            self._span(kind, t0, t, _SPAN_LABELS.get(src, f"paused ({src})"), src)
            self.paused = None
        self._step(t, "resume", "recording resumed", index, cause=rec.get("src"))
        self._open_band(t)

    def _on_gap(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        self._end_runs()
        cause = str(rec.get("cause", "?"))
        label = f"gap: {cause}"
        dropped = rec.get("dropped")
        if isinstance(dropped, int):
            label += f", {dropped} {'frames' if cause == 'screenshot_skip' else 'events'} lost"
        if rec.get("chunk"):
            label += f" (chunk {rec['chunk']})"
        self._span("gap", t, t, label, cause, dropped=dropped)
        self._step(t, "gap", label, index, cause=cause)

    def _on_clock(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        """A fresh wall-clock anchor from here on (docs/format.md, Time)."""
        anchor = _anchor(rec.get("clock"), t)
        if anchor is not None:
            self.clocks.append(anchor)
        cause = rec.get("cause")
        if cause == "suspend":
            label = f"the machine slept for {_duration(rec.get('slept_us'))}"
        else:
            step = rec.get("step_us")
            way = "back" if isinstance(step, int) and step < 0 else "forward"
            label = f"the wall clock moved {way} {_duration(step)}"
        self._step(t, "clock", label, index, cause=cause)

    def _on_screen(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        screens = rec.get("screen")
        sizes = (
            ", ".join(f"{s[2]}×{s[3]}" for s in screens if isinstance(s, list) and len(s) == 4)
            if isinstance(screens, list)
            else ""
        )
        self._step(t, "screen", f"the screen changed: {sizes or '?'}", index)

    def _on_shed(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        label = f"capture reduced: {rec.get('what')} (level {rec.get('level')})"
        self._step(t, "shed", label, index)

    def _on_start(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        self._step(t, "start", "session started", index)

    def _on_end(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        self._end_runs()
        self._step(t, "end", f"session ended ({rec.get('reason')})", index)

    def _on_shot(self, rec: Mapping[str, Any], t: int, index: int) -> None:
        if not self.recording:
            return
        shot = {
            "t": t,
            "sha": str(rec.get("sha256", "")),
            "fmt": str(rec.get("fmt", "")),
            "w": int(rec.get("w", 0)),
            "h": int(rec.get("h", 0)),
            "mon": [int(v) for v in rec.get("mon") or (0, 0, 0, 0)][:4],
            "reason": str(rec.get("reason", "")),
        }
        if self.win is not None:
            shot["win"] = self.win
        self.shots.append(shot)

    def finish(self) -> None:
        end = self.t_last
        self._close_band(end)
        self._close_excl(end)
        if self.paused is not None:
            t0, src = self.paused
            kind = "lock" if src in ("lock", "inactive") else "pause"
            self._span(kind, t0, end, _SPAN_LABELS.get(src, f"paused ({src})"), src, open=True)
        for step in self.steps:
            step.pop("_drag", None)
        if self.actions is not None:
            for action in self.actions.finish():
                self._action(action)
            self.steps.sort(key=lambda step: step["t"])  # stable: context steps first
            attach_action_shots(self.steps, self.shots)
        _attach_shots(self.steps, self.shots)


def _times(n: int) -> str:
    return {2: "double ", 3: "triple "}.get(n, f"{n}x ")


_NO_SHOT_STEPS = frozenset({"excluded", "pause", "gap", "end"})


def _attach_shots(steps: list[dict[str, Any]], shots: list[dict[str, Any]]) -> None:
    """Each step's screenshot: its own (taken after it starts, before the next step), or
    else the latest one before it; none for the steps that mark a stop in recording."""
    if not shots:
        return
    times = [s["t"] for s in shots]
    j = 0  # first shot with t >= step t
    for i, step in enumerate(steps):
        t = step["t"]
        while j < len(times) and times[j] < t:
            j += 1
        if step["k"] in _NO_SHOT_STEPS or "shot" in step:
            continue
        nxt = steps[i + 1]["t"] if i + 1 < len(steps) else None
        chosen = None
        if j < len(times) and times[j] - t <= SHOT_AFTER_MS and (nxt is None or times[j] < nxt):
            chosen = j
        elif j > 0:
            chosen = j - 1
        if chosen is not None:
            step["shot"] = chosen
            step["shot_dt"] = times[chosen] - t


def _activity(counts: Mapping[int, int], first_s: int, last_s: int) -> dict[str, Any]:
    seconds = max(1, last_s - first_s + 1)
    per = max(1, math.ceil(seconds / MAX_BUCKETS))
    buckets = [0] * math.ceil(seconds / per)
    for second, n in counts.items():
        buckets[(second - first_s) // per] += n
    return {"bucket_ms": per * 1000, "t0": first_s * 1000, "counts": buckets}


def _anchor(clock: Any, from_ms: int | None = None) -> dict[str, int] | None:
    """A clock anchor in page units (ms): in force from ``from_ms`` (default its own t)."""
    if not isinstance(clock, Mapping):
        return None
    try:
        t = ms(clock["t"])
        return {"from": t if from_ms is None else from_ms, "t": t,
                "unix_ms": int(clock["unix_ns"]) // 1_000_000}  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def _duration(us: Any) -> str:
    """``3 h 05 min``, ``4 min 10 s``, ``12 s`` (as the page's own durations)."""
    if not isinstance(us, int | float):
        return "?"
    s = round(abs(us) / 1e6)
    h, m = divmod(s // 60, 60)
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {s % 60:02d} s" if m else f"{s} s"


def _session_facts(header: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "session",
        "user",
        "device",
        "identity",
        "org",
        "agent",
        "backend",
        "os",
        "keystrokes",
        "keyboard_layout",
        "screen",
        "streams",
    )
    facts = {k: header[k] for k in keys if header.get(k) is not None}
    anchor = _anchor(header.get("clock"))
    if anchor is not None:
        facts["clock"] = {"t": anchor["t"], "unix_ms": anchor["unix_ms"]}
    return facts


StepSource = Literal["actions", "records"]


def _run(
    headers: Sequence[Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    lead_in: Iterable[Mapping[str, Any]],
    steps: StepSource,
) -> _Builder:
    actions = ActionSteps(dict(headers[0]) if headers else None) if steps == "actions" else None
    builder = _Builder(actions)
    builder.recording = False
    for rec in lead_in:
        builder.add(rec, -1)
        if actions is not None:
            actions.offset += 1
    builder.start_showing()
    for index, rec in enumerate(records):
        builder.add(rec, index)
    builder.finish()
    return builder


def build_replay(
    headers: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    *,
    lead_in: Sequence[Mapping[str, Any]] = (),
    steps: StepSource = "actions",
    chunks: Sequence[ChunkFacts] = (),
    image_bytes: Mapping[str, int] | None = None,
    title: str | None = None,
    scope: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The replay document of one session (or of some of its chunks).

    ``headers`` are the chunk headers (the first describes the session);
    ``records`` the records to show, in order; ``lead_in`` records that come
    before them (earlier chunks) and only set the state they start in (focused
    window, pause); ``chunks`` the chunks shown, for the summary;
    ``image_bytes`` each screenshot's size where known; ``scope`` what part of
    the session this is (shown at the top, e.g. a chunk waiting for review).

    ``steps``: ``actions`` steps through the action reduction's actions (the
    training data's view, ``deskcorder.dataset``) between the context steps of
    the records; ``records`` through the records themselves (folded as the
    module says). If the reduction fails on these records, the records are the
    fallback and the page says so.
    """
    warnings = list(warnings)
    source: StepSource = steps
    try:
        builder = _run(headers, records, lead_in, steps)
    except Exception as exc:
        if steps != "actions":
            raise
        log.warning("action reduction failed, showing raw records: %s", exc, exc_info=True)
        warnings.append(
            f"the action reduction failed on these records ({type(exc).__name__}: {exc}); "
            "the steps are the raw records"
        )
        source = "records"
        builder = _run(headers, records, lead_in, "records")
    header = headers[0] if headers else {}
    facts = _session_facts(header)
    # every anchor (each chunk's header, each `clock` record), in the order they take over:
    # the page gives each time the wall time of the anchor in force then
    anchors = [a for a in (_anchor(h.get("clock")) for h in headers) if a is not None]
    anchors = sorted(anchors + builder.clocks, key=lambda a: a["from"])
    if len(anchors) > 1:
        facts["clocks"] = anchors
    t_first = builder.t_first or 0
    shas = {s["sha"] for s in builder.shots}
    sizes = image_bytes or {}
    events = sum(v for k, v in builder.counts.items() if k in INPUT_KINDS)
    summary: dict[str, Any] = {
        "duration_ms": builder.t_last - t_first,
        "records": builder.records,
        "events": events,
        "by_kind": dict(sorted(builder.counts.items())),
        "steps": len(builder.steps),
        "screenshots": len(builder.shots),
        "images": len(shas),
        "image_bytes": sum(sizes.get(sha, 0) for sha in shas),
        "images_missing": sum(1 for sha in shas if image_bytes is not None and sha not in sizes),
        "chunks": len(chunks) or len(headers),
        "chunk_bytes": sum(c.bytes for c in chunks),
        "windows": len(builder.windows),
        "pauses": sum(1 for s in builder.spans if s["kind"] in ("pause", "lock")),
        "exclusions": sum(1 for s in builder.spans if s["kind"] == "excluded"),
        "gaps": sum(1 for s in builder.spans if s["kind"] == "gap"),
        "dropped": sum(int(s.get("dropped") or 0) for s in builder.spans if s["kind"] == "gap"),
    }
    focused: dict[int, int] = {}
    for t0, t1, shown in builder.bands:
        focused[shown] = focused.get(shown, 0) + (t1 - t0)
    for i, window in enumerate(builder.windows):
        window["focused_ms"] = focused.get(i, 0)
    return {
        "format": REPLAY_FORMAT,
        "format_version": REPLAY_VERSION,
        "title": title or f"Session {facts.get('session', '?')}",
        "scope": dict(scope or {"kind": "session"}),
        "source": source,
        "session": facts,
        "summary": summary,
        "t0": t_first,
        "t1": builder.t_last,
        "activity": _activity(builder.activity, t_first // 1000, builder.t_last // 1000),
        "windows": builder.windows,
        "bands": builder.bands,
        "spans": builder.spans,
        "shots": builder.shots,
        "steps": builder.steps,
        "chunks": [{k: v for k, v in vars(c).items() if v is not None} for c in chunks],
        "warnings": warnings,
    }


def images_of(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The distinct screenshots a document shows, as ``(sha256, fmt)``, in order of use."""
    seen: dict[str, str] = {}
    for shot in doc.get("shots", ()):
        seen.setdefault(shot["sha"], shot["fmt"])
    return list(seen.items())
