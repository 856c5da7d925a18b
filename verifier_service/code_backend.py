"""The code kind of the service: CodeItem -> sandbox run (code/runner.py) -> CodeResult.

Why a queue of our own and not the math WorkerPool: the sandbox already runs every program in
a killable, isolated process tree with its own deadlines, and `CodeRunner.run` blocks a thread
until the verdict is in. What the service adds is a bounded wait in front of it: `threads`
threads (a small multiple of the runner's slots, so a slot never idles while its next item is
being extracted or its verdict assembled) take items from a queue of `queue_capacity` items.
A full queue is back-pressure (QueueFull -> RESOURCE_EXHAUSTED), as for math; an item whose
caller went away is skipped if it has not started (its future is cancelled by the servicer).

Code results are not cached: a verdict can depend on timing (TIMEOUT near the limit), and a
trainer rarely sends the same program twice.

`start_sandbox` decides, once at start-up, what the server runs: in "full" mode a machine that
lacks a protection gets no sandbox at all (code items answer UNAVAILABLE with the reason, which
is logged loudly), never a silently weaker one; "weak" runs with what exists and logs what is
missing; "off" runs no code.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .backends import check_string
from .code import (AssertTests, CallCase, CallTests, CodeLimits, CodeRequest, CodeRunner, CodeStatus, CodeVerdict,
                   Extraction, RunnerConfig, SandboxUnavailable, StdioCase, StdioTests, Whitespace)
from .config import ServerConfig
from .errors import InvalidArgument, QueueFull, ServiceClosed
from .metrics import ServiceMetrics
from .proto import verifier_pb2 as pb

__all__ = ["CodeBackend", "CodeQueue", "SandboxState", "start_sandbox", "THREADS_PER_SLOT"]

log = logging.getLogger(__name__)

THREADS_PER_SLOT = 2
_LIMIT_FIELDS = ("cpu_time_s", "memory_bytes", "output_bytes", "wall_time_s")
_WHITESPACE = {0: Whitespace.TRAILING, **{v: Whitespace(pb.Whitespace.Name(v)) for v in pb.Whitespace.values() if v}}
_EXTRACTION = {0: Extraction.LAST_BLOCK,
               **{v: Extraction(pb.CodeExtraction.Name(v)) for v in pb.CodeExtraction.values() if v}}


@dataclass(frozen=True)
class SandboxState:
    """What the server runs, for ServerInfo and the log."""

    mode: str                          # "full", "weak" or "off": what actually runs, not what was asked
    missing: tuple[str, ...] = ()      # protections lost (weak), or why a requested sandbox is off
    slots: int = 0
    languages: tuple[str, ...] = ()
    default_limits: CodeLimits = CodeLimits()
    max_limits: CodeLimits = CodeLimits()
    reason: str = "this server does not run code"  # the reason code items get while mode is "off"


def start_sandbox(config: ServerConfig) -> tuple[CodeRunner | None, SandboxState]:
    """Start the code runner as `config.sandbox` asks; None (and why) when no code will run."""
    if config.sandbox == "off":
        log.info("code sandbox off (sandbox='off'): code items answer UNAVAILABLE")
        return None, SandboxState("off", reason="this server does not run code (started with sandbox off)")
    runner = CodeRunner(RunnerConfig(mode=config.sandbox, slots=config.code_slots,
                                     max_tests=config.max_tests_per_item,
                                     demote_after_ms=config.code_demote_after_ms))
    try:
        runner.start()
    except SandboxUnavailable as err:
        bar = "=" * 78
        log.error("%s\nCODE SANDBOX NOT STARTED (mode %r): %s\nThis server answers every code item UNAVAILABLE. "
                  "Fix the machine, or start it with --sandbox weak to run code with fewer protections.\n%s",
                  bar, config.sandbox, err, bar)
        return None, SandboxState("off", missing=(f"sandbox not started: {err}",),
                                  reason=f"the code sandbox could not start on this server: {err}")
    for missing in runner.missing_protections:
        log.warning("code sandbox in WEAK mode, missing protection: %s", missing)
    for note in runner.notes:
        log.warning("code sandbox: %s", note)
    log.info("code sandbox %s: %d slots, languages %s", runner.mode, runner.slots, ", ".join(runner.languages))
    return runner, SandboxState(runner.mode, runner.missing_protections, runner.slots, runner.languages,
                                runner.config.default_limits, runner.config.max_limits)


# ---------------------------------------------------------------- the queue

@dataclass
class _Entry:
    item: Any
    future: Future
    submitted: float


class CodeQueue:
    """`threads` threads running `run(item, submitted)` on items of a bounded queue; thread-safe.

    Each future resolves to what `run` returns (an exception of `run` fails that future only).
    Cancelling a future whose item has not started skips the item.
    """

    def __init__(self, run: Callable[[Any, float], Any], threads: int, capacity: int,
                 shutdown: Callable[[Any], Any]) -> None:
        self.capacity = capacity
        self._run = run
        self._shutdown = shutdown  # the result of an item still queued when the queue closes
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._taken = threading.Condition(self._lock)  # an item left the queue
        self._queue: collections.deque[_Entry] = collections.deque()
        self._in_flight = 0
        self._closing = False
        self._threads = [threading.Thread(target=self._loop, name=f"verirl-code-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit_many(self, items: Sequence[Any], *, wait_s: float = 0.0) -> list[Future]:
        """Queue every item or none: QueueFull if they do not fit within `wait_s` seconds."""
        now = time.monotonic()
        with self._lock:
            if self._closing:
                raise ServiceClosed("code queue")
            fits = lambda: self._closing or len(self._queue) + len(items) <= self.capacity  # noqa: E731
            if not fits() and (len(items) > self.capacity or wait_s <= 0
                               or not self._room.wait_for(fits, timeout=wait_s)):
                raise QueueFull(self.capacity, len(self._queue), len(items))
            if self._closing:
                raise ServiceClosed("code queue")
            entries = [_Entry(item, Future(), now) for item in items]
            self._queue.extend(entries)
            self._work.notify(len(entries))
        return [entry.future for entry in entries]

    def stats(self) -> tuple[int, int]:
        """(queued, running)."""
        with self._lock:
            return len(self._queue), self._in_flight

    def close(self, grace_s: float) -> None:
        """Refuse new items, let queued ones start for up to `grace_s` seconds, answer what is still
        queued with `shutdown(item)`, then wait for the running ones and for the threads. Not cut at
        `grace_s`: a run ends by its own limits (its backstop: executions x wall limit + compile),
        and closing the runner under a run could restart a fork-server behind close's back."""
        deadline = time.monotonic() + grace_s
        with self._lock:
            self._closing = True
            self._room.notify_all()
            self._work.notify_all()
            while self._queue:
                left = deadline - time.monotonic()
                if left <= 0 or not self._taken.wait(left):
                    break
            leftover = list(self._queue)
            self._queue.clear()
        for entry in leftover:
            if entry.future.set_running_or_notify_cancel():
                entry.future.set_result(self._shutdown(entry.item))
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._work.wait()
                if not self._queue:
                    return
                entry = self._queue.popleft()
                self._room.notify_all()  # waiting submitters of different sizes: each checks its own fit
                self._taken.notify_all()
                if not entry.future.set_running_or_notify_cancel():
                    continue  # the caller went away before the item started
                self._in_flight += 1
            try:
                entry.future.set_result(self._run(entry.item, entry.submitted))
            except Exception as exc:  # the boundary: a bug in a conversion fails its item, not the thread
                log.exception("code item failed outside the runner")
                entry.future.set_exception(exc)
            with self._lock:
                self._in_flight -= 1


# ---------------------------------------------------------------- the backend

@dataclass(frozen=True)
class CodeCall:
    id: str
    request: CodeRequest | None      # None: answered without running (`early`)
    early: CodeVerdict | None = None


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class CodeBackend:
    """Validates CodeItems, runs them on the runner through a CodeQueue, converts verdicts.
    It owns the runner: close() drains the queue and stops the fork-servers."""

    kind = "code"

    def __init__(self, runner: CodeRunner, config: ServerConfig, metrics: ServiceMetrics) -> None:
        self.runner = runner
        self.config = config
        self.metrics = metrics
        self.capabilities = tuple(f"code:{language}" for language in runner.languages)
        self.queue = CodeQueue(self._run, runner.slots * THREADS_PER_SLOT, config.queue_capacity,
                               shutdown=lambda call: self._result(call, CodeVerdict(
                                   CodeStatus.UNAVAILABLE, reason="the server shut down before this item ran"), 0.0))
        metrics.watch_code(self.queue.stats)

    def defaults(self, options: Any, path: str) -> None:
        return None

    # ------------------------------------------------------------ validation

    def prepare(self, item: pb.CodeItem, defaults: None, path: str) -> CodeCall:
        limit = self.config.max_string_bytes
        for name in ("id", "language", "response"):
            check_string(getattr(item, name), f"{path}.{name}", limit)
        if not item.language:
            raise InvalidArgument(f"{path}.language", "required (\"python\" or \"cpp\")")
        if item.extraction not in _EXTRACTION:
            raise InvalidArgument(f"{path}.extraction", f"not a valid CodeExtraction ({item.extraction})")
        if item.language not in self.runner.languages:
            runs = ", ".join(self.runner.languages)
            reason = f"language {item.language[:100]!r} is not run by this server (it runs {runs})"
            return CodeCall(item.id, None, CodeVerdict(CodeStatus.UNAVAILABLE, reason=reason))
        tests = self._tests(item, f"{path}.tests")
        limits = self._limits(item.limits, f"{path}.limits") if item.HasField("limits") else CodeLimits()
        return CodeCall(item.id, CodeRequest(
            response=item.response, tests=tests, language=item.language, limits=limits,
            extraction=_EXTRACTION[item.extraction], stop_at_first_failure=item.stop_at_first_failure, id=item.id))

    def _tests(self, item: pb.CodeItem, path: str) -> StdioTests | AssertTests | CallTests:
        which = item.tests.WhichOneof("kind")
        if which is None:
            raise InvalidArgument(path, "required: one of stdio, assert_code, call")
        if item.language != "python" and which != "stdio":
            raise InvalidArgument(f"{path}.{which}", f"only stdio tests can run {item.language} code")
        limit = self.config.max_string_bytes
        if which == "assert_code":
            tests = item.tests.assert_code
            check_string(tests.code, f"{path}.assert_code.code", limit)
            if tests.entry_point and not tests.entry_point.isidentifier():
                raise InvalidArgument(f"{path}.assert_code.entry_point", "must be a Python identifier")
            if not tests.code.strip() and not tests.entry_point:
                raise InvalidArgument(f"{path}.assert_code.code", "required (empty)")
            return AssertTests(tests.code, tests.entry_point)
        cases = getattr(item.tests, which).cases
        if not cases:
            raise InvalidArgument(f"{path}.{which}.cases", "at least one case is required")
        if len(cases) > self.config.max_tests_per_item:
            raise InvalidArgument(f"{path}.{which}.cases", f"{len(cases)} cases exceed max_tests_per_item "
                                  f"({self.config.max_tests_per_item})")
        if which == "stdio":
            stdio = item.tests.stdio
            if stdio.whitespace not in _WHITESPACE:
                raise InvalidArgument(f"{path}.stdio.whitespace", f"not a valid Whitespace ({stdio.whitespace})")
            for i, case in enumerate(cases):
                check_string(case.input, f"{path}.stdio.cases[{i}].input", limit)
                check_string(case.output, f"{path}.stdio.cases[{i}].output", limit)
            return StdioTests(tuple(StdioCase(c.input, c.output) for c in cases), _WHITESPACE[stdio.whitespace])
        call = item.tests.call
        if not call.fn.isidentifier():
            raise InvalidArgument(f"{path}.call.fn", f"must be a Python identifier, got {call.fn[:100]!r}")
        if not (math.isfinite(call.float_rel_tol) and 0 <= call.float_rel_tol < 1):
            raise InvalidArgument(f"{path}.call.float_rel_tol", f"must be in [0, 1), got {call.float_rel_tol}")
        for i, case in enumerate(cases):
            for name, default, kind in (("args_json", "[]", list), ("kwargs_json", "{}", dict),
                                        ("expected_json", "null", object)):
                text = getattr(case, name)
                check_string(text, f"{path}.call.cases[{i}].{name}", limit)
                try:
                    value = json.loads(text or default)
                except (ValueError, RecursionError) as err:
                    raise InvalidArgument(f"{path}.call.cases[{i}].{name}", f"not JSON ({err})") from None
                if not isinstance(value, kind):
                    raise InvalidArgument(f"{path}.call.cases[{i}].{name}", f"must be a JSON {kind.__name__}")
        return CallTests(call.fn, tuple(CallCase(c.args_json, c.kwargs_json, c.expected_json or "null")
                                        for c in cases), call.float_rel_tol)

    def _limits(self, msg: pb.CodeLimits, path: str) -> CodeLimits:
        top = self.runner.config.max_limits
        for name in _LIMIT_FIELDS:
            value, most = getattr(msg, name), getattr(top, name)
            if not (math.isfinite(value) and value >= 0):
                raise InvalidArgument(f"{path}.{name}", f"must be a finite number >= 0, got {value}")
            if value > most:
                raise InvalidArgument(f"{path}.{name}", f"{value} is over the server's maximum ({most})")
        return CodeLimits(**{name: getattr(msg, name) for name in _LIMIT_FIELDS})

    # ------------------------------------------------------------ running

    def submit(self, prepared: Sequence[CodeCall], *, wait_s: float = 0.0) -> list[Future]:
        runs = [call for call in prepared if call.request is not None]
        queued = iter(self.queue.submit_many(runs, wait_s=wait_s))
        return [next(queued) if call.request is not None else _done(self._result(call, call.early, 0.0))
                for call in prepared]

    def _run(self, call: CodeCall, submitted: float) -> pb.CodeResult:
        verdict = self.runner.run(call.request)
        return self._result(call, verdict, (time.monotonic() - submitted) * 1e3)

    def _result(self, call: CodeCall, verdict: CodeVerdict, elapsed_ms: float) -> pb.CodeResult:
        self.metrics.observe_item(self.kind, verdict.status.value, elapsed_ms / 1e3)
        status = pb.CodeResult.Status.Value
        return pb.CodeResult(
            id=call.id, status=status(verdict.status.value), judged=verdict.judged, correct=verdict.correct,
            score=verdict.score, passed=verdict.passed, total=verdict.total,
            tests=[pb.TestOutcome(index=t.index, status=status(t.status.value), detail=t.detail,
                                  cpu_time_s=t.cpu_time_s) for t in verdict.tests],
            stdout=verdict.stdout, stderr=verdict.stderr, stdout_truncated=verdict.stdout_truncated,
            stderr_truncated=verdict.stderr_truncated, cpu_time_s=verdict.cpu_time_s,
            peak_memory_bytes=verdict.peak_memory_bytes, reason=verdict.reason, elapsed_ms=elapsed_ms,
            extracted=verdict.extracted)

    def invalid(self, item: pb.CodeItem, error: InvalidArgument) -> pb.CodeResult:
        self.metrics.observe_item(self.kind, "INVALID_ARGUMENT", 0.0)
        return pb.CodeResult(id=item.id, status=pb.CodeResult.INVALID_ARGUMENT, judged=False, reason=str(error))

    def close(self, grace_s: float) -> None:
        """Drain the queue for up to `grace_s`, wait for the runs in progress, stop the fork-servers.
        The runner is closed only once no run uses it: a run cut off by close() could restart its
        fork-server behind close's back."""
        self.queue.close(grace_s)
        self.runner.close()
