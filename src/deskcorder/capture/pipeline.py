"""The pipeline: bounded queue -> gates -> redaction -> move sampling -> batches -> spool.

One named thread owns everything after the queue, so none of the state here
needs locks. Sources (hooks) only call :meth:`EventQueue.put_nowait`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from deskcorder.capture.coalesce import MoveCoalescer
from deskcorder.capture.gates import Gates
from deskcorder.capture.redact import KeyRedactor
from deskcorder.capture.scrub import safe_scrub
from deskcorder.capture.textbuf import KeyFilter, SecureProbe
from deskcorder.events import (
    K_BUTTON_DOWN,
    K_BUTTON_UP,
    K_END,
    K_EXCLUDED,
    K_FOCUS,
    K_GAP,
    K_KEY_DOWN,
    K_KEY_UP,
    K_PAUSE,
    K_RESUME,
    K_SCROLL,
    K_SHOT,
    K_START,
    K_TITLE,
    RAW_BUTTON,
    RAW_CONTROL,
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
)
from deskcorder.policy.model import Policy
from deskcorder.storage.chunk import Manifest
from deskcorder.storage.spool import SessionWriter, Spool

log = logging.getLogger(__name__)

Record = dict[str, Any]


IDLE_TICK_NS = 1_000_000_000  # idle: wake at least this often (pause expiry, schedule)
BUSY_BATCH_S = 0.02  # busy: gather events for this long between drains (<= 50 wakes/s)


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
        clock_ns: Callable[[], int] = time.monotonic_ns,
        keystrokes: str | None = None,
        secure_probe: SecureProbe | None = None,
        secure_poll: SecureProbe | None = None,
    ) -> None:
        self.policy = policy
        self.spool = spool
        self.queue = EventQueue(policy.capture.queue_size)
        self.t0_ns = time.monotonic_ns() if t0_ns is None else t0_ns
        self.session: SessionWriter = spool.open_session(header_factory, session_id)
        self.gates = Gates(policy)
        if policy.notice.require_ack:
            from deskcorder.capture.consent import has_consent

            self.gates.consent_ok = has_consent(spool.root, policy)
        # keystrokes may be lower than policy's (full degrades without a secure-input probe)
        self.keystrokes = keystrokes or policy.capture.keystrokes
        self.redactor = KeyRedactor(self.keystrokes)
        # every key record passes the key filter: it drops characters, buffers and
        # scrubs full-mode text, and applies secure input (see capture/textbuf.py)
        self.key_filter = KeyFilter(
            self.keystrokes, secure_probe=secure_probe, secure_poll=secure_poll
        )
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
        self.written_records = 0
        self.fatal: BaseException | None = None
        self._want_mouse = policy.capture.mouse
        self._want_keys = policy.capture.keyboard and self.keystrokes != "off"
        self._want_window = policy.capture.window
        self._want_shots = policy.capture.screenshots

    # -- lifecycle --------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return self.session.session_id

    def start(self) -> None:
        self._append({"k": K_START, "t": 0, "reason": "start"})
        self._apply_retention()
        self._blocked = self.gates.blocked_reason()
        if self._blocked:
            self._append({"k": K_PAUSE, "t": 0, "src": self._blocked})
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
            process = self._process
            while q and n < 65536:
                process(q.popleft())
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
        for text in self.key_filter.flush(t):
            self._append(text)
        self._append({"k": K_END, "t": t, "reason": getattr(self, "_end_reason", "stop")})
        self._flush()
        manifest = self.session.seal()
        if manifest is not None:
            self._sealed(manifest)

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
        self._check_drops(t)
        self._update_blocked(t)
        self.moves.tick(t, self._out)
        if self.key_filter.buf is not None:
            texts = self.key_filter.tick(t)
            if texts:
                self.moves.before_discrete(self._out)
                for text in texts:
                    self._append(text)

    def _flush(self) -> None:
        self.moves.close_batch(self._out)
        if self._out:
            out, self._out = self._out, []
            self.session.write_many(out)
            self.written_records += len(out)
            self._dirty = True
        if self._dirty:
            self.session.flush()
            self._dirty = False

    def _maybe_rotate_and_quota(self) -> None:
        if time.monotonic() >= self._next_retention:
            self._apply_retention()
        if self.session.needs_rotation():
            manifest = self.session.seal()
            if manifest is not None:
                self._sealed(manifest)
        self._check_quota()

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
        self._flush_text(t)  # keys typed while blocked are unseen: the buffer ends here
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

    def _process(self, raw: tuple[Any, ...]) -> None:
        tag = raw[0]
        t = self._stamp(raw[1])
        if tag == RAW_MOVE:
            if self._want_mouse and self._blocked is None and self._excluded is None:
                self.moves.move(t, raw[2], raw[3], self._out)
            return
        if tag == RAW_KEY:
            fields = self.redactor.key(raw[2], raw[3], raw[4], raw[5])
            if fields is None or not self._want_keys or self._recording_blocked():
                return
            record: Record = {"k": K_KEY_DOWN if raw[2] else K_KEY_UP, "t": t}
            record.update(fields)
            self.moves.before_discrete(self._out)
            for filtered in self.key_filter.key(record, self._window):
                self._append(filtered)
            return
        if tag == RAW_BUTTON:
            if not self._want_mouse or self._recording_blocked():
                return
            self.moves.before_discrete(self._out)
            self._append(
                {
                    "k": K_BUTTON_DOWN if raw[5] else K_BUTTON_UP,
                    "t": t,
                    "x": raw[2],
                    "y": raw[3],
                    "b": raw[4],
                }
            )
            self.moves.after_pointer_event()
            return
        if tag == RAW_SCROLL:
            if not self._want_mouse or self._recording_blocked():
                return
            self.moves.before_discrete(self._out)
            self._append(
                {"k": K_SCROLL, "t": t, "x": raw[2], "y": raw[3], "dx": raw[4], "dy": raw[5]}
            )
            self.moves.after_pointer_event()
            return
        if tag == RAW_FOCUS:
            self._flush_text(t)
            self._window = raw[2]
            self._window_known = True
            self._excluded = self.gates.window_rule(self._window)
            if self._blocked is None:
                self._write_window(t)
            return
        if tag == RAW_TITLE:
            win = self._window
            if win is None or win.id != raw[2] or win.title == raw[3]:
                return
            self._window = WindowInfo(
                id=win.id,
                title=raw[3],
                app=win.app,
                pid=win.pid,
                process=win.process,
                exe=win.exe,
                x=win.x,
                y=win.y,
                width=win.width,
                height=win.height,
            )
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
            return
        if tag == RAW_SESSION:
            if raw[2] is not None:
                self.gates.locked = bool(raw[2])
            if raw[3] is not None:
                self.gates.inactive = not raw[3]
            self._update_blocked(t)
            return
        if tag == RAW_SHOT:
            shot: ShotInfo = raw[2]
            if self._want_shots and not self._recording_blocked():
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
                self._append(rec)
            return
        if tag == RAW_CONTROL:
            self._control(t, raw[2], raw[3])
            return
        if tag == RAW_MARK:
            self.moves.before_discrete(self._out)
            mark: Record = {"k": raw[2], "t": t}
            mark.update(raw[3])
            self._append(mark)
            return
        log.debug("ignoring unknown raw event tag %r", tag)

    def _recording_blocked(self) -> bool:
        return self._blocked is not None or self._excluded is not None

    def _flush_text(self, t: int) -> None:
        """Write out buffered full-mode text (scrubbed) before a context change."""
        if self.key_filter.buf is not None:
            self.moves.before_discrete(self._out)
            for text in self.key_filter.flush(t):
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
        }
