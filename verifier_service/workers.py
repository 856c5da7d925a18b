"""A process pool whose deadlines are enforced by killing the worker.

Why: a sympy simplification or a big-integer power cannot be interrupted from another
thread, and `signal.alarm` works only on the main thread of the main interpreter (which
is never where a gRPC server runs a check). So every check runs in a worker process, and
a check that outlives its deadline ends with SIGKILL of that process.

How: N slots, each one thread in this process + one worker process + one pipe. A slot
takes the next job from a shared bounded queue, sends `(fn, args)` down its pipe and
waits on the pipe until the job's deadline (a select, no timer). On expiry it SIGKILLs
the worker, answers TIMEOUT at once, then starts a replacement; only that slot waits for
it, the others keep dispatching. A worker that dies mid-job (EOF on the pipe) answers
WORKER_DIED and is replaced the same way. Workers are forked from the multiprocessing
forkserver (which preloads sympy once), never from this multi-threaded process.

The pool is generic: a job names an importable function ("package.module:function") and
picklable arguments, so the math checker, the PRM and others share it. Results of OK
jobs can be cached by content (cache.py). Not handled here: memory limits of workers
(a runaway allocation is stopped by the deadline, or by the OS).

Caveat of the forkserver (as of spawn): it imports the program's main module once, so a
script that starts a pool needs the `if __name__ == "__main__":` guard, and heavy imports
at the top of that script are paid by the forkserver and slow every fork (a replacement
worker takes ~10 ms under `verirl serve`, ~50 ms when the main module imports grpc).
"""

from __future__ import annotations

import atexit
import collections
import enum
import logging
import multiprocessing
import pickle
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Hashable, Sequence

from .cache import MISS, ResultCache
from .errors import QueueFull, ServiceClosed, WorkerStartError
from .worker_process import REASON_MAX, worker_main

__all__ = ["Job", "Outcome", "OutcomeStatus", "PoolStats", "WorkerPool", "MATH_PRELOAD", "MATH_WARMUP"]

log = logging.getLogger(__name__)

MATH_PRELOAD = ("__main__", "sympy", "verifier_service.math", "verifier_service.worker_process")
MATH_WARMUP = (("verifier_service.math:check", ("1/2", "\\boxed{0.5}")),)


class OutcomeStatus(str, enum.Enum):
    OK = "OK"                    # the function returned; `value` is its result
    TIMEOUT = "TIMEOUT"          # the deadline passed; the worker was killed
    WORKER_DIED = "WORKER_DIED"  # the worker process ended during the job (crash, kill -9)
    FAILED = "FAILED"            # the function raised; `reason` says what
    SHUTDOWN = "SHUTDOWN"        # the pool closed before the job could finish


@dataclass(frozen=True)
class Job:
    fn: str                       # "package.module:function", imported in the worker
    args: tuple = ()              # picklable
    timeout_s: float = 5.0        # from the moment a worker takes the job
    cache_key: Hashable | None = None  # content key (cache.content_key); None: never cached
    cacheable: Callable[[Any], bool] | None = None  # runs in this process; None: every OK value


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    value: Any = None
    reason: str = ""
    elapsed_ms: float = 0.0       # from submit to result, queue wait included
    cached: bool = False


@dataclass(frozen=True)
class PoolStats:
    workers: int
    queued: int
    in_flight: int
    completed: int
    timeouts: int
    worker_deaths: int
    restarts: int                 # replacements after a timeout, death, or recycling
    cache_hits: int
    cache_misses: int


@dataclass
class _Entry:
    job: Job
    future: Future
    submitted: float


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.jobs = 0             # jobs run by the current worker (for recycling)


class WorkerPool:
    """`size` worker processes behind a bounded queue. Thread-safe; use as a context manager."""

    def __init__(
        self,
        size: int,
        *,
        queue_capacity: int = 1024,
        cache_size: int = 0,
        preload: Sequence[str] = MATH_PRELOAD,
        warmup: Sequence[tuple[str, tuple]] = MATH_WARMUP,
        recycle_after: int = 0,
        start_timeout_s: float = 60.0,
    ) -> None:
        if size < 1 or queue_capacity < 1:
            raise ValueError(f"size and queue_capacity must be >= 1, got {size} and {queue_capacity}")
        self.size = size
        self.queue_capacity = queue_capacity
        self._warmup = tuple(warmup)
        self._recycle_after = recycle_after
        self._start_timeout_s = start_timeout_s
        self._cache = ResultCache(cache_size) if cache_size > 0 else None
        # The forkserver is one per process and reads its preload list when it first starts.
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(list(preload))
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)   # a job was queued, or stopping
        self._room = threading.Condition(self._lock)   # a job left the queue
        self._idle = threading.Condition(self._lock)   # a job finished
        self._queue: collections.deque[_Entry] = collections.deque()
        self._in_flight = 0
        self._closing = False     # no new submissions
        self._stopping = False    # slots exit; workers are killed
        self._counts = collections.Counter[str]()
        self._slots = [_Slot(i) for i in range(size)]
        starting = [(slot, self._start_worker(slot)) for slot in self._slots]
        try:
            for slot, child_end in starting:
                self._await_ready(slot, child_end)
        except WorkerStartError:
            self._kill_all()
            raise
        # Runs before multiprocessing's own exit hook (atexit is LIFO), which would otherwise
        # join workers still blocked on their pipes when a program exits without close().
        atexit.register(self._kill_all)
        self._threads = [threading.Thread(target=self._run_slot, args=(slot,), name=f"verirl-slot-{slot.index}",
                                          daemon=True) for slot in self._slots]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ submitting

    def submit(self, job: Job, *, wait_s: float = 0.0) -> Future:
        return self.submit_many([job], wait_s=wait_s)[0]

    def submit_many(self, jobs: Sequence[Job], *, wait_s: float = 0.0) -> list[Future]:
        """Queue every job or none: raises QueueFull if they do not all fit within `wait_s`
        seconds, ServiceClosed after close(). Cached results come back as done futures and
        take no room. Each future resolves to an Outcome (never an exception); cancelling
        a future whose job has not started yet skips the job."""
        now = time.monotonic()
        futures: list[Future | None] = [None] * len(jobs)
        todo: list[int] = []
        for i, job in enumerate(jobs):
            value = MISS if job.cache_key is None or self._cache is None else self._cache.get(job.cache_key)
            if value is MISS:
                todo.append(i)
            else:
                futures[i] = done = Future()
                done.set_result(Outcome(OutcomeStatus.OK, value, cached=True))
        with self._lock:
            if self._closing:
                raise ServiceClosed()
            if len(self._queue) + len(todo) > self.queue_capacity:
                if len(todo) > self.queue_capacity or wait_s <= 0:
                    raise QueueFull(self.queue_capacity, len(self._queue), len(todo))
                fits = lambda: self._closing or len(self._queue) + len(todo) <= self.queue_capacity  # noqa: E731
                if not self._room.wait_for(fits, timeout=wait_s):
                    raise QueueFull(self.queue_capacity, len(self._queue), len(todo))
                if self._closing:
                    raise ServiceClosed()
            for i in todo:
                futures[i] = future = Future()
                self._queue.append(_Entry(jobs[i], future, now))
            self._work.notify(len(todo))
        return futures  # type: ignore[return-value]

    def run(self, job: Job) -> Outcome:
        """Submit one job and wait for its outcome."""
        return self.submit(job).result()

    # ------------------------------------------------------------------ state

    def stats(self) -> PoolStats:
        with self._lock:
            queued, in_flight, counts = len(self._queue), self._in_flight, dict(self._counts)
        cache = self._cache
        return PoolStats(
            workers=self.size, queued=queued, in_flight=in_flight, completed=counts.get("completed", 0),
            timeouts=counts.get("timeouts", 0), worker_deaths=counts.get("deaths", 0),
            restarts=counts.get("restarts", 0), cache_hits=cache.hits if cache else 0,
            cache_misses=cache.misses if cache else 0)

    def worker_pids(self) -> list[int]:
        return [proc.pid for slot in self._slots if (proc := slot.proc) is not None and proc.pid is not None]

    @property
    def closed(self) -> bool:
        return self._closing

    # ------------------------------------------------------------------ shutdown

    def close(self, grace_s: float = 5.0) -> None:
        """Refuse new work, let queued and running jobs finish for up to `grace_s` seconds,
        answer what is left with SHUTDOWN, kill every worker and wait for them to exit."""
        deadline = time.monotonic() + grace_s
        with self._lock:
            self._closing = True
            self._room.notify_all()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._idle.wait(remaining):
                    break
            leftover = list(self._queue)
            self._queue.clear()
            self._stopping = True
            self._work.notify_all()
        for entry in leftover:
            if entry.future.set_running_or_notify_cancel():
                entry.future.set_result(Outcome(OutcomeStatus.SHUTDOWN, reason="the pool shut down before this job ran"))
        self._kill_all()  # wakes slots still waiting on a running job (EOF on their pipe)
        for thread in self._threads:
            thread.join()
        self._kill_all()  # a slot may have started a replacement meanwhile
        atexit.unregister(self._kill_all)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ workers

    def _start_worker(self, slot: _Slot) -> Connection:
        parent_end, child_end = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker_main, args=(child_end, self._warmup, list(sys.path)),
                                 name=f"verirl-worker-{slot.index}", daemon=True)
        proc.start()
        slot.proc, slot.conn, slot.jobs = proc, parent_end, 0
        return child_end

    def _await_ready(self, slot: _Slot, child_end: Connection) -> None:
        child_end.close()
        assert slot.conn is not None and slot.proc is not None
        try:
            if not slot.conn.poll(self._start_timeout_s):
                raise WorkerStartError(f"worker {slot.proc.pid} not ready after {self._start_timeout_s:g} s")
            ok, detail = slot.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerStartError(f"worker {slot.proc.pid} exited while starting "
                                   f"(exit code {slot.proc.exitcode})") from exc
        if not ok:
            raise WorkerStartError(detail)

    def _replace(self, slot: _Slot) -> None:
        """Kill the slot's worker (if any) and start a fresh one, retrying until it is up."""
        self._kill(slot)
        while not self._stopping:
            try:
                self._await_ready(slot, self._start_worker(slot))
            except (WorkerStartError, OSError) as exc:
                if self._stopping:
                    break
                log.error("worker slot %d could not restart: %s; retrying in 1 s", slot.index, exc)
                self._kill(slot)
                time.sleep(1.0)
                continue
            with self._lock:
                self._counts["restarts"] += 1
            return

    @staticmethod
    def _kill(slot: _Slot) -> None:
        proc, conn = slot.proc, slot.conn
        slot.proc = slot.conn = None
        if proc is not None:
            proc.kill()
            proc.join()
        if conn is not None:
            conn.close()

    def _kill_all(self) -> None:
        for slot in self._slots:
            proc = slot.proc
            if proc is not None:
                proc.kill()
                proc.join()

    # ------------------------------------------------------------------ dispatch

    def _run_slot(self, slot: _Slot) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._stopping:
                        self._work.wait()
                    if self._stopping:
                        return
                    entry = self._queue.popleft()
                    self._room.notify()
                    if not entry.future.set_running_or_notify_cancel():
                        continue
                    self._in_flight += 1
                try:
                    outcome, healthy = self._execute(slot, entry)
                except Exception as exc:  # the boundary: a fault here must not leave a caller waiting
                    log.exception("worker slot %d failed on %s", slot.index, entry.job.fn)
                    outcome, healthy = Outcome(OutcomeStatus.FAILED, reason=f"worker pool fault: {exc}"[:REASON_MAX],
                                               elapsed_ms=(time.monotonic() - entry.submitted) * 1e3), False
                self._finish(entry, outcome)
                if not healthy or (self._recycle_after and slot.jobs >= self._recycle_after):
                    self._replace(slot)
        finally:
            self._kill(slot)

    def _finish(self, entry: _Entry, outcome: Outcome) -> None:
        job = entry.job
        if (outcome.status is OutcomeStatus.OK and job.cache_key is not None and self._cache is not None
                and (job.cacheable is None or job.cacheable(outcome.value))):
            self._cache.put(job.cache_key, outcome.value)
        entry.future.set_result(outcome)
        with self._lock:
            self._in_flight -= 1
            self._counts["completed"] += 1
            self._idle.notify_all()

    def _execute(self, slot: _Slot, entry: _Entry) -> tuple[Outcome, bool]:
        """Run one job on the slot's worker; returns the outcome and whether the worker is
        still usable."""
        job = entry.job

        def done(status: OutcomeStatus, value: Any = None, reason: str = "") -> Outcome:
            return Outcome(status, value, reason, (time.monotonic() - entry.submitted) * 1e3)

        if slot.proc is None or not slot.proc.is_alive():
            self._replace(slot)   # died while idle: not this job's fault
        if slot.conn is None or slot.proc is None:  # the pool is stopping
            return done(OutcomeStatus.SHUTDOWN, reason="the pool shut down before this job ran"), False
        proc, conn = slot.proc, slot.conn
        try:
            conn.send((job.fn, job.args))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            return done(OutcomeStatus.FAILED, reason=f"arguments of {job.fn} cannot be pickled: {exc}"), True
        except OSError:
            pass  # the worker died just now: the recv below sees EOF
        slot.jobs += 1
        try:
            if not conn.poll(job.timeout_s):
                self._kill(slot)
                with self._lock:
                    self._counts["timeouts"] += 1
                return done(OutcomeStatus.TIMEOUT,
                            reason=f"exceeded its deadline of {job.timeout_s:g} s; the worker was killed"), False
            ok, payload = conn.recv()
        except (EOFError, OSError):
            if self._stopping:
                return done(OutcomeStatus.SHUTDOWN, reason="the pool shut down while this job ran"), False
            proc.join(1.0)
            with self._lock:
                self._counts["deaths"] += 1
            log.warning("worker %s died during %s (exit code %s)", proc.pid, job.fn, proc.exitcode)
            return done(OutcomeStatus.WORKER_DIED, reason=f"worker process {proc.pid} died during the check "
                        f"(exit code {proc.exitcode}); it was replaced"), False
        if ok:
            return done(OutcomeStatus.OK, payload), True
        return done(OutcomeStatus.FAILED, reason=payload), True
