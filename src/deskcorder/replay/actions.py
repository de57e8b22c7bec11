"""Steps from the action reduction (``deskcorder.dataset``): one step per action.

The player steps through what the training data holds: the reducer's actions
(clicks, drags, scrolls, typing, hotkeys ...), each with its observation (the
screen before it) and its after-shot, between the context steps the records
give (window changes, pauses, exclusions, gaps).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from deskcorder.dataset import Action, Reducer, Shot

_CLICK_LABELS = {
    "click": "left click",
    "double_click": "double click",
    "triple_click": "triple click",
    "right_click": "right click",
    "middle_click": "middle click",
}
TRAIL_POINTS = 20_000  # pointer positions kept until the action they lead to is final


def scroll_words(dx: int, dy: int) -> str:
    words = []
    if dy:
        words.append(f"{'up' if dy > 0 else 'down'} {abs(dy)}")
    if dx:
        words.append(f"{'right' if dx > 0 else 'left'} {abs(dx)}")
    return ", ".join(words) or "0"


def action_label(a: Action) -> str:
    if a.kind in _CLICK_LABELS:
        if a.button not in (None, "left", "right", "middle"):
            return f"{a.button} click" + (f" x{a.clicks}" if a.clicks > 1 else "")
        return _CLICK_LABELS[a.kind]
    if a.kind == "drag":
        return f"{a.button or 'left'} drag"
    if a.kind == "scroll":
        return f"scroll {scroll_words(a.dx, a.dy)}"
    if a.kind == "type":
        if a.text == "[SECURE]":
            return "typing into a password field"
        if a.redacted:
            return f"typing ({a.count} key{'s' if a.count != 1 else ''})"
        return "typed text"
    if a.kind == "hotkey":
        return "+".join(a.keys)
    if a.kind == "key":
        name = a.keys[0] if a.keys else "key"
        return name + (f" x{a.count}" if a.count > 1 else "")
    if a.kind == "move":
        return "pointer moved"
    return a.kind


class ActionSteps:
    """Feeds records to the reducer and turns the actions it yields into steps.

    ``window_of(action)`` maps an action's window to the document's window
    index. Pointer positions are kept (bounded) until the action they lead to
    is final, so each step can show the path the pointer took to it.
    """

    def __init__(self, header: dict[str, Any] | None) -> None:
        self.reducer = Reducer()
        if header is not None:
            self.reducer.header(dict(header))
        self.trail: deque[tuple[int, int, int]] = deque(maxlen=TRAIL_POINTS)
        self.offset = 0  # records fed before the first one shown
        self.first_shown_us: int | None = None

    def feed(self, rec: dict[str, Any]) -> list[Action]:
        self.reducer.feed(rec)
        out = list(self.reducer.out)
        self.reducer.out.clear()
        return out

    def finish(self) -> list[Action]:
        self.reducer.finish()
        out = list(self.reducer.out)
        self.reducer.out.clear()
        return out

    def point(self, t_us: int, x: int, y: int) -> None:
        self.trail.append((t_us, x, y))

    def step(self, a: Action, window_of: Callable[[Action], int | None]) -> dict[str, Any] | None:
        """The step of one final action (None for an action begun before the records shown)."""
        if self.first_shown_us is None or a.t_start < self.first_shown_us:
            return None
        path: list[int] = []
        while self.trail and self.trail[0][0] <= a.t_start:
            _t, x, y = self.trail.popleft()
            if not path or abs(path[-2] - x) + abs(path[-1] - y) >= 2:
                path += [x, y]
        while self.trail and self.trail[0][0] <= a.t_end:  # moves inside the action itself
            self.trail.popleft()
        step: dict[str, Any] = {
            "t": a.t_start // 1000,
            "t1": a.t_end // 1000,
            "k": a.kind,
            "label": action_label(a),
            "rec": [a.records[0] - self.offset, a.records[1] - self.offset],
            "code": a.code,
            "_shots": (a.observation, a.after),
        }
        win = window_of(a)
        if win is not None:
            step["win"] = win
        if a.x is not None and a.y is not None:
            step["x"], step["y"] = a.x, a.y
            if len(path) >= 4:
                step["path"] = path
        if a.button:
            step["button"] = a.button
        if a.clicks > 1:
            step["n"] = a.clicks
        if a.kind == "drag" and a.end_x is not None and a.end_y is not None:
            step["to"] = [a.end_x, a.end_y]
            drag = [a.x, a.y, *[v for _t, x, y in a.path for v in (x, y)], a.end_x, a.end_y]
            step["drag"] = drag
        if a.kind == "scroll":
            step["dx"], step["dy"] = a.dx, a.dy
        if a.kind == "type":
            if a.redacted:
                step["keys"] = a.text or ""
                step["n"] = a.count
            else:
                step["text"] = a.text or ""
        if a.kind in ("hotkey", "key"):
            step["key"] = "+".join(a.keys)
            if a.count > 1:
                step["n"] = a.count
        return step


def attach_action_shots(steps: list[dict[str, Any]], shots: list[dict[str, Any]]) -> None:
    """Each action step shows its observation (the screen before it) when the agent took
    it for this action, or else whichever of observation and after-shot is closer in time;
    the other one is the step's ``alt``."""
    index = shot_index(shots)
    for step in steps:
        pair = step.pop("_shots", None)
        if pair is None:
            continue
        observation, after = pair
        known: list[tuple[str, int]] = []
        for role, shot in (("before", observation), ("after", after)):
            i = _index(shot, index)
            if i is not None:
                known.append((role, i))
        if not known:
            continue
        t = step["t"]
        exact = observation is not None and observation.exact and known[0][0] == "before"
        role, i = known[0] if exact else min(known, key=lambda ri: abs(shots[ri[1]]["t"] - t))
        step["shot"], step["shot_dt"], step["shot_role"] = i, shots[i]["t"] - t, role
        if exact:
            step["exact"] = True
        for other_role, j in known:
            if j != i:
                step["alt"], step["alt_dt"], step["alt_role"] = j, shots[j]["t"] - t, other_role


def _index(shot: Shot | None, index: dict[str, list[tuple[int, int]]]) -> int | None:
    """The document's shot for an action's: same image, nearest in time (an exact frame's
    ``t`` is when it was grabbed, its record may be written a little later)."""
    if shot is None or shot.sha256 not in index:
        return None
    t = shot.t // 1000
    return min(index[shot.sha256], key=lambda ti: abs(ti[0] - t))[1]


def shot_index(shots: list[dict[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    index: dict[str, list[tuple[int, int]]] = {}
    for i, shot in enumerate(shots):
        index.setdefault(shot["sha"], []).append((shot["t"], i))
    return index
