"""Deterministic reference workload: about 100k raw events of human-like desktop use.

The events are the raw tuples sources put on the queue (``deskcorder.events.RAW_*``)
with ``time.monotonic_ns()``-like times starting at ``t0_ns``. Same seed and
count, same events, on every machine (only ``random.Random`` and ``math``).

What is modelled (and why it matters for size):

* **Mouse paths** at 125 Hz (USB full-speed polling, 8 ms): a minimum-jerk
  (ease-in/out) profile whose duration follows Fitts' law, a slight curvature,
  sub-pixel tremor, overshoot with a corrective sub-movement on about a quarter
  of the moves, hovering micro-moves, and pauses. A mouse only reports when the
  integer position changed, so slow phases leave 16/24 ms gaps. Host
  timestamps carry the jitter of interrupt and scheduling latency: a normal
  jitter of about 0.15 ms (clipped to ±0.5 ms) and a rare late event of 1-3 ms.
* **Clicks** (single, some double, some right), **drags** (press, slow path,
  release) and **scrolls** (bursts of wheel ticks 20-120 ms apart).
* **Typing bursts** of words with log-normal inter-key times (median ~150 ms),
  key holds of ~70-120 ms with natural roll-over, shift for capitals,
  backspace corrections, enter, arrows, and shortcuts (ctrl+c/v/s/z/a,
  alt+tab).
* A few **focus and title changes** among a handful of windows.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

from deskcorder.events import (
    RAW_BUTTON,
    RAW_FOCUS,
    RAW_KEY,
    RAW_MOVE,
    RAW_SCROLL,
    RAW_TITLE,
    WindowInfo,
)

Raw = tuple[Any, ...]

DEFAULT_EVENTS = 100_000
DEFAULT_SEED = 20261127
SCREEN_W, SCREEN_H = 1920, 1080
POLL_NS = 8_000_000  # 125 Hz USB polling

VK_SHIFT_L = 0xFFE1
VK_CTRL_L = 0xFFE3
VK_ALT_L = 0xFFE9
VK_BACKSPACE = 0xFF08
VK_ENTER = 0xFF0D
VK_TAB = 0xFF09
VK_ARROWS = {"left": 0xFF51, "up": 0xFF52, "right": 0xFF53, "down": 0xFF54}

WINDOWS = (
    WindowInfo(
        0x1A00001,
        "notes.txt - Editor",
        "Editor",
        4242,
        "editor",
        "/usr/bin/editor",
        0,
        0,
        1920,
        1080,
    ),
    WindowInfo(
        0x1C00003,
        "Docs - Chromium",
        "Chromium",
        4343,
        "chromium",
        "/usr/lib/chromium/chromium",
        0,
        0,
        1920,
        1080,
    ),
    WindowInfo(
        0x2200007,
        "Inbox (3) - Mail",
        "Thunderbird",
        5151,
        "thunderbird",
        "/usr/lib/thunderbird/thunderbird",
        100,
        50,
        1600,
        1000,
    ),
    WindowInfo(
        0x2600009,
        "budget-2027.ods - LibreOffice Calc",
        "libreoffice-calc",
        6060,
        "soffice.bin",
        "/usr/lib/libreoffice/program/soffice.bin",
        0,
        0,
        1920,
        1080,
    ),
    WindowInfo(
        0x2A0000B,
        "user@host: ~/src",
        "Gnome-terminal",
        7070,
        "gnome-terminal-",
        "/usr/libexec/gnome-terminal-server",
        300,
        200,
        1200,
        700,
    ),
)
TITLES = (
    "Release checklist - Chromium",
    "Pull request #42 - Chromium",
    "Search results - Chromium",
    "notes.txt * - Editor",
    "Re: quarterly numbers - Mail",
)

_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "meeting notes ship release friday budget review please update the draft report customer "
    "invoice schedule deploy server config error fixed test build merge branch thanks regards"
)
WORDS = _TEXT.split()
SHORTCUTS = ("c", "v", "s", "z", "a", "f", "t", "w")


class _Gen:
    def __init__(self, seed: int, t0_ns: int) -> None:
        self.r = random.Random(seed)
        self.t = t0_ns
        self.x, self.y = 960.0, 540.0
        self.ix, self.iy = 960, 540
        self.out: list[Raw] = []
        self.window = 0

    # -- time -----------------------------------------------------------------------
    def jitter_ns(self) -> int:
        """Host timestamp noise around the 8 ms USB poll grid."""
        r = self.r
        if r.random() < 0.01:  # scheduled late: a busy CPU
            return r.randint(1_000_000, 3_000_000)
        return int(max(-500_000.0, min(500_000.0, r.gauss(0.0, 150_000.0))))

    def wait(self, seconds: float) -> None:
        self.t += int(seconds * 1e9)

    # -- mouse ----------------------------------------------------------------------
    def _emit_pos(self, t_ns: int, fx: float, fy: float) -> None:
        fx = min(max(fx, 0.0), SCREEN_W - 1.0)
        fy = min(max(fy, 0.0), SCREEN_H - 1.0)
        self.x, self.y = fx, fy
        ix, iy = round(fx), round(fy)
        if (ix, iy) != (self.ix, self.iy):  # a mouse reports only when it moved
            self.ix, self.iy = ix, iy
            self.out.append((RAW_MOVE, t_ns, ix, iy))

    def _segment(self, tx: float, ty: float, duration: float, curve: float) -> None:
        """One minimum-jerk sub-movement to (tx, ty), sampled on the 8 ms poll grid."""
        r = self.r
        x0, y0 = self.x, self.y
        dx, dy = tx - x0, ty - y0
        dist = math.hypot(dx, dy) or 1.0
        px, py = -dy / dist, dx / dist  # unit normal for curvature
        steps = max(1, int(duration * 1e9 / POLL_NS))
        grid = self.t
        for i in range(1, steps + 1):
            tau = i / steps
            s = tau**3 * (10 - 15 * tau + 6 * tau * tau)  # minimum jerk: ease-in/out
            bow = math.sin(math.pi * s) * curve * dist
            fx = x0 + dx * s + px * bow + r.gauss(0.0, 0.35)  # tremor
            fy = y0 + dy * s + py * bow + r.gauss(0.0, 0.35)
            grid += POLL_NS
            self._emit_pos(grid + self.jitter_ns(), fx, fy)
        self.t = grid + POLL_NS
        self.x, self.y = tx, ty

    def move_to(self, tx: float, ty: float, precise: bool = True) -> None:
        r = self.r
        dist = math.hypot(tx - self.x, ty - self.y)
        if dist < 2:
            return
        width = r.uniform(8, 40) if precise else r.uniform(40, 200)
        duration = r.uniform(0.08, 0.16) + r.uniform(0.09, 0.14) * math.log2(dist / width + 1)
        curve = r.gauss(0.0, 0.06)
        if r.random() < 0.27 and dist > 80:  # overshoot, then a corrective sub-movement
            over = r.uniform(0.03, 0.09)
            ox = tx + (tx - self.x) * over + r.gauss(0, 3)
            oy = ty + (ty - self.y) * over + r.gauss(0, 3)
            self._segment(ox, oy, duration, curve)
            self.wait(r.uniform(0.03, 0.12))
            self._segment(tx, ty, r.uniform(0.12, 0.25), r.gauss(0.0, 0.05))
        else:
            self._segment(tx, ty, duration, curve)

    def hover(self, seconds: float) -> None:
        """Small drifting moves of a resting hand, with gaps."""
        r = self.r
        end = self.t + int(seconds * 1e9)
        while self.t < end:
            if r.random() < 0.3:
                self._segment(
                    self.x + r.gauss(0, 4), self.y + r.gauss(0, 4), r.uniform(0.05, 0.2), 0.0
                )
            self.wait(r.uniform(0.05, 0.6))

    def random_target(self) -> tuple[float, float]:
        r = self.r
        if r.random() < 0.6:  # most moves are local
            return (self.x + r.gauss(0, 250), self.y + r.gauss(0, 180))
        return (r.uniform(20, SCREEN_W - 20), r.uniform(20, SCREEN_H - 20))

    def button(self, name: str, pressed: bool) -> None:
        self.out.append((RAW_BUTTON, self.t, self.ix, self.iy, name, pressed))

    def click(self) -> None:
        r = self.r
        name = "right" if r.random() < 0.08 else "left"
        for _ in range(2 if (name == "left" and r.random() < 0.12) else 1):
            self.wait(r.uniform(0.05, 0.25))
            self.button(name, True)
            self.wait(r.lognormvariate(math.log(0.09), 0.3))
            self.button(name, False)
        self.wait(r.uniform(0.08, 0.2))

    def drag(self) -> None:
        r = self.r
        self.wait(r.uniform(0.1, 0.3))
        self.button("left", True)
        self.wait(r.uniform(0.08, 0.2))
        tx, ty = self.random_target()
        self.move_to(tx, ty, precise=False)
        self.wait(r.uniform(0.05, 0.2))
        self.button("left", False)

    def scroll(self) -> None:
        r = self.r
        direction = -1 if r.random() < 0.7 else 1
        for _ in range(r.randint(3, 20)):
            self.wait(r.uniform(0.02, 0.12))
            self.out.append((RAW_SCROLL, self.t, self.ix, self.iy, 0, direction))
            if r.random() < 0.05:
                direction = -direction
        self.wait(r.uniform(0.2, 1.0))

    # -- keyboard -------------------------------------------------------------------
    def _key(
        self,
        events: list[tuple[int, Raw]],
        t: int,
        pressed: bool,
        char: str | None,
        name: str | None,
        vk: int,
    ) -> None:
        events.append((t, (RAW_KEY, t, pressed, char, name, vk)))

    def _tap(
        self, events: list[tuple[int, Raw]], t: int, char: str | None, name: str | None, vk: int
    ) -> None:
        hold = int(self.r.lognormvariate(math.log(0.09), 0.25) * 1e9)
        self._key(events, t, True, char, name, vk)
        self._key(events, t + hold, False, char, name, vk)

    def type_burst(self) -> None:
        """Words typed with realistic timing; key events interleave on roll-over."""
        r = self.r
        events: list[tuple[int, Raw]] = []
        t = self.t
        text = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 14)))
        if r.random() < 0.5:
            text = text[0].upper() + text[1:] + r.choice((".", ",", "!", "?", ":"))
        for ch in text:
            t += int(r.lognormvariate(math.log(0.15), 0.45) * 1e9)
            if r.random() < 0.03:  # a typo corrected with backspace
                self._tap(events, t, r.choice("asdfjkl"), None, ord("a"))
                t += int(r.lognormvariate(math.log(0.3), 0.3) * 1e9)
                self._tap(events, t, None, "backspace", VK_BACKSPACE)
                t += int(r.lognormvariate(math.log(0.17), 0.3) * 1e9)
            if ch == " ":
                self._tap(events, t, None, "space", 32)
            elif ch.isupper() or ch in "!?:":
                self._key(
                    events, t, True, None, "shift_l" if r.random() < 0.8 else "shift_r", VK_SHIFT_L
                )
                down = t + int(r.uniform(0.04, 0.1) * 1e9)
                self._tap(events, down, ch, None, ord(ch))
                t = down + int(r.uniform(0.1, 0.18) * 1e9)
                self._key(events, t, False, None, "shift_l", VK_SHIFT_L)
            else:
                self._tap(events, t, ch, None, ord(ch))
        if r.random() < 0.3:
            t += int(r.lognormvariate(math.log(0.3), 0.3) * 1e9)
            self._tap(events, t, None, "enter", VK_ENTER)
        if r.random() < 0.15:
            for _ in range(r.randint(1, 6)):
                name = r.choice(tuple(VK_ARROWS))
                t += int(r.uniform(0.1, 0.3) * 1e9)
                self._tap(events, t, None, name, VK_ARROWS[name])
        events.sort(key=lambda e: e[0])
        self.out.extend(raw for _, raw in events)
        self.t = max(t, events[-1][0]) + int(r.uniform(0.2, 1.0) * 1e9)

    def shortcut(self) -> None:
        r = self.r
        events: list[tuple[int, Raw]] = []
        t = self.t
        if r.random() < 0.15:
            mod, vk, ch, cvk = "alt_l", VK_ALT_L, None, VK_TAB
        else:
            mod, vk, ch = "ctrl_l", VK_CTRL_L, r.choice(SHORTCUTS)
            cvk = ord(ch)
        self._key(events, t, True, None, mod, vk)
        t += int(r.uniform(0.08, 0.25) * 1e9)
        self._tap(events, t, ch, "tab" if ch is None else None, cvk)
        t += int(r.uniform(0.15, 0.3) * 1e9)
        self._key(events, t, False, None, mod, vk)
        events.sort(key=lambda e: e[0])
        self.out.extend(raw for _, raw in events)
        self.t = max(t, events[-1][0]) + int(r.uniform(0.2, 0.8) * 1e9)
        if mod == "alt_l":
            self.focus()

    # -- windows --------------------------------------------------------------------
    def focus(self) -> None:
        self.window = (self.window + 1 + self.r.randrange(len(WINDOWS) - 1)) % len(WINDOWS)
        self.out.append((RAW_FOCUS, self.t, WINDOWS[self.window]))
        self.wait(self.r.uniform(0.1, 0.4))

    def title(self) -> None:
        win = WINDOWS[self.window]
        self.out.append((RAW_TITLE, self.t, win.id, self.r.choice(TITLES)))


def generate(n_events: int = DEFAULT_EVENTS, seed: int = DEFAULT_SEED, t0_ns: int = 0) -> list[Raw]:
    """Exactly ``n_events`` raw event tuples, times ascending from ``t0_ns``."""
    g = _Gen(seed, t0_ns)
    r = g.r
    g.wait(0.05)
    g.out.append((RAW_FOCUS, g.t, WINDOWS[0]))
    while len(g.out) < n_events:
        roll = r.random()
        if roll < 0.42:
            g.move_to(*g.random_target())
            g.click()
        elif roll < 0.50:
            g.move_to(*g.random_target())
        elif roll < 0.54:
            g.move_to(*g.random_target())
            g.drag()
        elif roll < 0.62:
            g.move_to(*g.random_target(), precise=False)
            g.scroll()
        elif roll < 0.84:
            g.type_burst()
        elif roll < 0.89:
            g.shortcut()
        elif roll < 0.97:
            g.hover(r.uniform(0.5, 3.0))
        elif roll < 0.985:
            g.focus()
        else:
            g.title()
        if r.random() < 0.25:  # reading / thinking
            g.wait(r.lognormvariate(math.log(1.5), 0.8))
    return g.out[:n_events]


def kind_counts(events: list[Raw]) -> Counter[int]:
    return Counter(e[0] for e in events)


def iter_intervals_ms(events: list[Raw]) -> Iterator[float]:
    last = None
    for e in events:
        if e[0] == RAW_MOVE:
            if last is not None and e[1] - last < 50_000_000:
                yield (e[1] - last) / 1e6
            last = e[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args()
    events = generate(args.events, args.seed)
    names = {
        RAW_MOVE: "move",
        RAW_BUTTON: "button",
        RAW_SCROLL: "scroll",
        RAW_KEY: "key",
        RAW_FOCUS: "focus",
        RAW_TITLE: "title",
    }
    span = (events[-1][1] - events[0][1]) / 1e9
    print(f"{len(events)} events over {span:.0f} s of session time (seed {args.seed})")
    for tag, count in sorted(kind_counts(events).items()):
        print(f"  {names.get(tag, tag):8s} {count:7d}  {100 * count / len(events):5.1f} %")
    gaps = sorted(iter_intervals_ms(events))
    if gaps:
        mid = gaps[len(gaps) // 2]
        print(
            f"  move interval median {mid:.3f} ms, p5 {gaps[len(gaps) // 20]:.3f} ms, "
            f"p95 {gaps[len(gaps) * 19 // 20]:.3f} ms"
        )


if __name__ == "__main__":
    main()
