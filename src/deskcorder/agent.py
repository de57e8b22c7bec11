"""The agent: composes a backend, the pipeline, the spool, components and control.

Lifecycle: single-instance lock -> spool recovery -> pipeline -> OS sources ->
components -> control channel -> wait -> stop everything in reverse within
the stop budget (2 s) -> the pipeline seals the last chunk.
"""

from __future__ import annotations

import logging
import os
import platform as _platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import filelock

from deskcorder import __version__
from deskcorder.capture.pipeline import Pipeline
from deskcorder.capture.privacy import PrivacyComponent
from deskcorder.capture.screenshots import ScreenshotComponent
from deskcorder.conditions import Conditions
from deskcorder.control.channel import ControlServer, runtime_dir
from deskcorder.devicekey import load_or_create
from deskcorder.devicekey import saved as key_saved
from deskcorder.errors import AlreadyRunning, DeskcorderError
from deskcorder.events import ELEMENT_VERSION, FORMAT_NAME, FORMAT_VERSION, RAW_CONTROL
from deskcorder.host import CaptureGates, Component, Observer, Raw
from deskcorder.identity import identities, warn_deprecated
from deskcorder.platform import clock
from deskcorder.platform.base import Backend, WindowProbe
from deskcorder.policy.load import LoadedPolicy
from deskcorder.storage.chunk import Manifest
from deskcorder.storage.faults import TRANSIENT, classify
from deskcorder.storage.spool import Spool, new_session_id
from deskcorder.upload import Uploader
from deskcorder.watchdog import Watchdog

log = logging.getLogger(__name__)

STOP_BUDGET_S = 2.0
SCREENS_EVERY_S = 2.0  # how often monitors are looked at (a change starts a new chunk)


__all__ = ["Agent", "Component", "default_components", "default_spool_dir"]


def default_components(agent: Agent) -> list[Component]:
    """The components a real agent runs, as policy enables them. One line each."""
    components: list[Component] = []
    components.append(Watchdog())  # self-limits: sheds load at policy [limits]
    components += privacy_components(agent)  # tray icon (or a notification without a tray)
    if agent is not None and agent.policy.capture.screenshots:  # None: tests list names
        components.append(ScreenshotComponent())
    if agent is not None and agent.policy.upload.endpoint:  # uploads sealed chunks
        components.append(Uploader(agent.policy.upload))
    return components


def privacy_components(agent: Agent) -> list[Component]:
    """The visible indicator (the privacy component itself always runs, see Agent.run)."""
    from deskcorder.capture.tray import TrayComponent

    return [TrayComponent()]


def default_spool_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("deskcorder", appauthor=False)) / "spool"


class InstanceLock:
    """Held for the agent's lifetime; a second agent for the same user gets AlreadyRunning.

    ``agent.lock`` is held with filelock (``flock`` on POSIX, ``msvcrt.locking`` on
    Windows; the OS releases it when the process dies); the holder's pid is
    in ``agent.pid`` beside it, for the refusal message.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / "agent.lock"
        self.pid_path = directory / "agent.pid"
        self._lock = filelock.FileLock(self.path)

    def acquire(self) -> None:
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout as exc:
            try:
                other = self.pid_path.read_text(encoding="utf-8").strip() or "unknown"
            except OSError:
                other = "unknown"
            raise AlreadyRunning(
                f"deskcorder is already running for this user (pid {other}); "
                "use `deskcorder status`, `pause` or `resume` to control it"
            ) from exc
        except OSError as exc:
            raise DeskcorderError(f"{self.path}: cannot take the instance lock: {exc}") from exc
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()), encoding="utf-8")
        os.replace(tmp, self.pid_path)

    def release(self) -> None:
        if self._lock.is_locked:
            self.pid_path.unlink(missing_ok=True)
            self._lock.release()


class Agent:
    """Runs one recording session; components see it as a :class:`deskcorder.host.Host`."""

    def __init__(
        self,
        loaded: LoadedPolicy,
        spool_dir: Path,
        backend: Backend,
        *,
        duration: float | None = None,
        components: Callable[[Agent], list[Component]] | None = None,
    ) -> None:
        self.loaded = loaded
        self.policy = loaded.policy
        self.backend = backend
        self.duration = duration
        self.spool = Spool(spool_dir, self.policy.spool)
        self._components_factory = components or default_components
        self.components: list[Component] = []
        self.on_sealed: list[Callable[[Manifest], None]] = []
        self.control_handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._stop_reason = "stop"
        self.pipeline: Pipeline | None = None
        self.session_id = new_session_id()
        self.t0_ns = clock.now_ns()
        self.started_at = datetime.now(timezone.utc)
        warn_deprecated(self.policy.identity)
        self.device_id = identities(self.policy.identity, spool_dir).device  # makes the key
        self.alerts: dict[str, str] = {}  # component -> a line the person must see (tray)
        # decides the effective keystroke mode (full needs a secure-input probe)
        self.privacy = PrivacyComponent(self.policy, backend)
        self.keystrokes = self.privacy.keystrokes
        self._screens: list[tuple[int, int, int, int]] = []
        # battery and network: what screenshots and uploads may do now (started in run)
        self._conditions = Conditions(self.policy, backend.power, backend.network)
        self._layout: str | None = None
        self.shed_level = 0

    # -- the Host protocol (deskcorder.host) -------------------------------------------
    def emit(self, raw: Raw) -> None:
        """Non-blocking enqueue for sources (drops and counts when the queue is full)."""
        assert self.pipeline is not None
        self.pipeline.queue.put_nowait(raw)

    def emit_control(self, raw: Raw) -> None:
        assert self.pipeline is not None
        self.pipeline.queue.put_control(raw)

    def request_flush(self) -> None:
        assert self.pipeline is not None
        self.pipeline.request_flush()

    def capture_status(self) -> dict[str, Any]:
        if self.pipeline is None:
            return {"blocked": "starting"}
        status = self.pipeline.status()
        if self.alerts:
            status["alerts"] = sorted(self.alerts.values())
        return status

    @property
    def user_id(self) -> str | None:
        """The user identifier (pseudonym from the collector's last answer, or login name)."""
        return identities(self.policy.identity, self.spool.root, self.device_id).user

    def set_move_interval_us(self, interval_us: int) -> None:
        if self.pipeline is not None:
            self.pipeline.moves.interval_us = interval_us

    @property
    def windows(self) -> WindowProbe:
        return self.backend.windows

    @property
    def last_move_ns(self) -> int:
        return 0 if self.pipeline is None else self.pipeline.last_move_ns

    @property
    def conditions(self) -> Conditions:
        return self._conditions

    @property
    def gates(self) -> CaptureGates:
        assert self.pipeline is not None, "components start after the pipeline"
        return self.pipeline.gates

    @property
    def observers(self) -> list[Observer]:
        assert self.pipeline is not None, "components start after the pipeline"
        return self.pipeline.observers

    def header(self, seq: int) -> dict[str, Any]:
        now = clock.now_ns()
        unix_ns = time.time_ns()
        t = max(0, (now - self.t0_ns) // 1000)
        cap = self.policy.capture
        state = self.spool.root / "state"
        if not key_saved(state):  # made on a full disk at start: save it now, with this chunk
            load_or_create(state)
        ids = identities(self.policy.identity, self.spool.root, self.device_id)
        header: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "session": self.session_id,
            "seq": seq,
            "device": self.device_id,
            "user": ids.user,  # null until the collector has given this device its
            "machine": ids.machine,  # pseudonyms (it stores chunks under those anyway)
            "identity": self.policy.identity.mode,
            "org": self.policy.identity.org,
            "agent": f"deskcorder/{__version__}",
            "backend": self.backend.name,
            "os": f"{_platform.system()} {_platform.release()}",
            "screen": [list(s) for s in self._screens],
            "keyboard_layout": self._layout,
            "policy_digest": self.policy.digest(),
            "keystrokes": self.keystrokes,
            "mouse_move_hz": cap.mouse_move_hz,
            "streams": {
                "mouse": cap.mouse,
                "keyboard": cap.keyboard,
                "window": cap.window,
                "screenshots": cap.screenshots,
            },
            "clock": clock.anchor(t, unix_ns),
            "pre_action": cap.screenshots and self.policy.screenshots.pre_action,
        }
        if self.privacy.elements:
            header["elements"] = ELEMENT_VERSION
        return header

    # -- lifecycle --------------------------------------------------------------------
    def request_stop(self, reason: str = "stop") -> None:
        self._stop_reason = reason
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop(signal.Signals(signum).name.lower())

    def run(self) -> int:
        lock = InstanceLock(runtime_dir())
        lock.acquire()
        try:
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> int:
        spool = self.spool
        try:
            spool.ensure()
        except DeskcorderError as exc:
            if classify(exc)[0] not in TRANSIENT:
                raise  # a set-up problem (no permission, a file in the way): say so and stop
            # a full or read-only disk comes and goes: start in the storage gate instead
            log.warning("%s; capture stays paused until the spool can be written", exc)
        recovered = spool.recover()
        if recovered:
            log.warning("recovered %d chunk(s) left by an unclean stop", len(recovered))
        backend = self.backend
        try:
            self._screens = backend.screens()
        except Exception:
            log.warning("screen geometry unavailable", exc_info=True)
        try:
            self._layout = backend.keyboard_layout()
        except Exception:
            self._layout = None
        pipeline = Pipeline(
            self.policy,
            spool,
            self.header,
            session_id=self.session_id,
            t0_ns=self.t0_ns,
            keystrokes=self.keystrokes,
            a11y=self.privacy.monitor,
        )
        pipeline.on_sealed = self.on_sealed  # one list: components may register later
        self.pipeline = pipeline
        self._install_signals()
        pipeline.start()
        started: list[Any] = []
        try:
            # secure-input monitor, notice, consent control: before any input source
            self.privacy.start(self)
            started.append(self.privacy)
            self._conditions.start(self)  # before the components that read it
            started.append(self._conditions)
            cap = self.policy.capture
            if self.policy.pause.on_lock:
                backend.session.start(self.emit)
                started.append(backend.session)
            backend.windows.start(self.emit)
            started.append(backend.windows)
            if cap.mouse or cap.keyboard:
                backend.input.start(self.emit, mouse=cap.mouse, keyboard=cap.keyboard)
                started.append(backend.input)
            self.components = self._components_factory(self)
            for component in self.components:
                component.start(self)
                started.append(component)
            self._register_control()
            control = ControlServer(self.control_handlers)
            control.start()
            started.append(control)
            self.privacy.announce()  # the notice, once everything has started
        except BaseException:
            self._stop_all(started, pipeline, "error")
            raise
        log.info("recording session %s into %s", self.session_id, spool.root)
        deadline = None if self.duration is None else time.monotonic() + self.duration
        next_screens = time.monotonic() + SCREENS_EVERY_S
        while not self._stop.is_set():
            timeout = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if timeout <= 0:
                self._stop_reason = "duration"
                break
            self._stop.wait(min(timeout, max(0.0, next_screens - time.monotonic())))
            if pipeline.fatal is not None:
                self._stop_reason = "error"
                break
            if time.monotonic() >= next_screens:
                next_screens = time.monotonic() + SCREENS_EVERY_S
                self._check_screens()
        ok = self._stop_all(started, pipeline, self._stop_reason)
        if pipeline.fatal is not None:
            raise DeskcorderError(f"capture failed: {pipeline.fatal}") from pipeline.fatal
        return 0 if ok else 1

    def _check_screens(self) -> None:
        """Monitors added, removed or resized: a ``screen`` record and a new chunk."""
        try:
            screens = self.backend.screens()
        except Exception as exc:
            log.debug("screen geometry unavailable: %s", exc)
            return
        if not screens or screens == self._screens:
            return  # unknown (e.g. the display is briefly away): keep the last known
        log.info("screens changed: %s -> %s", self._screens, screens)
        self._screens = screens  # read by the next header
        self.emit_control((RAW_CONTROL, clock.now_ns(), "screens", screens))

    def _stop_all(self, started: list[Any], pipeline: Pipeline, reason: str) -> bool:
        deadline = time.monotonic() + STOP_BUDGET_S
        for part in reversed(started):
            left = max(0.05, (deadline - time.monotonic()) * 0.5)
            try:
                part.stop(left)
            except Exception:
                log.exception("stopping %s failed", type(part).__name__)
        left = max(0.2, deadline - time.monotonic())
        done = pipeline.stop(left, reason)
        if not done:
            log.error(
                "pipeline did not finish within the stop budget; the open chunk "
                "will be recovered at next start"
            )
        return done

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_signal)

    # -- control --------------------------------------------------------------------
    def _register_control(self) -> None:
        handlers = self.control_handlers
        handlers.setdefault("status", lambda req: self.status())
        handlers.setdefault("pause", self._handle_pause)
        handlers.setdefault("resume", self._handle_resume)
        handlers.setdefault("flush", self._handle_flush)

    def _handle_pause(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.pipeline is not None
        minutes = req.get("minutes")
        if minutes is not None and not isinstance(minutes, int | float):
            raise ValueError("minutes must be a number")
        until = self.pipeline.gates.pause_until(minutes)
        self.emit_control((RAW_CONTROL, clock.now_ns(), "pause", until))
        left = None if until == float("inf") else round(until - self.pipeline.gates.timer())
        return {"paused": True, "pause_left_s": left}

    def _handle_resume(self, req: dict[str, Any]) -> dict[str, Any]:
        self.emit_control((RAW_CONTROL, clock.now_ns(), "resume", None))
        return {"paused": False}

    def _handle_flush(self, req: dict[str, Any]) -> dict[str, Any]:
        self.request_flush()
        return {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "agent": __version__,
            "started": self.started_at.isoformat(),
            "backend": self.backend.name,
            "spool": str(self.spool.root),
            "spool_bytes": self.spool.usage_bytes(),
            "spool_quota_bytes": self.spool.quota_bytes,
        }
        if self.pipeline is not None:
            out.update(self.pipeline.status())
        out["privacy"] = self.privacy.status()
        for component in [self._conditions, *self.components]:
            try:
                out[component.name] = component.status()
            except Exception as exc:
                out[component.name] = {"error": str(exc)}
        return out


def python_info() -> str:
    return f"{sys.implementation.name} {_platform.python_version()}"
