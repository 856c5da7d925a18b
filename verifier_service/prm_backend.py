"""The steps and candidates kinds of the service: StepsItem / CandidatesItem -> PRM -> results.

`start_prm` loads the PRM once, in its own process (prm/process.py), behind the batcher
(prm/engine.py). The backends here validate items (INVALID_ARGUMENT names the field), render
them to token ids in the server process with the model's fast tokenizer (tasks/prm_format.py's
render_ids, the same rendering the trainer uses), refuse a chain longer than the model reads
(TOO_LONG, never truncated), and turn the batcher's outcomes into StepsResult/CandidatesResult.
A StepsItem with a gold also sends its whole chain to the math checker; its MathResult is the
result's `answer`.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Sequence

from tasks.prm_format import HEAD_FILE, PRMFormat, render_ids, render_spans
from tasks.stepdata import split_steps

from .backends import MathBackend, MathCall, check_string
from .config import ServerConfig
from .errors import InvalidArgument
from .metrics import ServiceMetrics
from .prm import PRMConfig, resolve_format
from .prm.aggregate import aggregate, first_error
from .prm.engine import Job, PRMEngine, Scored
from .prm.process import PRMProcess
from .prm.text import PROBE, check_labels, load_tokenizer, render_candidates
from .proto import verifier_pb2 as pb

__all__ = ["PRMService", "StepsBackend", "CandidatesBackend", "start_prm"]

log = logging.getLogger(__name__)

DEFAULT_SEPARATOR = "\n\n"  # StepsItem.text without a separator (the proto's default)
_AGGREGATIONS = {pb.MIN: "min", pb.PROD: "prod", pb.LAST: "last", pb.MEAN: "mean"}
_STATUS = {"timeout": pb.StepsResult.TIMEOUT, "internal_error": pb.StepsResult.INTERNAL_ERROR,
           "unavailable": pb.StepsResult.UNAVAILABLE}


class PRMService:
    """The served PRM: its format, tokenizer and batcher; what ServerInfo says about it."""

    def __init__(self, config: PRMConfig, fmt: PRMFormat, tokenizer: Any, engine: PRMEngine,
                 info: dict[str, Any]) -> None:
        self.config = config
        self.format = fmt
        self.tokenizer = tokenizer
        self.engine = engine
        self.info = info

    @property
    def model(self) -> str:
        return self.config.dir

    def details(self) -> str:
        f, c = self.format, self.config
        label = {"causal_lm": f"good_token={f.good_token!r} bad_token={f.bad_token!r}",
                 "token_classification": f"correct_label={f.correct_label}",
                 "step_likelihood": f"head={HEAD_FILE}"}[f.kind]
        return (f"kind={f.kind} step_tag={f.step_tag!r} step_separator={f.step_separator!r} {label} "
                f"default_aggregation={f.default_aggregation} max_length={f.max_length} "
                f"max_candidates={c.max_candidates} batch_tokens={c.batch_tokens} timeout_s={c.timeout_s:g} "
                f"device={self.info.get('device')} dtype={self.info.get('dtype')} params={self.info.get('params')}")

    def backends(self, math_backend: MathBackend, config: ServerConfig, metrics: ServiceMetrics) -> dict[str, Any]:
        return {"steps": StepsBackend(self, math_backend, config, metrics),
                "candidates": CandidatesBackend(self, config, metrics)}

    def close(self, grace_s: float) -> None:
        self.engine.close(grace_s)


def start_prm(config: PRMConfig, queue_capacity: int) -> PRMService:
    """Resolve the format, read the tokenizer, start the PRM process and wait for the model
    (ValueError for a bad directory or format, PRMStartError if the model does not load)."""
    fmt = resolve_format(config)
    tokenizer = load_tokenizer(config.dir)
    check_labels(tokenizer, fmt)
    render_ids(tokenizer, fmt, "", [""])  # a tag that tokenizes to nothing fails here, not per item
    engine = PRMEngine(PRMProcess(config.dir, fmt, config.device, config.start_timeout_s, config.compile),
                       batch_tokens=config.batch_tokens, max_wait_s=config.max_wait_s, timeout_s=config.timeout_s,
                       capacity=queue_capacity)
    info = engine.start()
    if info["probe"] != render_ids(tokenizer, fmt, *PROBE):
        engine.close(grace_s=0)
        raise ValueError(f"{config.dir}: tokenizer.json and transformers' AutoTokenizer give different ids for the "
                         "same chain; the server (tokenizer.json) would read scores at other places than the "
                         "trainer put them")
    log.info("PRM %s served: %s", config.dir, fmt)
    return PRMService(config, fmt, tokenizer, engine, info)


def _done(value: Any) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _join(futures: Sequence[Future | None], convert: Any) -> Future:
    """A future of convert(*results) once every given future is done (None stands for None);
    cancelling it cancels the inner ones that have not started."""
    outer: Future = Future()
    real = [f for f in futures if f is not None]
    outer.add_done_callback(lambda f: f.cancelled() and [g.cancel() for g in real])
    left = [len(real)]

    def one_done(_: Future) -> None:
        left[0] -= 1
        if left[0] or outer.done() or any(f.cancelled() for f in real):
            return
        if outer.set_running_or_notify_cancel():
            try:
                outer.set_result(convert(*[None if f is None else f.result() for f in futures]))
            except Exception as exc:  # a bug in a conversion must fail its call, not hang it
                outer.set_exception(exc)

    for future in real:
        future.add_done_callback(one_done)
    return outer


def _check_step(text: str, path: str, limit: int) -> None:
    check_string(text, path, limit)
    if not text.strip():
        raise InvalidArgument(path, "empty step")


def _problem(item: Any, path: str, limit: int) -> None:
    check_string(item.id, f"{path}.id", limit)
    check_string(item.problem, f"{path}.problem", limit)
    if not item.problem.strip():
        raise InvalidArgument(f"{path}.problem", "required (empty)")


# ---------------------------------------------------------------- steps

@dataclass(frozen=True)
class StepsCall:
    id: str
    job: Job | None                  # None: answered without the model (`early`)
    aggregation: str
    threshold: float | None
    math: MathCall | None = None     # the gold check
    early: Scored | None = None
    too_long: str = ""


class StepsBackend:
    kind = "steps"
    capabilities = ("steps",)

    def __init__(self, prm: PRMService, math_backend: MathBackend, config: ServerConfig,
                 metrics: ServiceMetrics) -> None:
        self.prm = prm
        self.math = math_backend
        self.config = config
        self.metrics = metrics

    def defaults(self, options: Any, path: str) -> None:
        return None

    def prepare(self, item: pb.StepsItem, defaults: None, path: str) -> StepsCall:
        limit = self.config.max_string_bytes
        _problem(item, path, limit)
        for name in ("text", "separator", "gold"):
            check_string(getattr(item, name), f"{path}.{name}", limit)
        if item.steps and item.text:
            raise InvalidArgument(f"{path}.text", "give steps or text, not both")
        if item.steps:
            if item.separator:
                raise InvalidArgument(f"{path}.separator", "applies to text only (steps are given)")
            for j, step in enumerate(item.steps):
                _check_step(step, f"{path}.steps[{j}]", limit)
            steps = list(item.steps)
        elif item.text:
            steps = split_steps(item.text, item.separator or DEFAULT_SEPARATOR)
            if not steps:
                raise InvalidArgument(f"{path}.text", "holds no step")
        else:
            raise InvalidArgument(f"{path}.steps", "required: steps, or a text to split into steps")
        if item.aggregation and item.aggregation not in _AGGREGATIONS:
            raise InvalidArgument(f"{path}.aggregation", f"not a valid Aggregation ({item.aggregation})")
        aggregation = _AGGREGATIONS.get(item.aggregation, self.prm.format.default_aggregation)
        threshold = None
        if item.HasField("threshold"):
            threshold = item.threshold
            if not (math.isfinite(threshold) and 0 <= threshold <= 1):
                raise InvalidArgument(f"{path}.threshold", f"must be in [0, 1], got {threshold}")
        math_call = None
        if item.gold:
            response = DEFAULT_SEPARATOR.join(steps)
            math_call = self.math.prepare(pb.MathItem(id=item.id, response=response, gold=item.gold),
                                          self.math.defaults(None, "options"), path)
        limit = self.prm.format.max_length
        ids, spans = render_spans(self.prm.tokenizer, self.prm.format, item.problem, steps, limit=limit)
        if len(ids) > limit:  # tokenized only until past the limit: len(ids) is a lower bound
            early = Scored("too_long", reason=f"the chain is at least {len(ids)} tokens, over the PRM's max_length "
                                              f"({limit}); it is not truncated")
            return StepsCall(item.id, None, aggregation, threshold, math_call, early)
        job = Job("rows", (ids, [tag for _, _, tag in spans], spans), len(ids))
        return StepsCall(item.id, job, aggregation, threshold, math_call)

    def submit(self, prepared: Sequence[StepsCall], *, wait_s: float = 0.0) -> list[Future]:
        runs = [c for c in prepared if c.job is not None]
        queued = iter(self.prm.engine.submit_many([c.job for c in runs], wait_s=wait_s))
        prm = [next(queued) if c.job is not None else _done(c.early) for c in prepared]
        golds = [c for c in prepared if c.math is not None]
        try:
            checked = iter(self.math.submit([c.math for c in golds], wait_s=wait_s) if golds else [])
        except Exception:
            for future in prm:
                future.cancel()
            raise
        answers = [next(checked) if c.math is not None else None for c in prepared]
        return [_join([p, a], lambda scored, answer, c=c: self._result(c, scored, answer))
                for c, p, a in zip(prepared, prm, answers)]

    def _result(self, call: StepsCall, scored: Scored, answer: pb.MathResult | None) -> pb.StepsResult:
        self.metrics.observe_item(self.kind, scored.status.upper(), scored.elapsed_ms / 1e3)
        if scored.status == "ok":
            scores = scored.value
            return pb.StepsResult(id=call.id, status=pb.StepsResult.OK, judged=True, step_scores=scores,
                                  score=aggregate(call.aggregation, scores),
                                  first_error=first_error(scores, call.threshold), elapsed_ms=scored.elapsed_ms,
                                  answer=answer)
        status = pb.StepsResult.TOO_LONG if scored.status == "too_long" else _STATUS[scored.status]
        return pb.StepsResult(id=call.id, status=status, judged=False, first_error=-1, reason=scored.reason,
                              elapsed_ms=scored.elapsed_ms, answer=answer)

    def invalid(self, item: pb.StepsItem, error: InvalidArgument) -> pb.StepsResult:
        self.metrics.observe_item(self.kind, "INVALID_ARGUMENT", 0.0)
        return pb.StepsResult(id=item.id, status=pb.StepsResult.INVALID_ARGUMENT, judged=False, first_error=-1,
                              reason=str(error))


# ---------------------------------------------------------------- candidates

@dataclass(frozen=True)
class CandidatesCall:
    id: str
    job: Job | None
    early: Scored | None = None


class CandidatesBackend:
    """K candidate next steps after one prefix: one job, the prefix run once (its KV cache shared)."""

    kind = "candidates"
    capabilities = ("candidates",)

    def __init__(self, prm: PRMService, config: ServerConfig, metrics: ServiceMetrics) -> None:
        self.prm = prm
        self.config = config
        self.metrics = metrics

    def defaults(self, options: Any, path: str) -> None:
        return None

    def prepare(self, item: pb.CandidatesItem, defaults: None, path: str) -> CandidatesCall:
        limit = self.config.max_string_bytes
        _problem(item, path, limit)
        for j, step in enumerate(item.prefix_steps):
            _check_step(step, f"{path}.prefix_steps[{j}]", limit)
        if not item.candidates:
            raise InvalidArgument(f"{path}.candidates", "at least one candidate is required")
        most = self.prm.config.max_candidates
        if len(item.candidates) > most:
            raise InvalidArgument(f"{path}.candidates", f"{len(item.candidates)} candidates exceed the PRM's "
                                  f"max_candidates ({most})")
        for k, step in enumerate(item.candidates):
            _check_step(step, f"{path}.candidates[{k}]", limit)
        c = render_candidates(self.prm.tokenizer, self.prm.format, item.problem, list(item.prefix_steps),
                              list(item.candidates))
        longest = len(c.prefix_ids) + max(len(s) for s in c.suffixes)
        if longest > self.prm.format.max_length:
            return CandidatesCall(item.id, None, Scored(
                "too_long", reason=f"the longest chain is {longest} tokens, over the PRM's max_length "
                                   f"({self.prm.format.max_length}); it is not truncated"))
        tokens = len(c.prefix_ids) + len(c.suffixes) * max(len(s) for s in c.suffixes)
        payload = (c.prefix_ids, c.suffixes, c.positions, c.spans, c.prefix_spans)
        return CandidatesCall(item.id, Job("candidates", payload, tokens))

    def submit(self, prepared: Sequence[CandidatesCall], *, wait_s: float = 0.0) -> list[Future]:
        runs = [c for c in prepared if c.job is not None]
        queued = iter(self.prm.engine.submit_many([c.job for c in runs], wait_s=wait_s))
        futures = [next(queued) if c.job is not None else _done(c.early) for c in prepared]
        return [_join([f], lambda scored, c=c: self._result(c, scored)) for c, f in zip(prepared, futures)]

    def _result(self, call: CandidatesCall, scored: Scored) -> pb.CandidatesResult:
        self.metrics.observe_item(self.kind, scored.status.upper(), scored.elapsed_ms / 1e3)
        if scored.status == "ok":
            scores = scored.value
            best = max(range(len(scores)), key=scores.__getitem__)
            return pb.CandidatesResult(id=call.id, status=pb.StepsResult.OK, judged=True, scores=scores, best=best,
                                       elapsed_ms=scored.elapsed_ms)
        status = pb.StepsResult.TOO_LONG if scored.status == "too_long" else _STATUS[scored.status]
        return pb.CandidatesResult(id=call.id, status=status, judged=False, best=-1, reason=scored.reason,
                                   elapsed_ms=scored.elapsed_ms)

    def invalid(self, item: pb.CandidatesItem, error: InvalidArgument) -> pb.CandidatesResult:
        self.metrics.observe_item(self.kind, "INVALID_ARGUMENT", 0.0)
        return pb.CandidatesResult(id=item.id, status=pb.StepsResult.INVALID_ARGUMENT, judged=False, best=-1,
                                   reason=str(error))
