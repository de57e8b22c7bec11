"""Raw records -> actions: a streaming, pure reducer (no I/O, no clock).

Feed the records of one session in order (``Reducer.feed``); finished actions
appear in ``Reducer.out`` in order of their start time. Memory holds only the
actions not yet final (a click waiting for a possible second click, typing
waiting for its text record, an action waiting for its pre-action frame) and
the path of a drag in progress, so it stays flat however long the session is.

docs/dataset.md is the specification: action kinds, fields, thresholds,
episode splits and how observations are chosen.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from deskcorder.dataset._actions import Action, Element, Shot, Window
from deskcorder.events import MODIFIER_KEYS

PRE_ACTION = "pre_action"
"""``reason`` of a ``shot`` record holding the frame grabbed just before an action."""

# gap causes that do not lose input (only screenshots): they do not split episodes
_KEEP_GAPS = frozenset({"screenshot_skip"})
_MODIFIER_OF = MODIFIER_KEYS
_SHORTCUT_MODS = frozenset({"ctrl", "alt", "super"})
_HOTKEY_ORDER = ("ctrl", "alt", "shift", "super", "altgr")
# a modifier pressed and released alone is an action only for these (alt: menu bar,
# super: launcher); a lone shift or ctrl does nothing
_LONE_MODIFIERS = frozenset({"alt", "super"})
_CLASS_CHAR = {"letter": "L", "digit": "D", "space": " ", "punct": "P"}
# editing keys that full-mode text already accounts for while typing is open
_TEXT_EDIT_KEYS = frozenset({"backspace", "delete", "left", "right"})
_CLICK_KIND = {"left": "click", "right": "right_click", "middle": "middle_click"}
_MULTI_KIND = {1: "click", 2: "double_click", 3: "triple_click"}
_NEVER = 1 << 62
# actions that begin with a button press: an ``el`` record may name the element pressed
_POINTED = frozenset({"click", "double_click", "triple_click", "right_click", "middle_click",
                      "drag"})  # fmt: skip
ELEMENT_WAIT_US = 500_000  # an el record comes at most this long after its press


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How raw input is cut into actions (docs/dataset.md, "Thresholds")."""

    double_click_ms: int = 500
    """Presses of the left button at most this far apart (press to press) form one
    double or triple click."""
    double_click_px: int = 4
    """... and at most this far apart (in x and in y)."""
    drag_px: int = 6
    """A press whose pointer gets at least this far (straight-line) from where it went
    down before the release is a drag; closer, it is a click."""
    scroll_gap_ms: int = 700
    """Wheel steps in one direction with pauses of at most this are one scroll."""
    typing_pause_ms: int = 2000
    """A pause longer than this ends a typing action (and a run of one repeated key).
    Matches the agent's text flush after 2 s without typing."""
    hover_ms: int = 0
    """0: no ``move`` actions. Otherwise a pointer that moved at least ``drag_px`` and
    then rested this long, without a press or scroll there, is a ``move`` action."""
    observation_wait_ms: int = 2000
    """With pre-action frames on, how long (session time) an action waits for its
    frame record before it is given the latest earlier screenshot instead."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"threshold {name} must be a non-negative integer, got {value!r}")
        if self.drag_px < 1:
            raise ValueError("threshold drag_px must be at least 1")


class _P:
    """An action being built (mutable; becomes an :class:`Action` when final)."""

    __slots__ = (
        "after",
        "button",
        "clicks",
        "count",
        "dx",
        "dy",
        "element",
        "end_x",
        "end_y",
        "fallback",
        "i0",
        "i1",
        "keys",
        "kind",
        "last_down",
        "obs",
        "path",
        "redacted",
        "seq",
        "t_end",
        "t_last",
        "t_start",
        "text",
        "typed",
        "window",
        "x",
        "y",
    )

    def __init__(self, kind: str, t: int, i: int, window: Window | None) -> None:
        self.kind = kind
        self.t_start = t
        self.t_end = t
        self.t_last = t
        self.i0 = i
        self.i1 = i
        self.window = window
        self.element: Element | None = None
        self.x: int | None = None
        self.y: int | None = None
        self.end_x: int | None = None
        self.end_y: int | None = None
        self.button: str | None = None
        self.clicks = 0
        self.path: list[tuple[int, int, int]] | None = None
        self.dx = 0
        self.dy = 0
        self.text: str | None = None
        self.typed: list[str] | None = None
        self.keys: tuple[str, ...] = ()
        self.count = 0
        self.obs: Shot | None = None
        self.after: Shot | None = None
        self.fallback: Shot | None = None
        self.last_down = t
        self.seq = 0
        self.redacted = False


def _same_window(a: Window | None, b: Window | None) -> bool:
    """Same window (by id: a title change, like an editor's "*" on the first edit, is not
    another window)."""
    if a is None or b is None:
        return a is b
    return a.id == b.id


def _rect(value: Any) -> tuple[int, int, int, int] | None:
    if isinstance(value, list) and len(value) == 4:
        return (int(value[0]), int(value[1]), int(value[2]), int(value[3]))
    return None


def _shot(rec: dict[str, Any], exact: bool) -> Shot:
    mon = rec.get("mon") or (0, 0, rec.get("w", 0), rec.get("h", 0))
    t = rec["t"]
    if exact:
        t = rec["act"] - rec.get("age", 0)
    return Shot(
        rec["sha256"],
        rec.get("fmt", ""),
        rec.get("w", 0),
        rec.get("h", 0),
        (mon[0], mon[1], mon[2], mon[3]),
        t,
        exact,
    )


class Reducer:
    """Streaming reduction of one session's records to actions.

    ``feed(record)`` for every record in order (``header(h)`` for each chunk
    header, or pass ``keystrokes``/``screen``/``pre_action`` once), then
    ``finish()``. Final actions are appended to ``out``; the caller takes them
    (and clears the list) whenever it likes.
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        *,
        keystrokes: str | None = None,
        screen: list[list[int]] | None = None,
        pre_action: bool = False,
    ) -> None:
        th = thresholds or Thresholds()
        self.thresholds = th
        self.out: list[Action] = []
        self.full = keystrokes == "full"
        self.screens: list[tuple[int, int, int, int]] = []
        if screen:
            self._set_screen(screen)
        self._dbl_us = th.double_click_ms * 1000
        self._dbl_px = th.double_click_px
        self._drag2 = th.drag_px * th.drag_px
        self._scroll_us = th.scroll_gap_ms * 1000
        self._typing_us = th.typing_pause_ms * 1000
        self._hover_us = th.hover_ms * 1000
        self._wait_us = th.observation_wait_ms * 1000 if pre_action else 0
        self._el_wait_us = 0  # header "elements": wait for a click's el record
        self._i = 0
        self._t = 0
        self.episode = 0
        self._emitted_in_episode = 0
        self._window: Window | None = None
        self._blocked = False  # paused or excluded: input is not expected, and ignored
        self._paused = False
        self._excluded = False
        # pointer
        self._px: int | None = None
        self._py: int | None = None
        self._pt = 0
        # open actions (at most one of each)
        self._press: _P | None = None
        self._press_new = False  # the press started a new action (not a group extension)
        self._group: _P | None = None
        self._scroll: _P | None = None
        self._typing: _P | None = None
        self._keyrep: _P | None = None
        self._hover: _P | None = None
        self._mods: dict[str, tuple[int, int]] = {}  # physical modifier key -> (t, index)
        self._lone: str | None = None  # modifier pressed with no other key since
        self._lone_at: tuple[int, int] = (0, 0)
        # finished, not yet emitted (sorted by t_start)
        self._done: list[_P] = []
        self._seq = 0  # actions started so far (episode-independent)
        self._latest: _P | None = None  # the most recently started action
        self._last_shot: Shot | None = None
        self._due = _NEVER  # session time at which the head of _done may become final

    # -- configuration -------------------------------------------------------------
    def header(self, header: dict[str, Any]) -> None:
        """Take keystroke mode, screen geometry and pre-action setting from a chunk header."""
        self.full = header.get("keystrokes") == "full"
        if header.get("screen"):
            self._set_screen(header["screen"])
        # a click's element comes up to ELEMENT_WAIT_US after its press (docs/format.md)
        self._el_wait_us = ELEMENT_WAIT_US if header.get("elements") else 0
        pre = header.get("pre_action")
        if pre is not None:
            self._wait_us = self.thresholds.observation_wait_ms * 1000 if pre else 0

    def _set_screen(self, screen: list[list[int]]) -> None:
        self.screens = [(int(s[0]), int(s[1]), int(s[2]), int(s[3])) for s in screen if len(s) == 4]

    # -- the hot path ----------------------------------------------------------------
    def feed(self, rec: dict[str, Any]) -> None:
        i = self._i
        self._i = i + 1
        k = rec["k"]
        t = rec["t"]
        self._t = t
        if self._blocked and k not in ("focus", "resume", "pause", "excl", "gap", "end", "title"):
            return
        if k == "mv":
            self._move(rec, t, i)
        elif k == "kd":
            self._key_down(rec, t, i)
        elif k == "ku":
            self._key_up(rec, t, i)
        elif k == "bd":
            self._button_down(rec, t, i)
        elif k == "bu":
            self._button_up(rec, t, i)
        elif k == "sc":
            self._wheel(rec, t, i)
        elif k == "text":
            self._text(rec, t, i)
        elif k == "el":
            self._element(rec)
        elif k == "shot":
            self._shot(rec, t)
        elif k == "focus":
            self._focus(rec, t, i)
        elif k == "title":
            win = self._window
            if win is not None and win.id == rec.get("id"):
                self._window = Window(win.id, rec.get("title"), win.app)
        elif k == "pause":
            self._split(t)
            self._paused = True
            self._blocked = True
        elif k == "resume":
            self._paused = False
            self._blocked = self._excluded
        elif k == "excl":
            self._split(t)
            self._excluded = True
            self._blocked = True
            self._window = None
        elif k == "gap":
            if rec.get("cause") not in _KEEP_GAPS:
                self._split(t)
        elif k == "end":
            self._split(t)
        if self._done and t >= self._due:
            self._emit()

    def finish(self) -> None:
        """End of the records: everything open is closed and emitted."""
        self._split(self._t)

    # -- pointer -------------------------------------------------------------------------
    def _move(self, rec: dict[str, Any], t: int, i: int) -> None:
        press = self._press
        dts = rec.get("dt")
        if press is None and not self._hover_us:
            if dts:
                self._px = rec["x"] + sum(rec["dx"])
                self._py = rec["y"] + sum(rec["dy"])
                self._pt = t + sum(dts)
            else:
                self._px, self._py, self._pt = rec["x"], rec["y"], t
            return
        x, y = rec["x"], rec["y"]
        points = [(t, x, y)]
        if dts:
            for dt, dx, dy in zip(dts, rec["dx"], rec["dy"], strict=False):
                t += dt
                x += dx
                y += dy
                points.append((t, x, y))
        if press is not None:
            path = press.path
            assert path is not None and press.x is not None and press.y is not None
            path.extend(points)
            if press.clicks == 0:  # not yet known to be a drag
                x0, y0, d2 = press.x, press.y, self._drag2
                for _, px, py in points:
                    if (px - x0) * (px - x0) + (py - y0) * (py - y0) >= d2:
                        press.clicks = -1  # a drag
                        break
            press.i1 = i
        else:
            for pt, px, py in points:
                self._hover_point(pt, px, py, i)
        self._pt, self._px, self._py = points[-1]

    def _hover_point(self, t: int, x: int, y: int, i: int) -> None:
        hover = self._hover
        if hover is not None and t - self._pt >= self._hover_us:
            self._end_hover(t)  # the pointer rested long enough, and moves again now
            hover = None
        if hover is None:
            hover = _P("move", t, i, self._window)
            hover.path = []
            if self._px is not None and self._py is not None:
                hover.t_start = self._pt
                hover.path.append((self._pt, self._px, self._py))
            self._hover = hover
        assert hover.path is not None
        hover.path.append((t, x, y))
        hover.i1 = i

    def _end_hover(self, now: int, at: tuple[int, int] | None = None) -> None:
        """Close the pointer run: a ``move`` action if it went far and then rested.

        ``at``: where a press or scroll ended the run; resting right there is
        the approach to that action, not a hover of its own.
        """
        hover, self._hover = self._hover, None
        if hover is None or not hover.path:
            return
        t_rest, x, y = hover.path[-1]
        if now - t_rest < self._hover_us:
            return
        if at is not None and max(abs(at[0] - x), abs(at[1] - y)) <= self._dbl_px:
            return
        _, x0, y0 = hover.path[0]
        if (x - x0) * (x - x0) + (y - y0) * (y - y0) < self._drag2:
            return
        hover.x, hover.y = x, y
        hover.t_end = t_rest
        self._begin(hover)
        self._finish(hover)

    def _button_down(self, rec: dict[str, Any], t: int, i: int) -> None:
        if self._press is not None:
            return  # a second button while one is held: part of the first press
        x, y, button = rec["x"], rec["y"], rec.get("b", "left")
        if self._hover_us:
            self._end_hover(t, (x, y))
        self._close_scroll()
        self._close_keyrep()
        if not self.full:
            self._close_typing()
        self._lone = None
        group = self._group
        extends = (
            group is not None
            and button == "left"
            and group.button == "left"
            and group.clicks < 3
            and t - group.last_down <= self._dbl_us
            and abs(x - (group.x or 0)) <= self._dbl_px
            and abs(y - (group.y or 0)) <= self._dbl_px
        )
        if not extends:
            self._close_group()
        press = _P("click", t, i, self._window)
        press.x, press.y, press.button = x, y, button
        press.path = [(t, x, y)]
        self._press = press
        self._press_new = not extends
        if not extends:
            self._begin(press)

    def _button_up(self, rec: dict[str, Any], t: int, i: int) -> None:
        press = self._press
        if press is None or rec.get("b", "left") != press.button:
            return
        self._press = None
        x, y = rec["x"], rec["y"]
        assert press.path is not None and press.x is not None and press.y is not None
        press.path.append((t, x, y))
        press.i1 = i
        press.t_end = t
        drag = press.clicks == -1 or (
            (x - press.x) * (x - press.x) + (y - press.y) * (y - press.y) >= self._drag2
        )
        if drag:
            if not self._press_new:
                self._close_group()
                self._begin(press)
            press.kind = "drag"
            press.end_x, press.end_y = x, y
            press.clicks = 0
            self._finish(press)
            return
        press.path = None
        button = press.button or "left"
        if button != "left":
            press.kind = _CLICK_KIND.get(button, "click")
            press.clicks = 1
            self._finish(press)
            return
        group = self._group
        if not self._press_new and group is not None:
            group.clicks += 1
            group.kind = _MULTI_KIND[group.clicks]
            group.last_down = press.t_start
            group.t_end = t
            group.i1 = i
            return
        press.clicks = 1
        press.last_down = press.t_start
        self._group = press

    def _wheel(self, rec: dict[str, Any], t: int, i: int) -> None:
        dx, dy = rec.get("dx", 0), rec.get("dy", 0)
        scroll = self._scroll
        if scroll is not None:
            same = (
                t - scroll.t_last <= self._scroll_us
                and dx * scroll.dx >= 0
                and dy * scroll.dy >= 0
                and _same_window(scroll.window, self._window)
            )
            if same:
                scroll.dx += dx
                scroll.dy += dy
                scroll.count += 1
                scroll.t_last = scroll.t_end = t
                scroll.i1 = i
                return
            self._close_scroll()
        x, y = rec["x"], rec["y"]
        if self._hover_us:
            self._end_hover(t, (x, y))
        self._close_group()
        self._close_keyrep()
        if not self.full:
            self._close_typing()
        self._lone = None
        scroll = _P("scroll", t, i, self._window)
        scroll.x, scroll.y, scroll.dx, scroll.dy, scroll.count = x, y, dx, dy, 1
        self._begin(scroll)
        self._scroll = scroll

    # -- keys ----------------------------------------------------------------------------
    def _key_down(self, rec: dict[str, Any], t: int, i: int) -> None:
        cls = rec.get("cls")
        if cls is not None:
            self._lone = None
            typing = self._typing
            if (
                typing is not None
                and not self.full  # full mode: the text record ends typing
                and (
                    not _same_window(typing.window, self._window)
                    or t - typing.t_last > self._typing_us
                )
            ):
                self._close_typing()
                typing = None
            if typing is None:
                self._close_others()
                typing = _P("type", t, i, self._window)
                typing.typed = []
                self._begin(typing)
                self._typing = typing
            assert typing.typed is not None
            typing.typed.append(_CLASS_CHAR.get(cls, "P"))
            typing.count += 1
            typing.t_last = typing.t_end = t
            typing.i1 = i
            return
        name = rec.get("key")
        if name is None:
            return
        mod = _MODIFIER_OF.get(name)
        if mod is not None:
            if name not in self._mods:
                self._mods[name] = (t, i)
            self._lone = mod if len(self._mods) == 1 else None
            self._lone_at = (t, i)
            return
        self._lone = None
        mods = rec.get("mods") or ()
        if mods and (_SHORTCUT_MODS.intersection(mods) or "shift" in mods):
            self._hotkey(name, mods, t, i)
            return
        typing = self._typing
        if (
            typing is not None
            and name in _TEXT_EDIT_KEYS
            and _same_window(typing.window, self._window)
            and t - typing.t_last <= self._typing_us
        ):
            if self.full:
                typing.t_last = typing.t_end = t
                typing.i1 = i
                return
            if name == "backspace" and typing.typed:
                typing.typed.pop()
                typing.t_last = typing.t_end = t
                typing.i1 = i
                return
        keyrep = self._keyrep
        if (
            keyrep is not None
            and keyrep.keys[0] == name
            and _same_window(keyrep.window, self._window)
            and t - keyrep.t_last <= self._typing_us
        ):
            keyrep.count += 1
            keyrep.t_last = keyrep.t_end = t
            keyrep.i1 = i
            return
        self._close_others()
        if not self.full:
            self._close_typing()
        keyrep = _P("key", t, i, self._window)
        keyrep.keys = (name,)
        keyrep.count = 1
        self._begin(keyrep)
        self._keyrep = keyrep

    def _hotkey(self, name: str, mods: Iterable[str], t: int, i: int) -> None:
        self._close_others()
        if not self.full:
            self._close_typing()
        held = set(mods)
        t0, i0 = t, i
        for key, (tm, im) in self._mods.items():
            if _MODIFIER_OF[key] in held and tm < t0:
                t0, i0 = tm, im
        hot = _P("hotkey", t0, i0, self._window)
        hot.keys = (*(m for m in _HOTKEY_ORDER if m in held), name.lower())
        hot.count = 1
        hot.i1 = i
        hot.t_end = t
        self._begin(hot)
        self._finish(hot)

    def _key_up(self, rec: dict[str, Any], t: int, i: int) -> None:
        name = rec.get("key")
        if name is not None and name in _MODIFIER_OF:
            self._mods.pop(name, None)
            lone = self._lone
            if lone is not None and _MODIFIER_OF[name] == lone:
                self._lone = None
                if lone in _LONE_MODIFIERS:
                    self._close_others()
                    if not self.full:
                        self._close_typing()
                    t0, i0 = self._lone_at
                    act = _P("key", t0, i0, self._window)
                    act.keys = (lone,)
                    act.count = 1
                    act.i1 = i
                    act.t_end = t
                    self._begin(act)
                    self._finish(act)
            return
        for open_ in (self._typing, self._keyrep):
            if open_ is not None and _same_window(open_.window, self._window):
                open_.i1 = i

    def _text(self, rec: dict[str, Any], t: int, i: int) -> None:
        typing = self._typing
        text = rec.get("text", "")
        if typing is None:
            if text != "[SECURE]":
                return  # text of keys from before an episode split: they are not here
            self._close_others()
            typing = _P("type", t, i, self._window)
            typing.typed = []
            self._begin(typing)
        self._typing = None
        typing.text = text
        typing.i1 = i
        self._finish(typing)

    # -- context ---------------------------------------------------------------------------
    def _focus(self, rec: dict[str, Any], t: int, i: int) -> None:
        win = rec.get("win")
        self._window = (
            None
            if not isinstance(win, dict)
            else Window(win["id"], win.get("title"), win.get("app"))
        )
        self._excluded = False
        self._blocked = self._paused
        self._close_keyrep()
        if not self.full:
            self._close_typing()
        self._lone = None

    def _element(self, rec: dict[str, Any]) -> None:
        """An ``el`` record of a click: the element under the press that began ``act``."""
        act = rec.get("act")
        if rec.get("src") != "click" or act is None:
            return
        for p in (self._press, self._group, *self._done):
            if p is not None and p.t_start == act and p.kind in _POINTED:
                rect = rec.get("rect")
                p.element = Element(
                    role=str(rec.get("role")),
                    name=rec.get("name"),
                    rect=_rect(rect),
                    path=tuple(rec.get("path") or ()),
                )
                return

    def _shot(self, rec: dict[str, Any], t: int) -> None:
        if rec.get("reason") == PRE_ACTION:
            act_t = rec.get("act")
            if not isinstance(act_t, int):
                return
            target = self._action_at(act_t)
            if target is not None and (target.obs is None or not target.obs.exact):
                target.obs = _shot(rec, True)
                if self._done:
                    self._emit()
            return
        shot = _shot(rec, False)
        self._last_shot = shot
        latest = self._latest
        if latest is not None and shot.t >= latest.t_start:
            latest.after = shot

    def _action_at(self, act_t: int) -> _P | None:
        """The latest action started at or before ``act_t`` (open or finished)."""
        best: _P | None = None
        for p in (
            *self._done[-4:],
            self._press,
            self._group,
            self._scroll,
            self._typing,
            self._keyrep,
        ):
            if p is not None and p.t_start <= act_t and (best is None or p.seq > best.seq):
                best = p
        return best

    # -- action lifecycle --------------------------------------------------------------
    def _begin(self, p: _P) -> None:
        """A new action starts: earlier ones can no longer get an after-shot."""
        self._seq += 1
        p.seq = self._seq
        if p.fallback is None:
            p.fallback = self._last_shot
        self._latest = p
        if self._done:
            self._emit()

    def _finish(self, p: _P) -> None:
        done = self._done
        if not done or done[-1].t_start <= p.t_start:
            done.append(p)
        else:  # typing finished by its (later) text record
            pos = len(done)
            while pos > 0 and done[pos - 1].t_start > p.t_start:
                pos -= 1
            done.insert(pos, p)
        self._emit()

    def _close_group(self) -> None:
        group, self._group = self._group, None
        if group is not None:
            self._finish(group)

    def _close_scroll(self) -> None:
        scroll, self._scroll = self._scroll, None
        if scroll is not None:
            self._finish(scroll)

    def _close_keyrep(self) -> None:
        keyrep, self._keyrep = self._keyrep, None
        if keyrep is not None:
            self._finish(keyrep)

    def _close_typing(self) -> None:
        typing, self._typing = self._typing, None
        if typing is not None:
            if typing.text is None:  # redacted mode, or full mode cut off before its text
                typing.text = "".join(typing.typed or ())
                typing.redacted = True
            self._finish(typing)

    def _close_others(self) -> None:
        if self._hover_us:
            self._end_hover(self._t)
        self._close_group()
        self._close_scroll()
        self._close_keyrep()

    def _split(self, t: int) -> None:
        """End the episode: close what can be closed, drop a press without release."""
        self._press = None
        if self._hover_us:
            self._end_hover(t)
        self._close_group()
        self._close_scroll()
        self._close_keyrep()
        self._close_typing()
        self._mods.clear()
        self._lone = None
        self._latest = None
        self._last_shot = None
        self._emit(final=True)
        if self._emitted_in_episode:
            self.episode += 1
            self._emitted_in_episode = 0

    def _open_start(self) -> int | None:
        best: int | None = None
        for p in (self._group, self._scroll, self._typing, self._keyrep, self._hover):
            if p is not None and (best is None or p.t_start < best):
                best = p.t_start
        press = self._press
        if press is not None and self._press_new and (best is None or press.t_start < best):
            best = press.t_start
        return best

    def _emit(self, final: bool = False) -> None:
        """Move finished actions whose every field is known from ``_done`` to ``out``.

        The head waits while it is the latest action started (an after-shot may
        still come), while its pre-action frame may still come, and while an
        action that started before it is still open (output is in start order).
        """
        done = self._done
        n = len(done)
        due = _NEVER
        if not final:
            now = self._t
            open_start = self._open_start()
            for n, p in enumerate(done):  # noqa: B007 - n is used after the loop
                if p.seq >= self._seq:
                    break
                if open_start is not None and open_start < p.t_start:
                    break
                if p.obs is None and now < p.t_start + self._wait_us:
                    due = p.t_start + self._wait_us
                    break
                if p.element is None and p.kind in _POINTED and now < p.t_start + self._el_wait_us:
                    due = p.t_start + self._el_wait_us
                    break
            else:
                n = len(done)
        out = self.out
        for p in done[:n]:
            out.append(self._build(p))
        del done[:n]
        self._emitted_in_episode += n
        self._due = due

    def _build(self, p: _P) -> Action:
        obs = p.obs if p.obs is not None else p.fallback
        screen = obs.mon if obs is not None else self._screen_of(p.x, p.y)
        return Action(
            kind=p.kind,
            episode=self.episode,
            t_start=p.t_start,
            t_end=p.t_end,
            records=(p.i0, p.i1),
            window=p.window,
            x=p.x,
            y=p.y,
            end_x=p.end_x,
            end_y=p.end_y,
            button=p.button,
            clicks=p.clicks,
            path=tuple(p.path) if p.path else (),
            dx=p.dx,
            dy=p.dy,
            text=p.text,
            redacted=p.redacted,
            keys=p.keys,
            count=p.count,
            observation=obs,
            after=p.after,
            screen=screen,
            element=p.element,
        )

    def _screen_of(self, x: int | None, y: int | None) -> tuple[int, int, int, int] | None:
        if x is None or y is None or not self.screens:
            return None
        for s in self.screens:
            if s[0] <= x < s[0] + s[2] and s[1] <= y < s[1] + s[3]:
                return s
        return None


def run(
    reducer: Reducer, chunks: Iterable[tuple[dict[str, Any] | None, Iterable[dict[str, Any]]]]
) -> Iterator[Action]:
    """Drive ``reducer`` over ``(header, records)`` pairs (one per chunk); yield actions."""
    out = reducer.out
    feed = reducer.feed
    for header, records in chunks:
        if header is not None:
            reducer.header(header)
        for record in records:
            feed(record)
            if out:
                yield from out
                out.clear()
    reducer.finish()
    yield from out
    out.clear()


def reduce_records(
    records: Iterable[dict[str, Any]],
    *,
    thresholds: Thresholds | None = None,
    header: dict[str, Any] | None = None,
) -> Iterator[Action]:
    """Actions of one session's records (in order). ``header``: its first chunk header."""
    return run(Reducer(thresholds), [(header, records)])
