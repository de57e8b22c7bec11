"""The chunk PUT pipeline: a few validator threads and one committer thread.

A PUT's body is handed over once, from the event loop, and its answer comes
back in a batch. Between the two:

* a **validator** thread checks the digest, looks for an earlier copy of the
  chunk, decompresses and checks the body (bounded), writes it to a temp file,
  fsyncs it and renames it into place;
* the **committer** thread takes every chunk that is ready, fsyncs their
  folders and commits all their index rows in one transaction (one WAL fsync),
  then tells each waiting event loop once for the whole batch.

Nobody is answered before their file and folder are fsynced and their row is
committed: the durability of one PUT at a fraction of the fsyncs. Hashing,
zstd and the file system calls release the GIL, so the threads use several
cores; keeping them few keeps the hand-offs of the GIL (each a context
switch) few, which measurably mattered more here than anything else
(docs/performance.md).

Two PUTs of the same chunk never run at the same time: the second waits
until the first is answered, then finds its row (same digest: 200, another
digest: 409) instead of racing it to the rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time

from .base import Body, ChunkSink, Job, Notify, PutResult, Rejected

__all__ = ["Ingest", "Job"]

_STOP = object()


class Ingest:
    def __init__(self, store: ChunkSink, validators: int = 3, linger_s: float = 0.0) -> None:
        self.store = store
        self.batches = 0
        # fleet: a commit is a database round trip or more, so while validators are still
        # busy the committer waits up to this long for their jobs to join the batch
        self.linger_s = linger_s
        self._busy = 0  # jobs a validator is working on (read without the lock: a hint)
        self._todo: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._ready: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, int], Job] = {}
        self._loop_notify: tuple[asyncio.AbstractEventLoop, Notify] | None = None
        self._threads = [
            threading.Thread(target=self._validate_loop, name=f"chunk-validator-{n}", daemon=True)
            for n in range(max(1, validators))
        ]
        self._threads.append(
            threading.Thread(target=self._commit_loop, name="chunk-committer", daemon=True)
        )
        for thread in self._threads:
            thread.start()

    # -- submitting ------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue ``job``; ``job.notify`` is called (from a pipeline thread) when it is done."""
        key = (job.session, job.seq)
        with self._lock:
            first = self._inflight.get(key)
            if first is not None:
                first.waiters.append(job)  # runs when the first is answered
                return
            self._inflight[key] = job
        self._todo.put(job)

    def put(
        self,
        device: str,
        session: str,
        seq: int,
        claimed: str,
        body: Body,
        *,
        user: str = "",
        machine: str = "",
    ) -> PutResult:
        """Store one chunk and wait for the answer (for callers without an event loop)."""
        done = threading.Event()
        job = Job(device, session, seq, claimed, body, lambda _jobs: done.set(), user, machine)
        self.submit(job)
        done.wait()
        return job.outcome()

    async def put_async(
        self,
        device: str,
        session: str,
        seq: int,
        claimed: str,
        body: Body,
        *,
        user: str = "",
        machine: str = "",
        backlog: tuple[int, int] | None = None,
    ) -> PutResult:
        """Store one chunk from an event loop; the loop is woken once per batch."""
        loop = asyncio.get_running_loop()
        job = Job(device, session, seq, claimed, body, self._notifier(loop), user, machine)
        job.backlog = backlog
        job.future = loop.create_future()
        self.submit(job)
        # a cancelled request (client gone) still finishes storing in the background
        await asyncio.shield(job.future)
        return job.outcome()

    def _notifier(self, loop: asyncio.AbstractEventLoop) -> Notify:
        """One notifier per loop, so that a batch wakes each loop once."""
        cached = self._loop_notify
        if cached is not None and cached[0] is loop:
            return cached[1]

        def resolve(jobs: list[Job]) -> None:
            for job in jobs:
                if job.future is not None and not job.future.done():
                    job.future.set_result(None)

        def notify(jobs: list[Job]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(resolve, jobs)

        self._loop_notify = (loop, notify)
        return notify

    def close(self) -> None:
        for _ in self._threads[:-1]:
            self._todo.put(_STOP)
        for thread in self._threads[:-1]:
            thread.join(5)
        self._ready.put(_STOP)
        self._threads[-1].join(5)

    # -- the threads -----------------------------------------------------------------
    def _validate_loop(self) -> None:
        while (job := self._todo.get()) is not _STOP:
            assert isinstance(job, Job)
            with self._lock:
                self._busy += 1
            try:
                done = self.store.prepare_chunk(job)
            except BaseException as exc:  # every failure is the PUT's answer
                job.error = exc
                done = True
            if done:
                self._finish([job])
            else:
                self._ready.put(job)
            with self._lock:
                self._busy -= 1

    def _linger(self, batch: list[Job]) -> None:
        """Wait up to ``linger_s`` for the jobs validators are finishing to join ``batch``."""
        deadline = time.monotonic() + self.linger_s
        while self._busy > 0 and len(batch) < 256:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                more = self._ready.get(timeout=remaining)
            except queue.Empty:
                return
            if more is _STOP:
                self._ready.put(_STOP)
                return
            batch.append(more)  # type: ignore[arg-type]

    def _commit_loop(self) -> None:
        while (first := self._ready.get()) is not _STOP:
            batch: list[Job] = [first]  # type: ignore[list-item]
            with contextlib.suppress(queue.Empty):
                while True:
                    more = self._ready.get_nowait()
                    if more is _STOP:
                        self._ready.put(_STOP)
                        break
                    batch.append(more)  # type: ignore[arg-type]
            if self.linger_s > 0:
                self._linger(batch)
            try:
                self.store.commit_chunks(batch)
            except self.store.index_errors as exc:
                error = Rejected(503, f"index error: {exc}")
                for job in batch:
                    job.error = error
            except BaseException as exc:  # every failure is the PUT's answer
                for job in batch:
                    job.error = exc
            self.batches += 1
            self._finish(batch)

    def _finish(self, jobs: list[Job]) -> None:
        """Answer ``jobs`` (one call per notifier) and start the PUTs that waited on them."""
        for job in jobs:
            job.body.discard()
        follow: list[Job] = []
        with self._lock:
            for job in jobs:
                key = (job.session, job.seq)
                if job.waiters:
                    nxt, rest = job.waiters[0], job.waiters[1:]
                    nxt.waiters.extend(rest)
                    self._inflight[key] = nxt
                    follow.append(nxt)
                else:
                    del self._inflight[key]
        by_notify: dict[Notify, list[Job]] = {}
        for job in jobs:
            by_notify.setdefault(job.notify, []).append(job)
        for notify, group in by_notify.items():
            notify(group)
        for job in follow:
            self._todo.put(job)
