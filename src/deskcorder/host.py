"""What a component may use of the agent that runs it: the :class:`Host` protocol.

The agent (``deskcorder.agent.Agent``) composes the pipeline, the spool, the
platform backend and the *components* (privacy, screenshots, tray, watchdog,
uploader). A component is started with ``component.start(host)`` and reaches
the agent only through this narrow interface, never through
``deskcorder.agent`` itself, so the import arrows point one way::

    agent -> components (capture/, watchdog, upload/) -> host -> events, policy.model, storage

Threads: ``emit`` is safe from any thread (it is the bounded queue's
non-blocking put); the lists and the handler table are filled while
components start (before the agent runs) and read on the pipeline / control
threads; ``shed_level`` is a plain int written by the watchdog thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from deskcorder.events import WindowInfo
    from deskcorder.platform.base import WindowProbe
    from deskcorder.policy.model import Policy
    from deskcorder.storage.chunk import Manifest
    from deskcorder.storage.spool import Spool

Raw = tuple[Any, ...]
"""One raw event tuple (``deskcorder.events``: ``(RAW_*, t_ns, ...)``)."""

Observer = Callable[[dict[str, Any]], None]
"""Called on the pipeline thread with each record after gates and redaction; must be quick."""

SealedHook = Callable[["Manifest"], None]
"""Called on the pipeline thread after a chunk is sealed; must be quick."""

Handler = Callable[[dict[str, Any]], dict[str, Any]]
"""A control command: request fields in, reply fields out (raise to refuse)."""


class CaptureGates(Protocol):
    """The pipeline's privacy gates, as a component may ask them (read-only)."""

    def blocked_reason(self) -> str | None:
        """Why capture is off now (``user``, ``lock``, ``schedule`` ...), or None."""

    def window_rule(self, win: WindowInfo | None) -> str | None:
        """The exclusion rule that matches ``win``, or None when it may be recorded."""


class HostConditions(Protocol):
    """Battery and network as the agent last saw them (``deskcorder.conditions``); any thread."""

    on_change: list[Callable[[], None]]
    """Called (on the conditions thread) when a verdict below changed; must be quick."""

    def upload_hold(self) -> str | None:
        """Why uploads must wait now (``metered network``, a low battery), or None."""

    def screenshots(self) -> tuple[bool, float]:
        """(screenshots allowed, extra minimum spacing in seconds) under policy ``[power]``."""


class Host(Protocol):
    """The agent as its components see it."""

    # -- what the agent runs under ------------------------------------------------------
    @property
    def policy(self) -> Policy:
        """The effective policy."""

    @property
    def spool(self) -> Spool:
        """The spool the session is written into (blobs, state, sealed chunks)."""

    @property
    def session_id(self) -> str: ...

    @property
    def user_id(self) -> str | None:
        """The user pseudonym (None until the collector gave one) or login name."""

    @property
    def device_id(self) -> str: ...

    @property
    def keystrokes(self) -> str:
        """The effective keystroke mode (``full`` degrades without a secure-input probe)."""

    @property
    def windows(self) -> WindowProbe:
        """The platform's window probe (active and visible windows)."""

    @property
    def t0_ns(self) -> int:
        """The session clock (``platform.clock``) at session time 0: ``t`` counts from it."""

    @property
    def last_move_ns(self) -> int:
        """Monotonic ns of the latest pointer move the pipeline recorded (0: none yet).

        Moves reach no observer (they are batched); components that must know
        whether the pointer is moving read this plain int.
        """

    @property
    def gates(self) -> CaptureGates:
        """The pipeline's gates (a component must not record what they block)."""

    @property
    def alerts(self) -> dict[str, str]:
        """One line per component that the person must see (the tray shows them):
        ``host.alerts[component.name] = "uploads stopped: ..."``; delete it when over."""

    @property
    def conditions(self) -> HostConditions:
        """Battery and network: what they allow now (screenshots, uploads)."""

    shed_level: int
    """Load shedding step (0-3), written only by the watchdog; read it, never wait on it."""

    # -- registration (while starting) ---------------------------------------------------
    @property
    def control_handlers(self) -> dict[str, Handler]:
        """Control commands by name: register with ``host.control_handlers[cmd] = fn``."""

    @property
    def observers(self) -> list[Observer]:
        """Record observers of the pipeline: append to watch, remove when stopping."""

    @property
    def on_sealed(self) -> list[SealedHook]:
        """Callbacks run after each sealed chunk."""

    # -- acting on the capture -----------------------------------------------------------
    def emit(self, raw: Raw) -> None:
        """Enqueue a raw event; never blocks (drops and counts when the queue is full)."""

    def emit_control(self, raw: Raw) -> None:
        """Enqueue a ``RAW_CONTROL`` event; bypasses the bound, never dropped."""

    def request_flush(self) -> None:
        """Ask the pipeline to flush (and seal) the open chunk soon."""

    def capture_status(self) -> dict[str, Any]:
        """The pipeline's state: ``recording``, ``blocked``, ``excluded``, queue figures ..."""

    def set_move_interval_us(self, interval_us: int) -> None:
        """Sample mouse moves at most once per ``interval_us`` (0: every move)."""


class Component(Protocol):
    """An optional part the agent runs (uploader, screenshots, tray, watchdog ...)."""

    name: str

    def start(self, host: Host) -> None: ...

    def stop(self, timeout: float) -> None: ...

    def status(self) -> dict[str, object]: ...
