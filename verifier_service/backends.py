"""The checkers behind the servicer, one backend per item kind, picked from a table.

Each backend turns proto items into domain calls and back: `prepare` validates one item
(raising InvalidArgument that names the field) and converts it, `submit` starts a batch
of prepared items and returns one future per item that resolves to the proto result.
The servicer holds a `{kind: backend}` table, so the code sandbox and the PRM plug in by
registering a backend, with no change to the RPC methods. The code backend lives in
code_backend.py; a kind this server does not check (no PRM yet, the sandbox off or unable
to start) is answered by `UnavailableBackend` (status UNAVAILABLE, judged=false, the reason).
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from .cache import content_key
from .config import ServerConfig
from .errors import InvalidArgument
from .math.types import DEFAULT_REL_TOL, Extractor, MathOptions, MathStatus, MathVerdict
from .metrics import ServiceMetrics
from .proto import verifier_pb2 as pb
from .workers import Job, Outcome, OutcomeStatus, WorkerPool

__all__ = ["Backend", "MathBackend", "UnavailableBackend", "build_backends", "check_string", "MATH_CHECK_FN"]

MATH_CHECK_FN = "verifier_service.math:check"
MAX_PRECISION = 100

_EXTRACTORS = {value: Extractor(pb.Extractor.Name(value)) for value in pb.Extractor.values() if value}
_MATH_STATUS = {status: pb.MathResult.Status.Value(status.value) for status in MathStatus}
_UNCACHEABLE = frozenset({MathStatus.TIMEOUT, MathStatus.INTERNAL_ERROR})


class Backend(Protocol):
    kind: str
    capabilities: tuple[str, ...]  # what ServerInfo advertises, e.g. ("math",), ("code:python",)

    def defaults(self, options: Any, path: str) -> Any:
        """Validate request-level defaults (None when the kind has none)."""

    def prepare(self, item: Any, defaults: Any, path: str) -> Any:
        """Validate and convert one item; raise InvalidArgument naming the field."""

    def submit(self, prepared: Sequence[Any], *, wait_s: float = 0.0) -> list[Future]:
        """Start every item or none (QueueFull); one future of a proto result per item."""

    def invalid(self, item: Any, error: InvalidArgument) -> Any:
        """The proto result for an item that failed validation inside a stream."""


def check_string(value: str, path: str, limit: int) -> None:
    # A str of n characters has at least n and at most 4n UTF-8 bytes: encode only when unsure.
    if len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidArgument(path, f"exceeds max_string_bytes ({limit})")


def _chain(inner: Future, convert: Callable[[Outcome], Any]) -> Future:
    """A future of `convert(inner's outcome)`; cancelling it cancels `inner` if not started."""
    outer: Future = Future()
    outer.add_done_callback(lambda f: f.cancelled() and inner.cancel())
    inner.add_done_callback(lambda f: f.cancelled() or outer.done() or _settle(outer, convert, f.result()))
    return outer


def _settle(outer: Future, convert: Callable[[Outcome], Any], outcome: Outcome) -> None:
    if outer.set_running_or_notify_cancel():
        try:
            outer.set_result(convert(outcome))
        except Exception as exc:  # a bug in a conversion must fail its call, not hang it
            outer.set_exception(exc)


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _math_cacheable(verdict: MathVerdict) -> bool:
    return verdict.status not in _UNCACHEABLE


@dataclass(frozen=True)
class MathCall:
    id: str
    gold: str
    response: str
    options: MathOptions
    timeout_s: float


class MathBackend:
    kind = "math"
    capabilities = ("math",)

    def __init__(self, pool: WorkerPool, config: ServerConfig, metrics: ServiceMetrics) -> None:
        self.pool = pool
        self.config = config
        self.metrics = metrics
        self._server_default = (MathOptions(), config.math_timeout_s)

    def defaults(self, options: pb.MathOptions | None, path: str) -> tuple[MathOptions, float]:
        return self._server_default if options is None else self._options(options, path)

    def _options(self, msg: pb.MathOptions, path: str) -> tuple[MathOptions, float]:
        extractors = []
        for i, value in enumerate(msg.extractors):
            if value not in _EXTRACTORS:
                raise InvalidArgument(f"{path}.extractors[{i}]", f"not a valid Extractor ({value})")
            extractors.append(_EXTRACTORS[value])
        precision = None
        if msg.HasField("precision"):
            precision = msg.precision
            if not 0 <= precision <= MAX_PRECISION:
                raise InvalidArgument(f"{path}.precision", f"must be in [0, {MAX_PRECISION}], got {precision}")
        if not (math.isfinite(msg.rel_tol) and 0 <= msg.rel_tol < 1):
            raise InvalidArgument(f"{path}.rel_tol", f"must be in [0, 1), got {msg.rel_tol}")
        if not (math.isfinite(msg.timeout_s) and msg.timeout_s >= 0):
            raise InvalidArgument(f"{path}.timeout_s", f"must be a finite number >= 0, got {msg.timeout_s}")
        options = MathOptions(
            extractors=tuple(extractors) if extractors else MathOptions().extractors,
            precision=precision,
            rel_tol=msg.rel_tol or DEFAULT_REL_TOL,
            gold_is_solution=msg.gold_is_solution if msg.HasField("gold_is_solution") else None,
        )
        timeout_s = min(msg.timeout_s or self.config.math_timeout_s, self.config.max_math_timeout_s)
        return options, timeout_s

    def prepare(self, item: pb.MathItem, defaults: tuple[MathOptions, float], path: str) -> MathCall:
        limit = self.config.max_string_bytes
        check_string(item.id, f"{path}.id", limit)
        check_string(item.response, f"{path}.response", limit)
        check_string(item.gold, f"{path}.gold", limit)
        if not item.gold.strip():
            raise InvalidArgument(f"{path}.gold", "required (empty)")
        options, timeout_s = self._options(item.options, f"{path}.options") if item.HasField("options") else defaults
        return MathCall(item.id, item.gold, item.response, options, timeout_s)

    def submit(self, prepared: Sequence[MathCall], *, wait_s: float = 0.0) -> list[Future]:
        jobs = [Job(MATH_CHECK_FN, (c.gold, c.response, c.options), c.timeout_s,
                    cache_key=content_key("math", c.gold, c.response, c.options), cacheable=_math_cacheable)
                for c in prepared]
        futures = self.pool.submit_many(jobs, wait_s=wait_s)
        return [_chain(f, lambda outcome, c=c: self._result(c, outcome)) for f, c in zip(futures, prepared)]

    def _result(self, call: MathCall, outcome: Outcome) -> pb.MathResult:
        if outcome.status is OutcomeStatus.OK:
            verdict: MathVerdict = outcome.value
        elif outcome.status is OutcomeStatus.TIMEOUT:
            verdict = MathVerdict(MathStatus.TIMEOUT, reason=f"check {outcome.reason}")
        elif outcome.status is OutcomeStatus.FAILED:
            verdict = MathVerdict(MathStatus.INTERNAL_ERROR, reason=f"the checker raised {outcome.reason}")
        else:
            verdict = MathVerdict(MathStatus.INTERNAL_ERROR, reason=outcome.reason)
        self.metrics.observe_item(self.kind, verdict.status.value, outcome.elapsed_ms / 1e3)
        return pb.MathResult(
            id=call.id, status=_MATH_STATUS[verdict.status], judged=verdict.judged, correct=verdict.correct,
            score=verdict.score, extracted=verdict.extracted, normalized=verdict.normalized,
            gold_normalized=verdict.gold_normalized, reason=verdict.reason, elapsed_ms=outcome.elapsed_ms,
            cached=outcome.cached)

    def invalid(self, item: pb.MathItem, error: InvalidArgument) -> pb.MathResult:
        self.metrics.observe_item(self.kind, "INVALID_ARGUMENT", 0.0)
        return pb.MathResult(id=item.id, status=pb.MathResult.INVALID_ARGUMENT, judged=False, reason=str(error))


class UnavailableBackend:
    """A kind this server does not check (yet): every item gets UNAVAILABLE, judged=false."""

    capabilities: tuple[str, ...] = ()

    def __init__(self, kind: str, make: Callable[..., Any], unavailable: int, invalid_status: int,
                 reason: str, metrics: ServiceMetrics, max_string_bytes: int) -> None:
        self.kind = kind
        self._make = make
        self._unavailable = unavailable
        self._invalid = invalid_status
        self._reason = reason
        self._metrics = metrics
        self._limit = max_string_bytes

    def defaults(self, options: Any, path: str) -> None:
        return None

    def prepare(self, item: Any, defaults: None, path: str) -> str:
        check_string(item.id, f"{path}.id", self._limit)
        return item.id

    def submit(self, prepared: Sequence[str], *, wait_s: float = 0.0) -> list[Future]:
        for _ in prepared:
            self._metrics.observe_item(self.kind, "UNAVAILABLE", 0.0)
        return [_done(self._make(id=item_id, status=self._unavailable, judged=False, reason=self._reason))
                for item_id in prepared]

    def invalid(self, item: Any, error: InvalidArgument) -> Any:
        self._metrics.observe_item(self.kind, "INVALID_ARGUMENT", 0.0)
        return self._make(id=item.id, status=self._invalid, judged=False, reason=str(error))


def build_backends(pool: WorkerPool, config: ServerConfig, metrics: ServiceMetrics, code: Backend | None = None,
                   no_code_reason: str = "this server does not run code") -> dict[str, Backend]:
    """The kind -> backend table of a server. Keys equal the oneof names of VerifyRequest.item.
    Without a `code` backend, code items answer UNAVAILABLE with `no_code_reason`."""
    def unavailable(kind: str, make: Callable[..., Any], status_enum: Any, reason: str) -> UnavailableBackend:
        return UnavailableBackend(kind, make, status_enum.UNAVAILABLE, status_enum.INVALID_ARGUMENT, reason,
                                  metrics, config.max_string_bytes)

    return {
        "math": MathBackend(pool, config, metrics),
        "code": code or unavailable("code", pb.CodeResult, pb.CodeResult, no_code_reason),
        "steps": unavailable("steps", pb.StepsResult, pb.StepsResult, "this server does not score steps (no PRM)"),
        "candidates": unavailable("candidates", pb.CandidatesResult, pb.StepsResult,
                                  "this server does not score steps (no PRM)"),
    }
