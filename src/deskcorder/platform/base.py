"""The typed seams between the platform-neutral agent and per-OS code.

A backend provides three parts. Each is started and stopped by the agent;
none does OS work at import time. All of them deliver *raw events* (see
``deskcorder.events``) through an :data:`Emit` callable, which is the bounded
queue's non-blocking put: it never blocks and never raises.

Beside the parts, a backend offers *probes* that answer questions about the
desktop on demand (today: the desktop's accessibility API, which tells
whether the focused field is a password field and which element is under a
click). Each is a finder on the :class:`Backend`: a function, called when the
agent is built (and by ``doctor``), that may do OS work and returns
:class:`Found`: the probe and what it is, or why there is none. A new kind of
probe is one more finder field here and one function in each OS's module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class Element:
    """One accessible element (a button, a text field ...) as the OS's accessibility API
    describes it. ``name`` is its label as the toolkit gives it (unscrubbed: the
    pipeline scrubs it before anything is written)."""

    role: str  # the toolkit-neutral role name, e.g. "push button", "text", "password text"
    name: str | None = None
    rect: tuple[int, int, int, int] | None = None  # left, top, width, height (screen)
    path: tuple[str, ...] = ()  # roles from the window down to this element (bounded)
    password: bool = False  # a password field: nothing typed into it is ever recorded
    unverified: bool = False  # typed text cannot be checked here (a terminal: sudo prompts)


class Accessibility(Protocol):
    """The desktop's accessibility API (AT-SPI, UI Automation, AX), seen by one thread.

    Every method but ``start``/``stop`` may block on another process (a hung
    application answers nothing): it is called only from the accessibility
    monitor's thread (``capture/a11y.py``), never from a hook or the pipeline,
    and each implementation bounds its own calls (a time limit per call, and
    no calls for a while to an application that timed out).
    """

    poll_s: float | None
    """How often to ask :meth:`focused` without being told of a change (None: only when
    ``changed`` is called or the monitor resets; event-driven APIs)."""

    def start(self, changed: Callable[[], None]) -> None:
        """Begin; call ``changed()`` (any thread, never blocks) when the focused element of
        some application may have changed."""

    def stop(self, timeout: float) -> None: ...

    def focused(self, window: WindowInfo | None, detail: bool) -> Element | None:
        """The focused element of ``window`` now, or None when it cannot be known (no
        accessibility there, no answer in time). ``detail``: also name, rect and path."""

    def element_at(self, x: int, y: int, window: WindowInfo) -> Element | None:
        """The deepest element of ``window`` at screen point (x, y), or None."""


P = TypeVar("P")


@dataclass(frozen=True)
class Found(Generic[P]):
    """What a probe finder found: ``probe`` and what it is, or (``probe`` None) why not."""

    description: str
    probe: P | None = None


@dataclass
class Check:
    """One line of ``deskcorder doctor``."""

    name: str
    ok: bool
    detail: str
    required: bool = True  # a failing required check makes doctor exit non-zero


@dataclass(frozen=True)
class Battery:
    """A battery reading: charge in percent and whether mains power is connected."""

    percent: float | None  # None: unknown
    plugged: bool | None  # None: cannot tell


PowerProbe = Callable[[], "Battery | None"]
"""The battery now (None: no battery, a desktop). Cheap; polled every few seconds."""

NetworkProbe = Callable[[], "bool | None"]
"""Is the connection metered now? (None: unknown). Cheap; polled every few seconds."""


@dataclass
class Backend:
    """The parts and probe finders one platform provides.

    ``accessibility`` finds the desktop's accessibility API (secure input and
    elements); None means the backend has none at all (``keystrokes = "full"``
    then degrades to redacted, and no element is recorded).
    """

    name: str
    input: InputSource
    windows: WindowProbe
    session: SessionStateProbe
    keyboard_layout: Callable[[], str | None] = lambda: None
    screens: Callable[[], list[tuple[int, int, int, int]]] = lambda: []
    doctor: Callable[[], list[Check]] = lambda: []
    accessibility: Callable[[], Found[Accessibility]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    power: PowerProbe | None = None  # battery (platform/power.py: psutil on every OS)
    network: NetworkProbe | None = None  # metered connection (platform/<os>/network.py)


# -- the control channel's transport (platform/channel.py) ---------------------------

MAX_MESSAGE = 1 << 20
"""Longest control channel message (``platform/channel.py``)."""


class Endpoint(Protocol):
    """The control channel's agent side: serves a ChannelServer on its own thread."""

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...


class ChannelServer(Protocol):
    """What an Endpoint serves: reply lines for request lines (without the newlines)."""

    def serve(self, line: bytes) -> bytes:
        """The reply to one request line; never raises."""

    def refuse(self, reason: str) -> bytes:
        """The reply when a request could not be read (cut off, too large ...)."""
