"""Display-free stand-ins for the screenshot worker's collaborators."""

from __future__ import annotations

import threading
from typing import Any

from deskcorder.capture.screenshots import Frame, Rect
from deskcorder.events import RAW_MARK, RAW_SHOT, ShotInfo, WindowInfo

MONITORS: list[Rect] = [(0, 0, 3840, 1080), (0, 0, 1920, 1080), (1920, 0, 1920, 1080)]


class FakeGates:
    def __init__(self) -> None:
        self.blocked: str | None = None
        self.excluded_titles: set[str] = set()
        self.raise_on_check = False

    def blocked_reason(self) -> str | None:
        if self.raise_on_check:
            raise RuntimeError("gate broke")
        return self.blocked

    def window_rule(self, win: WindowInfo | None) -> str | None:
        if win is not None and win.title in self.excluded_titles:
            return "title"
        return None


class FakeProbe:
    def __init__(self, active: WindowInfo | None, visible: list[WindowInfo] | None = None) -> None:
        self.active = active
        self.visible = visible if visible is not None else ([active] if active else [])

    def start(self, emit: Any) -> None: ...

    def stop(self, timeout: float) -> None: ...

    def active_window(self) -> WindowInfo | None:
        return self.active

    def visible_windows(self) -> list[WindowInfo]:
        return list(self.visible)


class FakeGrabber:
    """A white virtual screen; ``paint`` changes a rectangle's colour."""

    def __init__(self, monitors: list[Rect] | None = None) -> None:
        self._monitors = monitors or MONITORS
        self.fill = (255, 255, 255)
        self.patches: list[tuple[Rect, tuple[int, int, int]]] = []
        self.grabs: list[Rect] = []
        self.scale = 1  # 2: a HiDPI screen grabbed at twice its coordinates (macOS Retina)

    def monitors(self) -> list[Rect]:
        return list(self._monitors)

    def grab(self, rect: Rect) -> Frame:
        from PIL import Image, ImageDraw

        self.grabs.append(rect)
        img = Image.new("RGB", (rect[2], rect[3]), self.fill)
        draw = ImageDraw.Draw(img)
        for (x, y, w, h), colour in self.patches:
            draw.rectangle((x - rect[0], y - rect[1], x - rect[0] + w - 1,
                            y - rect[1] + h - 1), fill=colour)  # fmt: skip
        if self.scale != 1:
            img = img.resize((rect[2] * self.scale, rect[3] * self.scale), Image.Resampling.NEAREST)
        r, g, b = img.split()
        bgra = Image.merge("RGBA", (b, g, r, Image.new("L", img.size, 255)))
        return Frame(bgra.tobytes(), img.width, img.height)

    def close(self) -> None:
        """Nothing to release."""


class Recorder:
    """Collects what the worker emits (the agent's ``emit``)."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def __call__(self, raw: tuple[Any, ...]) -> None:
        with self.lock:
            self.items.append(raw)

    @property
    def shots(self) -> list[ShotInfo]:
        with self.lock:
            return [raw[2] for raw in self.items if raw[0] == RAW_SHOT]

    @property
    def gaps(self) -> list[dict[str, Any]]:
        with self.lock:
            return [raw[3] for raw in self.items if raw[0] == RAW_MARK and raw[2] == "gap"]
