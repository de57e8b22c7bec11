"""The accessibility monitor: secure input and elements, on its own thread.

The platform's :class:`~deskcorder.platform.base.Accessibility` (AT-SPI, UI
Automation, AX) answers two questions, each by calls into other processes that
may be slow or hang, so they are asked only here, on the thread
``deskcorder-a11y``, never by a hook or the pipeline:

* **Is the focused field a password field?** The answer is ``True``
  (password field: printable keys leave no record, typed text becomes
  ``[SECURE]``), ``False`` (an element that accessibility identified and that
  is not a password field: in ``full`` mode its text is recorded, scrubbed) or
  ``None`` (unknown: key kinds only, no text).
* **Which element is under a click, which element got focus?** Written as
  ``el`` records (docs/format.md) when policy sets ``capture.elements``.

Fail closed. Every input that may move the focus (a focus change of the top-
level window, a click, Tab, Enter, Escape, a shortcut ...) calls
:meth:`AccessibilityMonitor.reset` on the pipeline thread: the answer becomes
unknown at once, a new *epoch* begins, and the thread asks the platform again.
An answer is published only for the epoch it was asked for (an answer that
arrives after another reset is thrown away). Per epoch the monitor remembers
whether a password field was focused at any time (``secure``: all text typed
in that epoch becomes ``[SECURE]``, even text typed before the answer came)
and when "not a password field" was last published (``safe_ns``: text typed
while the answer was unknown is kept only if such an answer came after it).
:mod:`deskcorder.capture.textbuf` applies these rules to the typed text.

Hard time limits: the platform bounds each of its calls; a click's element is
written only if it was found within :data:`LOOKUP_LIMIT_NS` of the click; a
hung application therefore delays nothing but its own answers, which stay
unknown (key kinds only, no element).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from deskcorder.capture.exclusions import window_names
from deskcorder.events import RAW_ELEMENT, WindowInfo
from deskcorder.platform.base import Accessibility, Element, Emit

log = logging.getLogger(__name__)

UNKNOWN_BOUND_NS = 500_000_000
"""Text typed while the answer is unknown waits at most this long for "not a password
field"; then it is dropped (``[UNKNOWN]``) and only key kinds stay."""

LOOKUP_LIMIT_NS = 500_000_000
"""A click's element found later than this after the click is not written."""

_EPOCHS_KEPT = 64


@dataclass(frozen=True, slots=True)
class Answer:
    """The current answer: ``state`` since ``since_ns`` (monotonic), in ``epoch``."""

    epoch: int
    state: bool | None
    since_ns: int


class EpochInfo:
    """What one epoch has seen (written by the monitor thread, read by the pipeline)."""

    __slots__ = ("safe_ns", "secure")

    def __init__(self) -> None:
        self.secure = False  # a password field was focused at some time in this epoch
        self.safe_ns = 0  # monotonic ns of the latest "not a password field" in this epoch


class FieldAnswers:
    """What the key filter reads: the current answer, an epoch's history, and reset.

    This base class is the answer where no accessibility API exists: always
    unknown (key kinds only). :class:`AccessibilityMonitor` is the real one.
    """

    bound_ns = UNKNOWN_BOUND_NS

    def __init__(self, state: bool | None = None) -> None:
        self._answer = Answer(0, state, 0)
        self._info = EpochInfo()
        self._info.secure = state is True

    def answer(self) -> Answer:
        return self._answer

    def info(self, epoch: int) -> EpochInfo | None:
        return self._info if epoch == self._answer.epoch else None

    def reset(self, window: WindowInfo | None) -> None:
        """The focus may have moved (pipeline thread; never blocks)."""

    def secure_at(self, ns: int) -> bool:
        """Was "password field" the answer at monotonic time ``ns`` (a key's hook time)?

        Keys are processed a little after they were typed; when the focus leaves a
        password field in between, the answer has already changed. Asking for the
        answer in force when the key was typed keeps even its key kind off disk."""
        return self._answer.state is True


NO_ACCESSIBILITY = FieldAnswers(None)


@dataclass(frozen=True, slots=True)
class _Lookup:
    x: int
    y: int
    window: WindowInfo
    act: int
    deadline_ns: int


class AccessibilityMonitor(FieldAnswers):
    """Asks the platform's accessibility API on its own thread; the pipeline reads answers.

    ``reset``, ``lookup``, ``answer`` and ``info`` are called on the pipeline
    thread and never block (a short lock shared with the publishing thread);
    ``changed`` may be called from any thread (the platform's event thread).
    """

    def __init__(
        self,
        acc: Accessibility,
        *,
        elements: bool = False,
        unverified_apps: Iterable[str] = (),
        clock: Callable[[], int] = time.monotonic_ns,
        lookup_limit_ns: int = LOOKUP_LIMIT_NS,
    ) -> None:
        super().__init__(None)
        self.acc = acc
        self.elements = elements
        self.unverified_apps = frozenset(a.lower() for a in unverified_apps)
        self._clock = clock
        self.lookup_limit_ns = lookup_limit_ns
        self._lock = threading.Lock()
        self._epoch = 0
        self._window: WindowInfo | None = None
        self._infos: dict[int, EpochInfo] = {0: EpochInfo()}
        self._answer = Answer(0, None, clock())
        self._verify = True
        self._request: _Lookup | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emit: Emit | None = None
        self._last_focus: tuple[int, Element] | None = None
        # (since_ns, state) of the latest answers, oldest first; replaced, never mutated
        self._timeline: tuple[tuple[int, bool | None], ...] = ((0, None),)
        self.failures = 0  # platform calls that raised
        self.lookups = {"found": 0, "none": 0, "late": 0, "replaced": 0}

    # -- the pipeline's side --------------------------------------------------------------
    def info(self, epoch: int) -> EpochInfo | None:
        return self._infos.get(epoch)

    def reset(self, window: WindowInfo | None) -> None:
        with self._lock:
            self._epoch += 1
            epoch = self._epoch
            self._window = window
            self._infos[epoch] = EpochInfo()
            self._infos.pop(epoch - _EPOCHS_KEPT, None)
            self._answer = Answer(epoch, None, self._clock())
            self._note(self._answer)
            self._verify = True
        self._wake.set()

    def secure_at(self, ns: int) -> bool:
        for since, state in reversed(self._timeline):
            if since <= ns:
                return state is True
        return self._answer.state is True

    def _note(self, answer: Answer) -> None:
        """Add ``answer`` to the timeline (caller holds the lock)."""
        self._timeline = (*self._timeline[-(_EPOCHS_KEPT - 1) :], (answer.since_ns, answer.state))

    def lookup(self, x: int, y: int, window: WindowInfo | None, act: int) -> None:
        """Find the element under a click (``act``: the ``t`` of its ``bd`` record)."""
        if not self.elements or window is None or self._thread is None:
            return
        if self._request is not None:
            self.lookups["replaced"] += 1  # the previous click was not looked up yet
        self._request = _Lookup(x, y, window, act, self._clock() + self.lookup_limit_ns)
        self._wake.set()

    def changed(self) -> None:
        """The platform saw a focus change somewhere: ask again (any thread)."""
        self._verify = True
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, emit: Emit) -> None:
        self._emit = emit
        self.acc.start(self.changed)
        self._thread = threading.Thread(target=self._run, name="deskcorder-a11y", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, timeout / 2))
        try:
            self.acc.stop(max(0.0, deadline - time.monotonic()))
        except Exception:
            log.debug("stopping the accessibility API failed", exc_info=True)

    def status(self) -> dict[str, object]:
        return {
            "now": self._answer.state,
            "epoch": self._answer.epoch,
            "failures": self.failures,
            "lookups": dict(self.lookups),
        }

    # -- the monitor's thread --------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.acc.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self._verify or self.acc.poll_s is not None:
                self._verify = False
                self._verify_focus()
            request, self._request = self._request, None
            if request is not None:
                self._lookup(request)

    def _verify_focus(self) -> None:
        with self._lock:
            epoch, window = self._epoch, self._window
        try:
            element = self.acc.focused(window, self.elements)
        except Exception:
            self.failures += 1
            log.debug("accessibility: focused element failed", exc_info=True)
            element = None
        state = self.classify(window, element)
        with self._lock:
            if epoch != self._epoch:  # reset meanwhile: this answer may be from before it
                self._verify = True
                self._wake.set()
                return
            now = self._clock()
            info = self._infos[epoch]
            if state is True:
                info.secure = True
            elif state is False:
                info.safe_ns = now
            if state != self._answer.state:
                self._answer = Answer(epoch, state, now)
                self._note(self._answer)
        if self.elements and element is not None and window is not None:
            key = (window.id, element)
            if key != self._last_focus:
                self._last_focus = key
                self._send(now, window.id, "focus", None, element)

    def classify(self, window: WindowInfo | None, element: Element | None) -> bool | None:
        """True: password field; False: text may be recorded; None: unknown."""
        if element is not None and element.password:
            return True
        if element is None or element.unverified:
            listed = window is not None and window_names(window) & self.unverified_apps
            return False if listed else None
        return False

    def _lookup(self, request: _Lookup) -> None:
        if self._clock() > request.deadline_ns:
            self.lookups["late"] += 1
            return
        try:
            element = self.acc.element_at(request.x, request.y, request.window)
        except Exception:
            self.failures += 1
            log.debug("accessibility: element at a point failed", exc_info=True)
            element = None
        now = self._clock()
        if element is None:
            self.lookups["none"] += 1
        elif now > request.deadline_ns:
            self.lookups["late"] += 1
        else:
            self.lookups["found"] += 1
            self._send(now, request.window.id, "click", request.act, element)

    def _send(self, now: int, window_id: int, src: str, act: int | None, el: Element) -> None:
        if self._emit is not None:
            self._emit((RAW_ELEMENT, now, window_id, src, act, el))
