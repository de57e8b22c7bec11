"""The pipeline: bounded queue -> gates -> redaction -> move sampling -> batches -> spool.

One named thread owns everything after the queue, so none of the state here
needs locks. Sources (hooks) only call :meth:`EventQueue.put_nowait`.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from deskcorder.capture.a11y import AccessibilityMonitor
from deskcorder.capture.clockwatch import ClockChange, ClockWatch
from deskcorder.capture.coalesce import MoveCoalescer
from deskcorder.capture.gates import Gates
from deskcorder.capture.redact import KeyRedactor
from deskcorder.capture.scrub import safe_scrub
from deskcorder.capture.textbuf import KeyFilter
from deskcorder.events import (
    K_BUTTON_DOWN,
    K_BUTTON_UP,
    K_CLOCK,
    K_ELEMENT,
    K_END,
    K_EXCLUDED,
    K_FOCUS,
    K_GAP,
    K_KEY_DOWN,
    K_KEY_UP,
    K_PAUSE,
    K_RESUME,
    K_SCREEN,
    K_SCROLL,
    K_SHOT,
    K_START,
    K_TITLE,
    RAW_BUTTON,
    RAW_CONTROL,
    RAW_ELEMENT,
    RAW_FOCUS,
    RAW_KEY,
    RAW_MARK,
    RAW_MOVE,
    RAW_SCROLL,
    RAW_SESSION,
    RAW_SHOT,
    RAW_TITLE,
    ShotInfo,
    WindowInfo,
    event_count,
)
from deskcorder.platform import clock
from deskcorder.platform.base import Element
from deskcorder.platform.disk import free_bytes, is_read_only
from deskcorder.policy.model import Policy
from deskcorder.storage.chunk import Manifest
from deskcorder.storage.faults import StorageFault, classify
from deskcorder.storage.spool import Abandoned, SessionWriter, Spool

log = logging.getLogger(__name__)

Record = dict[str, Any]
Raw = tuple[Any, ...]


MIB = 1024 * 1024
HELD_MAX = 100_000  # records held in memory while the spool cannot be written
REPAIR_EVERY_S = 30.0  # retry sealing journals left by a write failure or a crash
IDLE_TICK_NS = 1_000_000_000  # idle: wake at least this often (pause expiry, schedule)
BUSY_BATCH_S = 0.02  # busy: gather events for this long between drains (<= 50 wakes/s)
ELEMENT_NAME_MAX = 200  # characters of an element's name kept (before scrubbing)
ELEMENT_PATH_MAX = 16  # roles kept of an element's path (the innermost ones)


class EventQueue:
    """Bounded, non-blocking queue between hooks and the pipeline thread.

    ``put_nowait`` is the only thing a hook calls: a length check and a
    ``deque.append`` (atomic under the GIL). When full, the event is dropped and
    counted; the pipeline turns the count into a ``gap`` record.
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._dq: collections.deque[tuple[Any, ...]] = collections.deque()
        self._drop_lock = threading.Lock()
        self.dropped = 0
        # Set by the pipeline while it blocks on an empty queue; the first put wakes it.
        # While busy the pipeline does not block, so puts never touch the Event.
        self.sleeping = False
        self.wake = threading.Event()

    def put_nowait(self, item: tuple[Any, ...]) -> None:
        if len(self._dq) < self.maxsize:
            self._dq.append(item)
            if self.sleeping:
                self.sleeping = False
                self.wake.set()
        else:
            with self._drop_lock:  # only on the rare drop path
                self.dropped += 1

    def put_control(self, item: tuple[Any, ...]) -> None:
        """Control messages bypass the bound: they must never be lost."""
        self._dq.append(item)
        self.kick()

    def kick(self) -> None:
        """Wake the pipeline now (stop, flush, control)."""
        self.sleeping = False
        self.wake.set()

    def popleft(self) -> tuple[Any, ...]:
        return self._dq.popleft()

    def __len__(self) -> int:
        return len(self._dq)


class Pipeline:
    #: Record times are microseconds, rounded down to this many (1 ms: input devices
    #: poll every 1-8 ms, so finer digits are host jitter; they cost ~25 % of the
    #: compressed size, see docs/performance.md). 1 keeps full microseconds.
    time_resolution_us = 1000

    def __init__(
        self,
        policy: Policy,
        spool: Spool,
        header_factory: Callable[[int], dict[str, Any]],
        *,
        session_id: str | None = None,
        t0_ns: int | None = None,
        event_time_flush: bool = False,
        clock_ns: Callable[[], int] = clock.now_ns,
        keystrokes: str | None = None,
        a11y: AccessibilityMonitor | None = None,
        clock_watch: ClockWatch | None = None,
    ) -> None:
        self.policy = policy
        self.spool = spool
        self.queue = EventQueue(policy.capture.queue_size)
        # suspends and wall-clock steps become `clock` records; tests that pass their
        # own session clock pass a ClockWatch over the same clocks (or none)
        if clock_watch is None and clock_ns is clock.now_ns:
            clock_watch = ClockWatch()
        self.clock_watch = clock_watch
        self.t0_ns = clock_ns() if t0_ns is None else t0_ns
        self.session: SessionWriter = spool.open_session(header_factory, session_id)
        self.gates = Gates(policy)
        if policy.notice.require_ack:
            from deskcorder.capture.consent import has_consent

            self.gates.consent_ok = has_consent(spool.root, policy)
        # keystrokes may be lower than policy's (full degrades without a secure-input probe)
        self.keystrokes = keystrokes or policy.capture.keystrokes
        self.redactor = KeyRedactor(self.keystrokes)
        # every key record passes the key filter: it drops characters, buffers and
        # scrubs full-mode text, and applies secure input (see capture/textbuf.py) from
        # the accessibility monitor's answers (capture/a11y.py)
        self.a11y = a11y
        self.key_filter = KeyFilter(self.keystrokes, field=a11y)
        self.moves = MoveCoalescer(policy.capture.mouse_move_hz)
        self.observers: list[Callable[[Record], None]] = []
        self.on_sealed: list[Callable[[Manifest], None]] = []
        self.scrub_title: Callable[[str], str] = safe_scrub
        self._clock_ns = clock_ns  # stamps periodic records (tests pass a fixed clock)
        self._interval_ns = int(policy.spool.flush_interval_s * 1e9)
        self._event_time_flush = event_time_flush
        self._out: list[Record] = []
        self._dirty = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._flush_now = threading.Event()
        self._seen_dropped = 0
        self._next_retention = 0.0
        self._blocked: str | None = None
        self._window: WindowInfo | None = None
        self._window_known = False
        self._excluded: str | None = None
        self._last_t = 0
        self.counts: dict[str, int] = {}
        self.last_move_ns = 0  # monotonic ns of the latest recorded pointer move
        self.written_records = 0
        self.fatal: BaseException | None = None
        # storage faults (docs/architecture.md): the gate's state, journals to repair
        self.storage: StorageFault | None = None
        self._repairs: list[Abandoned] = []
        self._min_free = policy.spool.min_free_mb * MIB
        self._next_space_check = 0.0
        self._next_repair = 0.0
        self._rotate_now = False  # seal the open chunk at the next flush (screens changed)
        self._want_mouse = policy.capture.mouse
        self._want_keys = policy.capture.keyboard and self.keystrokes != "off"
        self._want_window = policy.capture.window
        self._want_shots = policy.capture.screenshots
        self._want_elements = policy.capture.elements and a11y is not None
        self._handlers: dict[int, Callable[[Raw, int], None]] = {
            RAW_MOVE: self._on_move,
            RAW_KEY: self._on_key,
            RAW_BUTTON: self._on_button,
            RAW_SCROLL: self._on_scroll,
            RAW_FOCUS: self._on_focus,
            RAW_TITLE: self._on_title,
            RAW_SESSION: self._on_session,
            RAW_SHOT: self._on_shot,
            RAW_CONTROL: self._on_control,
            RAW_MARK: self._on_mark,
            RAW_ELEMENT: self._on_element,
        }

    # -- lifecycle --------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return self.session.session_id

    def start(self) -> None:
        self._append({"k": K_START, "t": 0, "reason": "start"})
        self._blocked = self.gates.blocked_reason()
        if self._blocked:
            self._append({"k": K_PAUSE, "t": 0, "src": self._blocked})
        try:
            self._apply_retention()
        except OSError as exc:
            self._storage_failed(exc)
        self._thread = threading.Thread(target=self._run, name="deskcorder-pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout: float, reason: str = "stop") -> bool:
        """Drain the queue, write the end record, seal. True if done within ``timeout``."""
        self._end_reason = reason
        self._stop.set()
        self.queue.kick()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def request_flush(self) -> None:
        self._flush_now.set()
        self.queue.kick()

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopped.wait(timeout)

    # -- the loop -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - reported by the agent
            log.exception("pipeline failed")
            self.fatal = exc
        finally:
            self._stopped.set()

    def _loop(self) -> None:
        q = self.queue
        next_flush = time.monotonic_ns() + self._interval_ns
        next_flush_t = self._interval_ns // 1000
        while True:
            stopping = self._stop.is_set()
            n = 0
            # one raw event: stamp it and hand it to its kind's handler (looked up once
            # per event in a table of bound methods: no more calls than an if-chain)
            handlers, unknown, stamp = self._handlers, self._on_unknown, self._stamp
            while q and n < 65536:
                raw = q.popleft()
                if self.storage is not None:
                    self._note_unrecorded(raw)
                handlers.get(raw[0], unknown)(raw, stamp(raw[1]))
                n += 1
                if self._event_time_flush and self._last_t >= next_flush_t:
                    self._flush()
                    self._maybe_rotate_and_quota()
                    next_flush_t = self._last_t + self._interval_ns // 1000
            now = time.monotonic_ns()
            if n == 0 or now >= next_flush:
                self._tick(self._clock_ns())
            if now >= next_flush or self._flush_now.is_set():
                self._flush_now.clear()
                self._flush()
                self._maybe_rotate_and_quota()
                next_flush = now + self._interval_ns
            if stopping and not q:
                self._finish()
                return
            if n == 0:
                # Idle: block until the first new event, a due flush or tick, or stop.
                timeout = max(0, min(next_flush - now, IDLE_TICK_NS)) / 1e9
                q.sleeping = True
                if not q and not self._stop.is_set() and not self._flush_now.is_set():
                    q.wake.wait(timeout)
                q.sleeping = False
                q.wake.clear()
            else:
                # Busy: let events accumulate for a moment and process them as a batch.
                self._stop.wait(BUSY_BATCH_S)

    def _finish(self) -> None:
        t = self._now_t()
        self.moves.before_discrete(self._out)
        self._check_drops(t)
        for text in self.key_filter.close(t):
            self._append(text)
        if self.storage is not None:
            self._retry_storage(force=True)  # one last try: the disk may be back
        reason = getattr(self, "_end_reason", "stop")
        self._append({"k": K_END, "t": self._now_t(), "reason": reason})
        self._flush()
        if self.storage is None:
            try:
                manifest = self.session.seal()
            except OSError as exc:
                self._storage_failed(exc)
            else:
                if manifest is not None:
                    self._sealed(manifest)
        fault = self.storage
        if fault is not None:
            log.warning(
                "stopped while the spool cannot be written (%s): %d input event(s) and the "
                "last %d record(s) were not recorded; what was written before is recovered "
                "at the next start",
                fault.cause,
                fault.not_recorded,
                len(self._out),
            )

    def _stamp(self, ns: int) -> int:
        """Session time of a monotonic ns reading: whole ``time_resolution_us``, never
        earlier than a record already written (hooks on different threads and the
        periodic tick can hand over readings slightly out of order)."""
        res = self.time_resolution_us
        t = (ns - self.t0_ns) // (1000 * res) * res
        if t <= self._last_t:
            return self._last_t
        self._last_t = t
        return t

    def _now_t(self) -> int:
        return self._stamp(self._clock_ns())

    def _tick(self, now_ns: int) -> None:
        t = self._stamp(now_ns)
        if self.clock_watch is not None:
            for change in self.clock_watch.check():
                self._clock_changed(change)
        self._check_drops(t)
        self._update_blocked(t)
        self.moves.tick(t, self._out)
        if self.key_filter.pending:
            texts = self.key_filter.tick(t)
            if texts:
                self.moves.before_discrete(self._out)
                for text in texts:
                    self._append(text)

    def _clock_changed(self, change: ClockChange) -> None:
        """A suspend or a wall-clock step: a ``clock`` record with a fresh anchor."""
        rec: Record = {
            "k": K_CLOCK,
            "t": self._stamp(change.session_ns),
            "cause": change.cause,
            "clock": clock.anchor(max(0, (change.session_ns - self.t0_ns) // 1000), change.wall_ns),
        }
        amount_us = change.amount_ns // 1000
        if change.cause == "suspend":
            rec["slept_us"] = amount_us
            log.info("the machine slept for %.0f s", amount_us / 1e6)
        else:
            rec["step_us"] = amount_us
            log.warning("the wall clock moved by %+.3f s; records re-anchored", amount_us / 1e6)
        self.moves.before_discrete(self._out)
        self._append(rec)

    def _flush(self) -> None:
        self.moves.close_batch(self._out)
        if self.storage is not None:
            self._hold()
            return
        try:
            self._write_out()
        except OSError as exc:
            self._storage_failed(exc)

    def _write_out(self) -> None:
        """Write and durably flush ``_out``; on ``OSError`` it stays held in ``_out``."""
        if not self.session.linked():
            raise FileNotFoundError(errno.ENOENT, "the open chunk was deleted or moved")
        out = self._out
        if out:
            self.session.write_many(out)
            self._dirty = True
        if self._dirty:
            self.session.flush()
            self._dirty = False
        if out:
            self._out = []
            self.written_records += len(out)

    def _maybe_rotate_and_quota(self) -> None:
        if self.storage is not None:
            self._retry_storage()
            return
        try:
            if time.monotonic() >= self._next_retention:
                self._apply_retention()
            if self.session.needs_rotation() or self._rotate_now:
                self._rotate_now = False
                manifest = self.session.seal()
                if manifest is not None:
                    self._sealed(manifest)
            self._check_quota()
            self._check_free_space()
            if (self._repairs or self.spool.unrecovered) and time.monotonic() >= self._next_repair:
                self._repair()
        except OSError as exc:
            self._storage_failed(exc)

    # -- storage faults: never die of a write error (docs/architecture.md) --------------
    def _storage_failed(self, exc: OSError) -> None:
        """A spool write failed: keep what is durable, hold the rest, enter the storage gate."""
        abandoned = self.session.abandon()
        if abandoned is not None:
            self._repairs.append(abandoned)
        self._dirty = False
        fault = self.storage
        if fault is not None:  # failed again while retrying
            fault.error = _one_line(exc)
            self._schedule_retry(fault)
            return
        cause, name = classify(exc)
        self._enter_storage_gate(StorageFault(cause, name, 0, time.time(), _one_line(exc)))
        log.warning(
            "cannot write the spool (%s): %s; capture paused until writing works again",
            cause,
            exc,
        )

    def _enter_storage_gate(self, fault: StorageFault) -> None:
        t = self._now_t()
        fault.since_t = t
        self.storage = fault
        self._schedule_retry(fault)
        self.gates.storage = fault.cause
        self._update_blocked(t)

    def _schedule_retry(self, fault: StorageFault) -> None:
        fault.next_try = time.monotonic() + fault.backoff.next_delay()

    def _note_unrecorded(self, raw: tuple[Any, ...]) -> None:
        """Count an input event that the storage gate (and nothing else) keeps from disk."""
        fault = self.storage
        if fault is None or self._blocked != "storage" or self._excluded is not None:
            return
        tag = raw[0]
        if (tag in (RAW_MOVE, RAW_BUTTON, RAW_SCROLL) and self._want_mouse) or (
            tag == RAW_KEY and self._want_keys
        ):
            fault.not_recorded += 1

    def _hold(self) -> None:
        """Keep ``_out`` for when writing works again, within a bound (the excess is counted)."""
        excess = len(self._out) - HELD_MAX
        if excess > 0 and self.storage is not None:
            self.storage.not_recorded += sum(event_count(r) for r in self._out[-excess:])
            del self._out[-excess:]

    def _check_free_space(self) -> None:
        """Below ``spool.min_free_mb``: seal the chunk while there is room, enter the gate."""
        now = time.monotonic()
        if not self._min_free or now < self._next_space_check:
            return
        self._next_space_check = now + 1.0
        free = free_bytes(self.spool.root)
        if free is None or free >= self._min_free:
            return
        fault = StorageFault("low_disk", None, 0, time.time(), _low_space(free, self._min_free))
        log.warning("%s: capture paused", fault.error)
        self._enter_storage_gate(fault)  # the pause record goes into the chunk sealed now
        try:
            self._write_out()
            manifest = self.session.seal()
        except OSError as exc:
            self._storage_failed(exc)
            return
        if manifest is not None:
            self._sealed(manifest)

    def _space_needed(self) -> int:
        """Free bytes required before writing again: policy's floor (+10 %) and repair room."""
        need = int(self._min_free * 1.1) + MIB
        for abandoned in self._repairs:  # re-encoding a journal writes up to two copies
            need += 2 * abandoned.durable_size
        return need

    def _retry_storage(self, force: bool = False) -> None:
        """Due (backoff) or as soon as space is back: make the spool writable and resume."""
        fault = self.storage
        assert fault is not None
        free = free_bytes(self.spool.root)
        need = self._space_needed()
        if free is not None and free < need:
            fault.error = _low_space(free, need)
            fault.next_try = 0.0  # try as soon as there is room; the backoff does not grow
            return
        if is_read_only(self.spool.root):
            fault.error = "the file system is mounted read-only"
            fault.next_try = 0.0
            return
        if not force and time.monotonic() < fault.next_try:
            return
        try:
            self.spool.make_dirs()  # the spool folder may have been removed
            self._repair()
            self.session.writer  # noqa: B018 - opens the next chunk (header, flushed)
        except OSError as exc:
            self._storage_failed(exc)
            return
        t = self._now_t()
        gap: Record = {
            "k": K_GAP,
            "t": t,
            "cause": fault.cause,
            "dropped": fault.not_recorded,
            "since": fault.since_t,
        }
        if fault.errno:
            gap["errno"] = fault.errno
        self.storage = None
        self.gates.storage = None
        self._rotate_now = False  # the chunk just opened has the current screens
        self._append(gap)
        self._update_blocked(t)  # resume record, the focused window again
        log.warning(
            "the spool can be written again: capture resumed (%d input event(s) not recorded)",
            fault.not_recorded,
        )
        self._flush()  # a new failure starts a new fault (and, later, a new gap)

    def _repair(self) -> None:
        """Seal journals left by a write failure (and by a crash, if start-up could not).

        A journal that cannot be sealed yet stays listed (retried every
        ``REPAIR_EVERY_S``); it does not keep capture from resuming.
        """
        self._next_repair = time.monotonic() + REPAIR_EVERY_S
        while self._repairs:
            abandoned = self._repairs[0]
            try:
                manifest, removed = self.spool.repair(self.session_id, abandoned)
            except OSError as exc:
                log.warning("cannot seal %s yet: %s", abandoned.part_path, exc)
                break
            self._repairs.pop(0)
            self.session.repaired(abandoned, manifest, removed)
            if manifest is not None:
                self._sealed(manifest)
        for manifest in self.spool.recover_pending():
            self._sealed(manifest)

    def _sealed(self, manifest: Manifest) -> None:
        for callback in self.on_sealed:
            try:
                callback(manifest)
            except Exception:
                log.exception("on_sealed callback failed")

    def _apply_retention(self) -> None:
        """Delete sealed chunks older than policy's retention; record each loss as a gap."""
        self._next_retention = time.monotonic() + 3600
        t = self._now_t()
        for sealed in self.spool.expired_chunks():
            if sealed.session == self.session_id:
                continue
            try:
                lost = sum(sealed.manifest().events.values())
            except Exception:
                lost = None
            self.spool.delete_chunk(sealed)
            log.warning("retention: deleted %s/%06d", sealed.session, sealed.seq)
            rec: Record = {
                "k": K_GAP,
                "t": t,
                "cause": "retention",
                "chunk": f"{sealed.session}/{sealed.seq:06d}",
            }
            if lost is not None:
                rec["dropped"] = lost
            self._append(rec)

    def _check_quota(self) -> None:
        spool = self.spool
        used = spool.usage_bytes()
        quota = spool.quota_bytes
        if used < quota:
            if self.gates.quota_blocked and used < quota * 0.9:
                self.gates.quota_blocked = False
            return
        t = self._now_t()
        if spool.cfg.on_full == "drop_oldest":
            while used >= quota:
                dropped = spool.drop_oldest_sealed(keep_session=self.session_id)
                if dropped is None:
                    break
                lost = sum(dropped.events.values())
                self._append(
                    {
                        "k": K_GAP,
                        "t": t,
                        "cause": "quota_drop",
                        "dropped": lost,
                        "chunk": f"{dropped.session}/{dropped.seq:06d}",
                    }
                )
                used = spool.usage_bytes(max_age=0)
            if used < quota:
                return
        self.gates.quota_blocked = True

    def _check_drops(self, t: int) -> None:
        dropped = self.queue.dropped
        if dropped != self._seen_dropped:
            delta = dropped - self._seen_dropped
            self._seen_dropped = dropped
            self.moves.before_discrete(self._out)
            self._append({"k": K_GAP, "t": t, "cause": "queue_full", "dropped": delta})

    def _update_blocked(self, t: int) -> None:
        reason = self.gates.blocked_reason()
        if reason == self._blocked:
            return
        self.moves.before_discrete(self._out)
        self.moves.drop_pending()
        # keys typed while blocked are unseen: the text ends here, unknown text is dropped
        self._flush_text(t, close=True)
        if reason is None:  # keys and clicks went unseen: the focus may have moved
            self.key_filter.field.reset(self._window)
        if self._blocked is not None:
            self._append({"k": K_RESUME, "t": t, "src": self._blocked})
        if reason is not None:
            self._append({"k": K_PAUSE, "t": t, "src": reason})
        previous, self._blocked = self._blocked, reason
        if reason is None and previous is not None and self._window_known:
            self._write_window(t)

    # -- one raw event ---------------------------------------------------------------
    def _append(self, record: Record) -> None:
        self._out.append(record)
        kind = record["k"]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.observers:
            for observer in self.observers:
                try:
                    observer(record)
                except Exception:
                    log.exception("pipeline observer failed")

    # One handler per raw event kind: ``(raw, t)`` with ``t`` the stamped session time.
    def _on_move(self, raw: Raw, t: int) -> None:
        if self._want_mouse and self._blocked is None and self._excluded is None:
            self.moves.move(t, raw[2], raw[3], self._out)
            self.last_move_ns = raw[1]  # moves reach no observer: read by pre-action frames

    def _on_key(self, raw: Raw, t: int) -> None:
        fields = self.redactor.key(raw[2], raw[3], raw[4], raw[5])
        if fields is None or not self._want_keys or self._recording_blocked():
            return
        record: Record = {"k": K_KEY_DOWN if raw[2] else K_KEY_UP, "t": t}
        record.update(fields)
        self.moves.before_discrete(self._out)
        for filtered in self.key_filter.key(record, self._window, raw[1]):
            self._append(filtered)

    def _on_button(self, raw: Raw, t: int) -> None:
        pressed = raw[5]
        if pressed:  # a click may move the focus: the text so far belongs to the old field
            self.moves.before_discrete(self._out)
            for text in self.key_filter.moved(t, self._window):
                self._append(text)
        if not self._want_mouse or self._recording_blocked():
            return
        self.moves.before_discrete(self._out)
        self._append(
            {"k": K_BUTTON_DOWN if pressed else K_BUTTON_UP, "t": t, "x": raw[2], "y": raw[3],
             "b": raw[4]}
        )  # fmt: skip
        self.moves.after_pointer_event()
        if pressed and self._want_elements:
            assert self.a11y is not None
            self.a11y.lookup(raw[2], raw[3], self._window, t)

    def _on_scroll(self, raw: Raw, t: int) -> None:
        if not self._want_mouse or self._recording_blocked():
            return
        self.moves.before_discrete(self._out)
        self._append({"k": K_SCROLL, "t": t, "x": raw[2], "y": raw[3], "dx": raw[4], "dy": raw[5]})
        self.moves.after_pointer_event()

    def _on_focus(self, raw: Raw, t: int) -> None:
        self._flush_text(t)
        self._window = raw[2]
        self.key_filter.field.reset(self._window)  # unknown until the new field is known
        self._window_known = True
        self._excluded = self.gates.window_rule(self._window)
        if self._blocked is None:
            self._write_window(t)

    def _on_title(self, raw: Raw, t: int) -> None:
        win = self._window
        if win is None or win.id != raw[2] or win.title == raw[3]:
            return
        self._window = dataclasses.replace(win, title=raw[3])
        was = self._excluded
        self._excluded = self.gates.window_rule(self._window)
        if self._blocked is not None:
            return
        if self._excluded is None and was is None:
            if self._want_window:
                self.moves.before_discrete(self._out)
                self._append(
                    {"k": K_TITLE, "t": t, "id": win.id, "title": self.scrub_title(raw[3])}
                )
        elif self._excluded != was:
            self._write_window(t)

    def _on_session(self, raw: Raw, t: int) -> None:
        if raw[2] is not None:
            self.gates.locked = bool(raw[2])
        if raw[3] is not None:
            self.gates.inactive = not raw[3]
        self._update_blocked(t)

    def _on_shot(self, raw: Raw, t: int) -> None:
        shot: ShotInfo = raw[2]
        if not self._want_shots or self._recording_blocked():
            return
        self.moves.before_discrete(self._out)
        rec: Record = {
            "k": K_SHOT,
            "t": t,
            "sha256": shot.sha256,
            "fmt": shot.fmt,
            "w": shot.width,
            "h": shot.height,
            "mon": list(shot.monitor),
            "reason": shot.reason,
        }
        if shot.window_id is not None:
            rec["win"] = shot.window_id
        if shot.act is not None:
            rec["act"] = shot.act
            rec["age"] = shot.age
        self._append(rec)

    def _on_control(self, raw: Raw, t: int) -> None:
        self._control(t, raw[2], raw[3])

    def _on_mark(self, raw: Raw, t: int) -> None:
        self.moves.before_discrete(self._out)
        mark: Record = {"k": raw[2], "t": t}
        mark.update(raw[3])
        self._append(mark)

    def _on_element(self, raw: Raw, t: int) -> None:
        """An element the accessibility monitor found: written only for the focused,
        recorded window (it may have changed or been excluded since the lookup)."""
        win = self._window
        if not self._want_elements or self._recording_blocked() or win is None:
            return
        if win.id != raw[2]:
            return
        el: Element = raw[5]
        self.moves.before_discrete(self._out)
        rec: Record = {"k": K_ELEMENT, "t": t, "src": raw[3], "win": win.id}
        if raw[4] is not None:
            rec["act"] = raw[4]
        rec["role"] = el.role
        if el.name and not el.password:  # a password field's label stays out, too
            rec["name"] = self.scrub_title(el.name[:ELEMENT_NAME_MAX])
        if el.rect is not None:
            rec["rect"] = list(el.rect)
        if el.path:
            rec["path"] = list(el.path[-ELEMENT_PATH_MAX:])
        self._append(rec)

    def _on_unknown(self, raw: Raw, t: int) -> None:
        log.debug("ignoring unknown raw event tag %r", raw[0])

    def _recording_blocked(self) -> bool:
        return self._blocked is not None or self._excluded is not None

    def _flush_text(self, t: int, close: bool = False) -> None:
        """Write out buffered full-mode text (scrubbed) before a context change; ``close``:
        also what waits for its field's answer (unknown then)."""
        if self.key_filter.pending:
            self.moves.before_discrete(self._out)
            texts = self.key_filter.close(t) if close else self.key_filter.flush(t)
            for text in texts:
                self._append(text)

    def _write_window(self, t: int) -> None:
        self._flush_text(t)
        self.moves.before_discrete(self._out)
        self.moves.drop_pending()
        if self._excluded is not None:
            self._append({"k": K_EXCLUDED, "t": t, "rule": self._excluded})
            return
        if not self._want_window:
            return
        win = self._window
        if win is None:
            self._append({"k": K_FOCUS, "t": t, "win": None})
            return
        rec = win.as_record()
        if "title" in rec:
            rec["title"] = self.scrub_title(rec["title"])
        self._append({"k": K_FOCUS, "t": t, "win": rec})

    def _control(self, t: int, command: str, arg: Any) -> None:
        if command == "pause":
            self.gates.paused_until = arg
        elif command == "resume":
            self.gates.resume()
        elif command == "consent":
            self.gates.consent_ok = bool(arg)
        elif command == "flush":
            self._flush_now.set()
        elif command == "screens":
            # monitors added, removed or resized: say so, and start a new chunk so that
            # every chunk's header holds the geometry of all its records
            self.moves.before_discrete(self._out)
            self._append({"k": K_SCREEN, "t": t, "screen": [list(m) for m in arg]})
            self._rotate_now = True
            self._flush_now.set()
        self._update_blocked(t)

    # -- status -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "session": self.session_id,
            "recording": self._blocked is None and self._excluded is None,
            "blocked": self._blocked,
            "excluded": self._excluded,
            "queue": len(self.queue),
            "queue_max": self.queue.maxsize,
            "dropped": self.queue.dropped,
            "records_written": self.written_records,
            "chunks_sealed": len(self.session.sealed),
            **{f"gate_{k}": v for k, v in self.gates.status().items()},
            "storage": self.storage_status(),
        }

    def storage_status(self) -> dict[str, Any]:
        """``ok``, the disk's free space and policy's floor; while faulty, what and why."""
        fault = self.storage  # read once: the pipeline thread replaces it
        free = free_bytes(self.spool.root)
        out: dict[str, Any] = {
            "ok": fault is None,
            "free_mb": None if free is None else round(free / MIB, 1),
            "min_free_mb": self.policy.spool.min_free_mb,
            "unsealed_journals": len(self._repairs) + len(self.spool.unrecovered),
        }
        if fault is not None:
            out.update(fault.status(time.monotonic()))
        return out


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _low_space(free: int, need: int) -> str:
    return f"{free / MIB:.1f} MiB free on the spool's disk, {need / MIB:.1f} MiB needed"
