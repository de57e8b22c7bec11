"""What an action is: the public, immutable value the reducer yields.

Kept apart from the reducer so that readers of actions (the export, the replay
viewer) depend on a small module. docs/dataset.md describes every field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = (
    "click",
    "double_click",
    "triple_click",
    "right_click",
    "middle_click",
    "drag",
    "scroll",
    "type",
    "hotkey",
    "key",
    "move",
)

# our key names (pynput's, as written in records) -> PyAutoGUI's
_PYAUTOGUI_KEYS = {
    "super": "win",
    "cmd": "win",
    "cmd_l": "winleft",
    "cmd_r": "winright",
    "super_l": "winleft",
    "super_r": "winright",
    "altgr": "altright",
    "alt_gr": "altright",
    "alt_l": "altleft",
    "alt_r": "altright",
    "ctrl_l": "ctrlleft",
    "ctrl_r": "ctrlright",
    "shift_l": "shiftleft",
    "shift_r": "shiftright",
    "page_up": "pageup",
    "page_down": "pagedown",
    "caps_lock": "capslock",
    "num_lock": "numlock",
    "scroll_lock": "scrolllock",
    "print_screen": "printscreen",
    "escape": "esc",
    "return": "enter",
    "kp_enter": "enter",
    "menu": "apps",
    "media_play_pause": "playpause",
    "media_next": "nexttrack",
    "media_previous": "prevtrack",
    "media_volume_up": "volumeup",
    "media_volume_down": "volumedown",
    "media_volume_mute": "volumemute",
}


def pyautogui_key(name: str) -> str:
    """PyAutoGUI's name for one of our key names (``page_up`` -> ``pageup``)."""
    return _PYAUTOGUI_KEYS.get(name, name)


@dataclass(frozen=True, slots=True)
class Window:
    """The focused window when an action began (title already scrubbed at capture)."""

    id: int
    title: str | None = None
    app: str | None = None


@dataclass(frozen=True, slots=True)
class Shot:
    """A screenshot tied to an action: the blob ``sha256`` and where it came from.

    ``t`` is when the frame was grabbed (session µs). ``exact`` is True for a
    pre-action frame the agent took for this very action (docs/dataset.md);
    False when the reducer fell back to the latest screenshot before the action.
    """

    sha256: str
    fmt: str
    w: int
    h: int
    mon: tuple[int, int, int, int]
    t: int
    exact: bool = False


@dataclass(frozen=True, slots=True)
class Element:
    """The accessible element a click hit (an ``el`` record, docs/format.md): its role,
    name (scrubbed at capture; never for password fields), bounds and role path."""

    role: str
    name: str | None = None
    rect: tuple[int, int, int, int] | None = None
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """One action of a person at the computer, reduced from raw records.

    Times are session microseconds (the records' ``t``); ``records`` is the
    inclusive range of record indexes (0 = the first record after the first
    chunk header) the action was reduced from. Unused fields keep their
    defaults. ``observation`` is the screen before the action; ``after`` the
    screenshot the capture policy took because of it (e.g. a click shot).
    """

    kind: str
    episode: int
    t_start: int
    t_end: int
    records: tuple[int, int]
    window: Window | None = None
    x: int | None = None
    y: int | None = None
    end_x: int | None = None
    end_y: int | None = None
    button: str | None = None
    clicks: int = 0
    path: tuple[tuple[int, int, int], ...] = ()
    dx: int = 0
    dy: int = 0
    text: str | None = None
    redacted: bool = False
    keys: tuple[str, ...] = ()
    count: int = 0
    observation: Shot | None = None
    after: Shot | None = None
    screen: tuple[int, int, int, int] | None = None
    element: Element | None = None  # clicks and drags: the element under the press

    @property
    def nx(self) -> float | None:
        """``x`` normalised to ``screen`` (0 = its left edge, 1 = its right edge)."""
        if self.x is None or self.screen is None:
            return None
        return round((self.x - self.screen[0]) / self.screen[2], 5)

    @property
    def ny(self) -> float | None:
        if self.y is None or self.screen is None:
            return None
        return round((self.y - self.screen[1]) / self.screen[3], 5)

    @property
    def observation_age_us(self) -> int | None:
        """How long before the action began its observation was grabbed."""
        return None if self.observation is None else self.t_start - self.observation.t

    @property
    def code(self) -> str:
        """The action as PyAutoGUI code, in screen coordinates."""
        return pyautogui_code(self)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (what ``deskcorder dataset build --format jsonl`` starts from)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "episode": self.episode,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "records": list(self.records),
            "window": None
            if self.window is None
            else {"id": self.window.id, "title": self.window.title, "app": self.window.app},
            "x": self.x,
            "y": self.y,
            "nx": self.nx,
            "ny": self.ny,
            "end_x": self.end_x,
            "end_y": self.end_y,
            "button": self.button,
            "clicks": self.clicks,
            "path": [list(p) for p in self.path],
            "dx": self.dx,
            "dy": self.dy,
            "text": self.text,
            "redacted": self.redacted,
            "keys": list(self.keys),
            "count": self.count,
            "screen": None if self.screen is None else list(self.screen),
            "code": self.code,
            "element": None
            if self.element is None
            else {
                "role": self.element.role,
                "name": self.element.name,
                "rect": None if self.element.rect is None else list(self.element.rect),
                "path": list(self.element.path),
            },
        }
        for name in ("observation", "after"):
            shot: Shot | None = getattr(self, name)
            out[name] = (
                None
                if shot is None
                else {
                    "sha256": shot.sha256,
                    "fmt": shot.fmt,
                    "w": shot.w,
                    "h": shot.h,
                    "mon": list(shot.mon),
                    "t": shot.t,
                    "exact": shot.exact,
                }
            )
        return out


def _xy(x: int | None, y: int | None) -> str:
    return f"x={x}, y={y}"


_CLICK_FUNCS = {
    "click": "click",
    "double_click": "doubleClick",
    "triple_click": "tripleClick",
    "right_click": "rightClick",
    "middle_click": "middleClick",
}


def pyautogui_code(a: Action) -> str:
    """PyAutoGUI statements (``; ``-separated) that replay ``a``."""
    kind = a.kind
    if kind in _CLICK_FUNCS:
        extra = "" if a.button in ("left", "right", "middle", None) else f", button={a.button!r}"
        return f"pyautogui.{_CLICK_FUNCS[kind]}({_xy(a.x, a.y)}{extra})"
    if kind == "drag":
        seconds = round((a.t_end - a.t_start) / 1e6, 3)
        return (
            f"pyautogui.moveTo({_xy(a.x, a.y)}); "
            f"pyautogui.dragTo({_xy(a.end_x, a.end_y)}, duration={seconds}, button={a.button!r})"
        )
    if kind == "scroll":
        parts = []
        if a.dy:
            parts.append(f"pyautogui.scroll({a.dy}, {_xy(a.x, a.y)})")
        if a.dx:
            parts.append(f"pyautogui.hscroll({a.dx}, {_xy(a.x, a.y)})")
        return "; ".join(parts) or f"pyautogui.scroll(0, {_xy(a.x, a.y)})"
    if kind == "type":
        return f"pyautogui.write({a.text or ''!r})"
    if kind == "hotkey":
        return "pyautogui.hotkey(" + ", ".join(repr(pyautogui_key(k)) for k in a.keys) + ")"
    if kind == "key":
        key = repr(pyautogui_key(a.keys[0])) if a.keys else "''"
        return (
            f"pyautogui.press({key})"
            if a.count <= 1
            else (f"pyautogui.press({key}, presses={a.count})")
        )
    if kind == "move":
        return f"pyautogui.moveTo({_xy(a.x, a.y)})"
    raise ValueError(f"unknown action kind {kind!r}")
