"""Hand-built record sequences for the reducer tests (times in ms, written as µs)."""

from __future__ import annotations

from typing import Any

Rec = dict[str, Any]

WIN_A = {"id": 11, "title": "Editor", "app": "gedit"}
WIN_B = {"id": 22, "title": "Browser", "app": "firefox"}
HEADER = {"keystrokes": "redacted", "screen": [[0, 0, 1920, 1080]]}
FULL = {"keystrokes": "full", "screen": [[0, 0, 1920, 1080]]}


def us(ms: float) -> int:
    return round(ms * 1000)


def start(win: Rec | None = None) -> list[Rec]:
    return [{"k": "start", "t": 0, "reason": "start"}, focus(0, win or WIN_A)]


def focus(ms: float, win: Rec | None) -> Rec:
    return {"k": "focus", "t": us(ms), "win": win}


def mv(ms: float, *points: tuple[int, int], step_ms: float = 8) -> Rec:
    (x, y), rest = points[0], points[1:]
    rec: Rec = {"k": "mv", "t": us(ms), "x": x, "y": y}
    if rest:
        rec["dt"] = [us(step_ms)] * len(rest)
        prev = (x, y)
        rec["dx"], rec["dy"] = [], []
        for px, py in rest:
            rec["dx"].append(px - prev[0])
            rec["dy"].append(py - prev[1])
            prev = (px, py)
    return rec


def bd(ms: float, x: int, y: int, b: str = "left") -> Rec:
    return {"k": "bd", "t": us(ms), "x": x, "y": y, "b": b}


def bu(ms: float, x: int, y: int, b: str = "left") -> Rec:
    return {"k": "bu", "t": us(ms), "x": x, "y": y, "b": b}


def click(ms: float, x: int, y: int, b: str = "left", hold_ms: float = 60) -> list[Rec]:
    return [bd(ms, x, y, b), bu(ms + hold_ms, x, y, b)]


def sc(ms: float, dy: int = -1, dx: int = 0, x: int = 500, y: int = 400) -> Rec:
    return {"k": "sc", "t": us(ms), "x": x, "y": y, "dx": dx, "dy": dy}


def kd(ms: float, **fields: Any) -> Rec:
    return {"k": "kd", "t": us(ms), **fields}


def ku(ms: float, **fields: Any) -> Rec:
    return {"k": "ku", "t": us(ms), **fields}


def tap(ms: float, hold_ms: float = 50, **fields: Any) -> list[Rec]:
    return [kd(ms, **fields), ku(ms + hold_ms, **fields)]


def typed(ms: float, classes: str, every_ms: float = 120) -> list[Rec]:
    """Key taps for a class pattern: L letter, D digit, ' ' space, P punct."""
    names = {"L": "letter", "D": "digit", " ": "space", "P": "punct"}
    out: list[Rec] = []
    for n, c in enumerate(classes):
        out += tap(ms + n * every_ms, cls=names[c])
    return sorted(out, key=lambda r: r["t"])


def text(ms: float, value: str, win: int = 11) -> Rec:
    return {"k": "text", "t": us(ms), "text": value, "win": win}


def shot(ms: float, sha: str, reason: str = "click", **extra: Any) -> Rec:
    return {
        "k": "shot",
        "t": us(ms),
        "sha256": sha * 64,
        "fmt": "webp",
        "w": 1280,
        "h": 720,
        "mon": [0, 0, 1920, 1080],
        "reason": reason,
        "win": 11,
        **extra,
    }


def end(ms: float) -> Rec:
    return {"k": "end", "t": us(ms), "reason": "stop"}
