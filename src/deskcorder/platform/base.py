"""The typed seams between the platform-neutral agent and per-OS code.

A backend provides three parts. Each is started and stopped by the agent;
none does OS work at import time. All of them deliver *raw events* (see
``deskcorder.events``) through an :data:`Emit` callable, which is the bounded
queue's non-blocking put: it never blocks and never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from deskcorder.events import WindowInfo

Emit = Callable[[tuple[Any, ...]], None]
"""Non-blocking enqueue of one raw event tuple. Counts a drop when the queue is full."""


@runtime_checkable
class InputSource(Protocol):
    """Global mouse and keyboard hooks."""

    def start(self, emit: Emit, *, mouse: bool, keyboard: bool) -> None:
        """Install hooks; from now on every input event is emitted as a raw tuple."""

    def stop(self, timeout: float) -> None:
        """Remove hooks and return within ``timeout`` seconds."""


@runtime_checkable
class WindowProbe(Protocol):
    """Tells which top-level window has focus, and when that or its title changes."""

    def start(self, emit: Emit) -> None:
        """Begin emitting RAW_FOCUS (at start and on change) and RAW_TITLE events."""

    def stop(self, timeout: float) -> None: ...

    def active_window(self) -> WindowInfo | None:
        """The focused window now, or None when it cannot be known. Never from a hook."""

    def visible_windows(self) -> list[WindowInfo]:
        """Top-level windows mapped on screen, topmost last (for screenshot masking)."""


@runtime_checkable
class SessionStateProbe(Protocol):
    """Screen lock and session activity."""

    def start(self, emit: Emit) -> None:
        """Emit RAW_SESSION at start and whenever lock or activity changes."""

    def stop(self, timeout: float) -> None: ...

    def available(self) -> bool:
        """Whether lock state can be known at all on this system."""


@dataclass
class Check:
    """One line of ``deskcorder doctor``."""

    name: str
    ok: bool
    detail: str
    required: bool = True  # a failing required check makes doctor exit non-zero


@dataclass
class Backend:
    """The parts one platform provides. ``secure_input`` may be None (no probe)."""

    name: str
    input: InputSource
    windows: WindowProbe
    session: SessionStateProbe
    keyboard_layout: Callable[[], str | None] = lambda: None
    screens: Callable[[], list[tuple[int, int, int, int]]] = lambda: []
    doctor: Callable[[], list[Check]] = lambda: []
    secure_input: Callable[[], bool | None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
