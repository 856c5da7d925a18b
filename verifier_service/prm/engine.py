"""The batcher: jobs of concurrent callers -> length-sorted forward passes in the PRM process.

One thread, in the server process. Callers' jobs wait in a bounded queue; when the process
is free, the thread waits up to `max_wait_s` for more callers (unless the queue already fills a
pass), takes everything queued, sorts it by length and cuts it into passes of at most
`batch_tokens` padded tokens (batching.py). A candidates job (K continuations of one shared
prefix) is a pass of its own. Each job's future resolves to a `Scored`.

Faults stay with the jobs they hit (issue 5):
  * every job has a deadline (arrival + timeout_s): a job still queued past it is answered
    "timeout" without running; a pass that outlives the last deadline of its jobs gets its
    process killed, its jobs "timeout", and a fresh process;
  * a process that dies under a pass (kill -9, OOM killer, segfault) fails that pass's jobs
    with "internal_error" and the reason, and is restarted at once; queued jobs wait for it
    and never see the crash;
  * an exception of the forward pass (e.g. CUDA out of memory) fails that pass only.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import QueueFull, ServiceClosed
from .batching import plan_batches
from .process import PRMDied, PRMFailed, PRMHung, PRMProcess, PRMStartError

__all__ = ["PRMEngine", "Job", "Scored"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """op "rows": payload (ids, tag_positions, spans) of one chain -> list of step scores.
    op "candidates": payload (prefix_ids, suffix ids per candidate, tag position in each suffix, the
    candidate's span in each suffix, the prefix's spans) -> one score per candidate. Spans are
    tasks.prm_format.render_spans's; a step_likelihood PRM reads them, the other kinds do not."""

    op: str
    payload: tuple
    tokens: int   # length of the row (rows), or padded tokens of the whole job (candidates)


@dataclass(frozen=True)
class Scored:
    status: str           # "ok", "timeout", "internal_error", "unavailable"
    value: Any = None     # the job's scores when ok
    reason: str = ""
    elapsed_ms: float = 0.0


@dataclass
class _Entry:
    job: Job
    future: Future
    submitted: float
    deadline: float


class PRMEngine:
    def __init__(self, process: PRMProcess, *, batch_tokens: int, max_wait_s: float, timeout_s: float,
                 capacity: int) -> None:
        self.process = process
        self.batch_tokens = batch_tokens
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.capacity = capacity
        self.restarts = 0
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._queue: collections.deque[_Entry] = collections.deque()
        self._queued_tokens = 0
        self._running = 0
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="verirl-prm-batcher", daemon=True)

    def start(self) -> dict[str, Any]:
        """Load the model (PRMStartError if it cannot) and start batching."""
        info = self.process.start()
        self._thread.start()
        return info

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def stats(self) -> tuple[int, int]:
        """(queued, running) jobs."""
        with self._lock:
            return len(self._queue), self._running

    def submit_many(self, jobs: Sequence[Job], *, wait_s: float = 0.0) -> list[Future]:
        """Queue every job or none: QueueFull if they do not fit within `wait_s` seconds."""
        with self._lock:
            fits = lambda: self._closing or len(self._queue) + len(jobs) <= self.capacity  # noqa: E731
            if not fits() and (len(jobs) > self.capacity or wait_s <= 0
                               or not self._room.wait_for(fits, timeout=wait_s)):
                raise QueueFull(self.capacity, len(self._queue), len(jobs))
            if self._closing:
                raise ServiceClosed("PRM batcher")
            now = time.monotonic()
            entries = [_Entry(job, Future(), now, now + self.timeout_s) for job in jobs]
            self._queue.extend(entries)
            self._queued_tokens += sum(job.tokens for job in jobs)
            self._work.notify()
        return [entry.future for entry in entries]

    def close(self, grace_s: float) -> None:
        """Take no new jobs; the pass in progress may finish within `grace_s` (then the process is
        killed and its jobs fail); jobs not yet run are answered "unavailable"."""
        with self._lock:
            self._closing = True
            self._work.notify_all()
            self._room.notify_all()
        if self._thread.is_alive():
            self._thread.join(grace_s)
            if self._thread.is_alive():
                self.process.kill()
                self._thread.join()
        self.process.stop()

    # ------------------------------------------------------------ the batcher thread

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._work.wait_for(lambda: self._queue or self._closing)
                if not self._closing and self.max_wait_s > 0:  # let concurrent callers join this round
                    self._work.wait_for(lambda: self._closing or self._queued_tokens >= self.batch_tokens,
                                        timeout=self.max_wait_s)
                taken = list(self._queue)
                self._queue.clear()
                self._queued_tokens = 0
                self._room.notify_all()
                closing = self._closing
            live = [e for e in taken if e.future.set_running_or_notify_cancel()]  # skip callers that left
            if closing:
                self._answer(live, Scored("unavailable", reason="the server shut down before this item ran"))
                return
            rows = [e for e in live if e.job.op == "rows"]
            passes = [[rows[i] for i in batch] for batch in plan_batches([e.job.tokens for e in rows],
                                                                           self.batch_tokens)]
            passes += [[e] for e in live if e.job.op == "candidates"]
            for i, batch in enumerate(passes):
                if self._closing:
                    left = [e for later in passes[i:] for e in later]
                    self._answer(left, Scored("unavailable", reason="the server shut down before this item ran"))
                    return
                try:
                    self._run(batch)
                except Exception as exc:  # the thread's boundary: a bug fails its pass, not every later call
                    log.exception("PRM batcher failed on a pass")
                    self._answer([e for e in batch if not e.future.done()],
                                 Scored("internal_error", reason=f"PRM batcher error: {type(exc).__name__}: {exc}"))

    def _run(self, batch: list[_Entry]) -> None:
        now = time.monotonic()
        late = [e for e in batch if e.deadline <= now]
        self._answer(late, Scored("timeout", reason=f"not scored within the PRM deadline ({self.timeout_s:g} s); "
                                                     "the PRM is overloaded"))
        batch = [e for e in batch if e.deadline > now]
        if not batch:
            return
        if not self.process.alive() and not self._restart("it was found dead"):
            self._answer(batch, Scored("internal_error", reason="the PRM process is down and could not restart"))
            return
        if batch[0].job.op == "rows":
            op, payload = "rows", tuple([e.job.payload[part] for e in batch] for part in range(3))
        else:
            op, payload = "candidates", batch[0].job.payload
        with self._lock:
            self._running = len(batch)
        try:
            result = self.process.call(op, payload, deadline=max(e.deadline for e in batch))
        except PRMDied as exc:
            self._answer(batch, Scored("internal_error", reason=f"{exc}; the process was restarted"))
            self._restart(str(exc))
            return
        except PRMHung as exc:
            self._answer(batch, Scored("timeout", reason=f"{exc} (PRM deadline {self.timeout_s:g} s) and restarted"))
            self._restart(str(exc))
            return
        except PRMFailed as exc:
            self._answer(batch, Scored("internal_error", reason=f"the PRM raised {exc}"))
            return
        finally:
            with self._lock:
                self._running = 0
        values = result if op == "rows" else [result]
        done = time.monotonic()
        for entry, value in zip(batch, values):
            entry.future.set_result(Scored("ok", value, elapsed_ms=(done - entry.submitted) * 1e3))

    def _restart(self, why: str) -> bool:
        if self._closing:  # close() killed it: no new process
            return False
        log.error("PRM process restarting: %s", why)
        self.process.kill()
        try:
            self.process.start()
        except PRMStartError as exc:
            log.error("PRM process could not restart: %s", exc)
            return False
        self.restarts += 1
        return True

    @staticmethod
    def _answer(entries: list[_Entry], scored: Scored) -> None:
        now = time.monotonic()
        for entry in entries:
            entry.future.set_result(Scored(scored.status, None, scored.reason, (now - entry.submitted) * 1e3))
