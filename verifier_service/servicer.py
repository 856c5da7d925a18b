"""The gRPC servicer: proto in, backend (kind -> checker table) in the middle, proto out.

Thin on purpose: validation and conversion live in backends.py, execution in workers.py.
What lives here is what only the transport knows: batch limits, the request_id record
that makes a retried batch safe, waiting for results while watching for a caller that
went away, the stream protocol of Verify, and the one table that turns typed errors
(errors.py) into gRPC status codes, so a caller's mistake never reads as INTERNAL.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import grpc

from . import __version__
from .backends import Backend
from .code_backend import SandboxState
from .config import ServerConfig
from .errors import InvalidArgument, QueueFull, ServiceClosed, VerifierError
from .metrics import ServiceMetrics
from .proto import verifier_pb2 as pb
from .proto import verifier_pb2_grpc as pb_grpc

__all__ = ["VerifierServicer", "STATUS_CODES"]

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[VerifierError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ServiceClosed: grpc.StatusCode.UNAVAILABLE,
}


class _Abandoned(Exception):
    """The caller went away (cancelled, or its deadline passed) while its items ran."""


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, _Abandoned):
        return grpc.StatusCode.CANCELLED, "the caller went away"
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls], str(exc)
    log.error("internal error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def _rpc(name: str) -> Callable:
    """Wrap a unary method: time it, count it by status code, and map its errors."""
    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def handler(self: VerifierServicer, request: Any, context: grpc.ServicerContext) -> Any:
            start, code = time.perf_counter(), grpc.StatusCode.OK
            try:
                return method(self, request, context)
            except Exception as exc:  # the boundary: every error becomes a status
                code, details = _status_of(exc)
                log.info("%s -> %s: %s", name, code.name, details)
                context.abort(code, details)
            finally:
                self.metrics.observe_request(name, code.name, time.perf_counter() - start)
        return handler
    return wrap


def _gather(futures: list[Future], context: grpc.ServicerContext) -> list[Any]:
    """Wait for every future, or until the RPC ends early (then cancel what has not started)."""
    finished = threading.Event()
    pending = [len(futures)]
    lock = threading.Lock()

    def one_done(_: Future) -> None:
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                finished.set()

    if not futures:
        return []
    for future in futures:
        future.add_done_callback(one_done)
    if not context.add_callback(finished.set):
        finished.set()
    finished.wait()
    if not all(f.done() for f in futures):
        for future in futures:
            future.cancel()
        raise _Abandoned()
    return [f.result() for f in futures]


class _ReplayRecord:
    """Responses of the last `size` request_ids, so a retried batch is answered, not re-run.

    The record holds a future from the moment the first call starts, so a retry that arrives
    while the first call still runs waits for it. A call that fails is forgotten (its retry
    runs again); reusing an id with a different request is INVALID_ARGUMENT.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, Future]] = OrderedDict()
        self._lock = threading.Lock()

    def begin(self, key: tuple[str, str], digest: bytes) -> tuple[Future, bool]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if entry[0] != digest:
                    raise InvalidArgument("request_id", f"{key[1]!r} was already used for a different request")
                return entry[1], False
            future: Future = Future()
            future.set_running_or_notify_cancel()  # a retry that goes away cannot cancel the first call
            self._entries[key] = (digest, future)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return future, True

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(key, None)


class VerifierServicer(pb_grpc.VerifierServicer):
    def __init__(self, config: ServerConfig, backends: dict[str, Backend], metrics: ServiceMetrics,
                 math_workers: int, sandbox: SandboxState = SandboxState("off"),
                 prm_info: tuple[str, str] = ("", "")) -> None:
        self.config = config
        self.prm_model, self.prm_details = prm_info  # ServerInfo's words on the PRM; empty: none served
        self.sandbox = sandbox
        self.backends = backends
        self.metrics = metrics
        self.math_workers = math_workers
        self.capabilities = [cap for backend in backends.values() for cap in backend.capabilities]
        self._replay = _ReplayRecord(config.replay_size) if config.replay_size else None

    # ------------------------------------------------------------------ unary batches

    @_rpc("CheckMath")
    def CheckMath(self, request: pb.CheckMathRequest, context: grpc.ServicerContext) -> pb.CheckMathResponse:
        options = request.options if request.HasField("options") else None
        return self._batch("CheckMath", "math", request, options, pb.CheckMathResponse, context)

    @_rpc("RunCode")
    def RunCode(self, request: pb.RunCodeRequest, context: grpc.ServicerContext) -> pb.RunCodeResponse:
        return self._batch("RunCode", "code", request, None, pb.RunCodeResponse, context)

    @_rpc("ScoreSteps")
    def ScoreSteps(self, request: pb.ScoreStepsRequest, context: grpc.ServicerContext) -> pb.ScoreStepsResponse:
        return self._batch("ScoreSteps", "steps", request, None, pb.ScoreStepsResponse, context)

    @_rpc("ScoreCandidates")
    def ScoreCandidates(self, request: pb.ScoreCandidatesRequest,
                        context: grpc.ServicerContext) -> pb.ScoreCandidatesResponse:
        return self._batch("ScoreCandidates", "candidates", request, None, pb.ScoreCandidatesResponse, context)

    def _batch(self, rpc: str, kind: str, request: Any, options: Any, response_cls: type,
               context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            backend = self.backends[kind]
            limit = self.config.max_items_per_request
            if len(request.items) > limit:
                raise InvalidArgument("items", f"{len(request.items)} items exceed max_items_per_request ({limit})")
            defaults = backend.defaults(options, "options")
            prepared = [backend.prepare(item, defaults, f"items[{i}]") for i, item in enumerate(request.items)]
            return response_cls(results=_gather(backend.submit(prepared), context))

        log.debug("%s request_id=%r items=%d", rpc, request.request_id, len(request.items))
        if not (request.request_id and self._replay):
            return run()
        if len(request.request_id) > 256:
            raise InvalidArgument("request_id", "longer than 256 characters")
        key = (rpc, request.request_id)
        digest = hashlib.blake2b(request.SerializeToString(deterministic=True), digest_size=16).digest()
        while True:
            record, owner = self._replay.begin(key, digest)
            if owner:
                break
            try:
                return _gather([record], context)[0]
            except _Abandoned:
                if context.is_active():  # the first caller went away, not this one: run it ourselves
                    continue
                raise
        try:
            response = run()
        except BaseException as exc:
            self._replay.forget(key)
            record.set_exception(_Abandoned() if isinstance(exc, _Abandoned) else exc)
            raise
        record.set_result(response)
        return response

    # ------------------------------------------------------------------ stream

    def Verify(self, request_iterator: Iterator[pb.VerifyRequest],
               context: grpc.ServicerContext) -> Iterator[pb.VerifyResponse]:
        """Results go out as they finish. A reader thread validates and submits items; its
        futures' callbacks and its final count meet the response generator in one queue."""
        start, code = time.perf_counter(), grpc.StatusCode.OK
        results: queue.SimpleQueue = queue.SimpleQueue()
        open_ids: set[str] = set()
        futures: list[Future] = []
        lock = threading.Lock()
        context.add_callback(lambda: results.put(_Abandoned()))

        def deliver(kind: str, future: Future) -> None:
            if not future.cancelled():
                results.put((kind, future.result()))

        def read() -> None:
            submitted = 0
            try:
                for request in request_iterator:
                    kind = request.WhichOneof("item")
                    if kind is None:
                        raise InvalidArgument("item", "one of math, code, steps, candidates is required")
                    backend, item = self.backends[kind], getattr(request, kind)
                    with lock:
                        if item.id in open_ids:
                            raise InvalidArgument(f"{kind}.id", f"{item.id!r} is already open on this stream")
                        open_ids.add(item.id)
                    try:
                        options = request.math_options if kind == "math" and request.HasField("math_options") else None
                        defaults = backend.defaults(options, "math_options")
                        future = backend.submit([backend.prepare(item, defaults, kind)],
                                                wait_s=self.config.stream_backpressure_s)[0]
                    except InvalidArgument as exc:  # one bad item is answered, the stream goes on
                        future = Future()
                        future.set_result(backend.invalid(item, exc))
                    with lock:
                        futures.append(future)
                    future.add_done_callback(functools.partial(deliver, kind))
                    submitted += 1
                # The request iterator also just stops when the caller cancels: that is no end of input.
                results.put(submitted if context.is_active() else _Abandoned())
            except Exception as exc:  # the boundary of the reader thread: the stream fails with a status
                results.put(exc)

        threading.Thread(target=read, name="verirl-verify-reader", daemon=True).start()
        sent, expected = 0, None
        try:
            while expected is None or sent < expected:
                message = results.get()
                if isinstance(message, int):
                    expected = message
                elif isinstance(message, BaseException):
                    raise message
                else:
                    kind, result = message
                    with lock:
                        open_ids.discard(result.id)
                    yield pb.VerifyResponse(**{kind: result})
                    sent += 1
        except GeneratorExit:  # grpc closed the stream (the caller went away)
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # the boundary: every error becomes a status
            code, details = _status_of(exc)
            context.abort(code, details)
        finally:
            if code is not grpc.StatusCode.OK:
                with lock:
                    for future in futures:
                        future.cancel()
            self.metrics.observe_request("Verify", code.name, time.perf_counter() - start)

    # ------------------------------------------------------------------ info

    @_rpc("GetServerInfo")
    def GetServerInfo(self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext) -> pb.ServerInfo:
        c = self.config
        limits = pb.Limits(
            max_items_per_request=c.max_items_per_request, max_message_bytes=c.max_message_bytes,
            max_string_bytes=c.max_string_bytes, max_tests_per_item=c.max_tests_per_item,
            queue_capacity=c.queue_capacity, math_timeout_s=c.math_timeout_s, max_math_timeout_s=c.max_math_timeout_s)
        sandbox = self.sandbox
        if sandbox.mode != "off":
            limits.MergeFrom(pb.Limits(
                code_cpu_time_s=sandbox.default_limits.cpu_time_s, max_code_cpu_time_s=sandbox.max_limits.cpu_time_s,
                code_memory_bytes=sandbox.default_limits.memory_bytes,
                max_code_memory_bytes=sandbox.max_limits.memory_bytes))
        return pb.ServerInfo(version=__version__, capabilities=self.capabilities, limits=limits,
                             math_workers=self.math_workers, code_slots=sandbox.slots, sandbox_mode=sandbox.mode,
                             sandbox_missing=sandbox.missing, prm_model=self.prm_model,
                             prm_details=self.prm_details)
