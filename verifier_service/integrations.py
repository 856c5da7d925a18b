"""Adapters that make the verifier service the reward of other trainers: TRL, verl, OpenRLHF.

Each adapter turns one call of the trainer's reward function into one batched
CheckMath (or RunCode) call through verifier_service.client, so a batch of
completions costs one round trip, not one per sample. Signatures follow the
trainers (see ../shared/REFERENCE.md):

* TRL GRPOTrainer: `trl_reward(...)` / `trl_reward_async(...)` build
  `reward(prompts, completions, completion_ids=None, **columns) -> list[float | None]`.
  A not-judged item (TIMEOUT, PARSE_ERROR, ...) is None by default, which TRL
  excludes from the loss; `on_unjudged="zero"` scores it 0.0 instead, by choice.
* verl: `compute_score(data_source, solution_str, ground_truth, extra_info=None)`
  returns {"score", "status", "judged"}; `compute_score_batch` is the batched form
  of verl's BatchRewardManager. The address comes from $VERIRL_ADDRESS.
* OpenRLHF: `reward_func(queries, prompts, labels)` returns {"rewards", "scores",
  "extra_logs"} as torch tensors, or as plain lists when torch is not installed.

verl and OpenRLHF cannot exclude a sample, so a not-judged item scores 0.0
there; it is never silent: "judged" (0.0/1.0) is logged with every score.
A call that fails as a whole (no server reachable within the deadline) raises
VerifierCallError: a trainer should stop rather than learn from made-up rewards.

The module-level verl/OpenRLHF functions open their channel on first use, in the
process that calls them (a gRPC channel must not cross a fork).

Every factory passes `**access` (token=, tls=, tls_ca=, tls_cert=, tls_key=,
tls_server_name=) to the client; left out, each comes from the environment
($VERIRL_AUTH_TOKEN, $VERIRL_TLS_CA, ...), which is how the module-level entry
points reach a server that requires a token or TLS (docs/security.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .client import DEFAULT_TIMEOUT_S, AsyncVerifierClient, VerifierClient
from .client_types import MathItem, Result
from .config import DEFAULT_ADDRESS

__all__ = [
    "trl_reward", "trl_reward_async", "completion_text", "compute_score", "compute_score_batch",
    "make_verl_compute_score", "make_verl_batch_compute_score", "reward_func", "make_openrlhf_reward_func",
    "ADDRESS_ENV", "DEFAULT_ADDRESS",
]

ADDRESS_ENV = "VERIRL_ADDRESS"

# What a not-judged item scores for TRL, chosen once when the reward function is built.
UNJUDGED = {"none": None, "zero": 0.0}
# The dataset column that holds the reference, per kind, when none is named.
DEFAULT_GOLD_COLUMN = {"math": "answer", "code": "tests"}


def _address(address: str | Sequence[str] | None) -> str | Sequence[str]:
    return address if address is not None else os.environ.get(ADDRESS_ENV, DEFAULT_ADDRESS)


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The text to grade: a string as is; for a chat message list, the last assistant message.

    Content given as parts ([{"type": "text", "text": ...}]) is joined.
    """
    if isinstance(completion, str):
        return completion
    for message in reversed(completion):
        if message.get("role") == "assistant":
            content = message.get("content") or ""
            if isinstance(content, str):
                return content
            return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return ""


def _math_items(completions: Sequence[Any], golds: Sequence[Any], _columns: Mapping[str, Any]) -> list[MathItem]:
    return [MathItem(id=str(i), response=completion_text(c), gold=str(g))
            for i, (c, g) in enumerate(zip(completions, golds, strict=True))]


def _code_items(completions: Sequence[Any], tests: Sequence[Any], columns: Mapping[str, Any]) -> list[dict]:
    """A tests column holds CodeTests as a dict (or its JSON); an optional "language" column."""
    languages = columns.get("language") or ["python"] * len(completions)
    return [{"id": str(i), "language": lang, "response": completion_text(c),
             "tests": json.loads(t) if isinstance(t, str) else t}
            for i, (c, t, lang) in enumerate(zip(completions, tests, languages, strict=True))]


_ITEMS = {"math": _math_items, "code": _code_items}
# Works for both clients: the async client's methods return awaitables.
_CALL = {"math": lambda client, items, options: client.check_math(items, options),
         "code": lambda client, items, options: client.run_code(items)}


def _setup(kind: str, gold_column: str | None, on_unjudged: str) -> tuple[Callable, str, float | None]:
    if kind not in _ITEMS:
        raise ValueError(f"kind must be one of {sorted(_ITEMS)}, got {kind!r}")
    if on_unjudged not in UNJUDGED:
        raise ValueError(f"on_unjudged must be one of {sorted(UNJUDGED)}, got {on_unjudged!r}")
    return _ITEMS[kind], gold_column or DEFAULT_GOLD_COLUMN[kind], UNJUDGED[on_unjudged]


def _golds(columns: Mapping[str, Any], column: str) -> Sequence[Any]:
    if column not in columns:
        raise ValueError(f"dataset column {column!r} was not passed to the reward function "
                         f"(columns: {sorted(columns)}); set gold_column=")
    return columns[column]


def _scores(results: Sequence[Result], unjudged: float | None) -> list[float | None]:
    return [r.score if r.judged else unjudged for r in results]


def trl_reward(address: str | Sequence[str] | None = None, *, kind: str = "math", gold_column: str | None = None,
               on_unjudged: str = "none", options: Mapping[str, Any] | None = None,
               timeout: float = DEFAULT_TIMEOUT_S, **access: Any) -> Callable[..., list[float | None]]:
    """A TRL GRPOTrainer reward function backed by the service at `address` (default $VERIRL_ADDRESS).

    kind "math": the `gold_column` (default "answer") holds the reference answer or solution;
    kind "code": it (default "tests") holds CodeTests as a dict or JSON. The function's
    __name__ ("verirl_math") is what TRL logs the reward under; `.client` is the client to close.
    """
    build, column, unjudged = _setup(kind, gold_column, on_unjudged)
    call = _CALL[kind]
    client = VerifierClient(_address(address), timeout=timeout, **access)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
               **columns: Any) -> list[float | None]:
        return _scores(call(client, build(completions, _golds(columns, column), columns), options), unjudged)

    reward.__name__ = reward.__qualname__ = f"verirl_{kind}"
    reward.client = client  # type: ignore[attr-defined]
    return reward


def trl_reward_async(address: str | Sequence[str] | None = None, *, kind: str = "math",
                     gold_column: str | None = None, on_unjudged: str = "none",
                     options: Mapping[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                     **access: Any) -> Callable:
    """As trl_reward, as an `async def` (TRL awaits several async reward functions concurrently).
    The client's channels belong to the event loop of the first call."""
    build, column, unjudged = _setup(kind, gold_column, on_unjudged)
    call = _CALL[kind]
    client = AsyncVerifierClient(_address(address), timeout=timeout, **access)

    async def reward(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                     **columns: Any) -> list[float | None]:
        items = build(completions, _golds(columns, column), columns)
        return _scores(await call(client, items, options), unjudged)

    reward.__name__ = reward.__qualname__ = f"verirl_{kind}"
    reward.client = client  # type: ignore[attr-defined]
    return reward


def _gold_text(ground_truth: Any) -> str:
    if isinstance(ground_truth, bool) or not isinstance(ground_truth, (str, int, float)):
        raise ValueError(f"ground_truth must be a string or a number, got {type(ground_truth).__name__}")
    return str(ground_truth)


def _verl_record(result: Result) -> dict[str, Any]:
    # verl averages numeric extra keys in its metrics; status is a string for the dumps.
    return {"score": result.score, "judged": float(result.judged), "status": result.status}


def make_verl_compute_score(address: str | Sequence[str] | None = None, *,
                            options: Mapping[str, Any] | None = None,
                            timeout: float = DEFAULT_TIMEOUT_S, **access: Any) -> Callable[..., dict[str, Any]]:
    """verl's per-sample `compute_score` (math) for the service at `address`."""
    client = VerifierClient(_address(address), timeout=timeout, **access)

    def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None,
                      **kw: Any) -> dict[str, Any]:
        [result] = client.check_math([MathItem("0", solution_str, _gold_text(ground_truth))], options)
        return _verl_record(result)

    return compute_score


def make_verl_batch_compute_score(address: str | Sequence[str] | None = None, *,
                                  options: Mapping[str, Any] | None = None,
                                  timeout: float = DEFAULT_TIMEOUT_S,
                                  **access: Any) -> Callable[..., list[dict[str, Any]]]:
    """verl's BatchRewardManager form: lists in, one dict per sample out, one RPC per batch."""
    client = VerifierClient(_address(address), timeout=timeout, **access)

    def compute_score(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                      extra_infos: Sequence[Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
        items = [MathItem(str(i), s, _gold_text(g))
                 for i, (s, g) in enumerate(zip(solution_strs, ground_truths, strict=True))]
        return [_verl_record(r) for r in client.check_math(items, options)]

    return compute_score


def _to_tensor(values: list[float]) -> Any:
    """A float32 torch tensor, or the list itself where torch is not installed (this
    package does not depend on torch; OpenRLHF always has it)."""
    try:
        import torch
    except ImportError:
        return values
    return torch.tensor(values, dtype=torch.float32)


def make_openrlhf_reward_func(address: str | Sequence[str] | None = None, *,
                              options: Mapping[str, Any] | None = None,
                              timeout: float = DEFAULT_TIMEOUT_S, **access: Any) -> Callable[..., dict[str, Any]]:
    """OpenRLHF's `reward_func` (math): labels are the golds.

    A query is prompt + response; the response is what follows the prompt prefix
    (a query that does not start with its prompt is graded whole).
    """
    client = VerifierClient(_address(address), timeout=timeout, **access)

    def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any],
                    **kw: Any) -> dict[str, Any]:
        responses = [q[len(p):] if q.startswith(p) else q for q, p in zip(queries, prompts, strict=True)]
        items = [MathItem(str(i), r, _gold_text(g)) for i, (r, g) in enumerate(zip(responses, labels, strict=True))]
        results = client.check_math(items, options)
        scores = [r.score for r in results]
        return {"rewards": _to_tensor(scores), "scores": _to_tensor(list(scores)),
                "extra_logs": {"verirl_judged": _to_tensor([float(r.judged) for r in results])}}

    return reward_func


_DEFAULTS: dict[str, Callable[..., Any]] = {}


def _default(name: str, factory: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    if name not in _DEFAULTS:
        _DEFAULTS[name] = factory()
    return _DEFAULTS[name]


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None,
                  **kw: Any) -> dict[str, Any]:
    """verl entry point; the service address is $VERIRL_ADDRESS (default 127.0.0.1:50051)."""
    return _default("verl", make_verl_compute_score)(data_source, solution_str, ground_truth, extra_info, **kw)


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """verl BatchRewardManager entry point; address from $VERIRL_ADDRESS."""
    return _default("verl_batch", make_verl_batch_compute_score)(
        data_sources, solution_strs, ground_truths, extra_infos, **kw)


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kw: Any) -> dict[str, Any]:
    """OpenRLHF entry point (a file that does `from verifier_service.integrations import reward_func`,
    given to --remote_rm_url); address from $VERIRL_ADDRESS."""
    return _default("openrlhf", make_openrlhf_reward_func)(queries, prompts, labels, **kw)
