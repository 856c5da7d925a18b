"""Rewards from the verifier service, through `verifier_service.client` only (a real gRPC call).

A problem names the checks that apply to it (`Problem.checks`); the config gives each check a weight
(0 turns it off). For every completion, reward = sum over its applicable checks of weight * score.
The checks of one batch go out as concurrent batched calls, one per kind (the client splits a kind's
batch into chunks and sends those concurrently as well).

A check that could not judge (judged=False: TIMEOUT, an internal error, no PRM loaded ...) is never
read as a wrong answer. It is counted (by check and status) and, by `unjudged`:
    "exclude"   the completion is left out of advantages and loss (`valid` False)
    "penalize"  the completion's reward is `penalty` (e.g. to punish code that hangs the checker)

The "steps" check also returns one PRM score per step (for process supervision): steps are the
non-blank pieces of the completion between separators, sent as a list so that the server scores
exactly the steps whose token positions we know (`step_token_ends`).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from tasks.types import Problem

__all__ = ["RewardSettings", "Scored", "score_completions", "merge_scored", "split_steps", "step_token_ends", "UNJUDGED_POLICIES"]

UNJUDGED_POLICIES = ("exclude", "penalize")


@dataclass(frozen=True)
class RewardSettings:
    math: float = 1.0           # weight of the math check (final answer vs gold)
    code: float = 0.0           # weight of the code check (tests pass)
    steps: float = 0.0          # weight of the PRM's aggregated chain score as an outcome reward
    want_step_scores: bool = False  # ask for per-step scores even at steps weight 0 (process advantages)
    step_separator: str = "\n"
    unjudged: str = "exclude"
    penalty: float = 0.0
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.unjudged not in UNJUDGED_POLICIES:
            raise ValueError(f"unjudged must be one of {UNJUDGED_POLICIES}, got {self.unjudged!r}")


@dataclass(frozen=True)
class Scored:
    rewards: list[float]                       # one per completion (penalty where penalised, 0.0 where excluded)
    valid: list[bool]                          # False: excluded (a check could not judge)
    step_scores: list[tuple[float, ...] | None]  # per completion, when the steps check ran and judged
    step_char_ends: list[tuple[int, ...]]      # per completion: end offset (chars) of each step sent
    statuses: dict[str, Counter] = field(default_factory=dict)  # check -> status -> count
    check_means: dict[str, float] = field(default_factory=dict)  # check -> mean score over judged items
    unjudged: int = 0
    seconds: float = 0.0
    judged_counts: dict[str, int] = field(default_factory=dict)  # check -> judged items (for merging means)

    def rows(self, index: Sequence[int]) -> Scored:
        """The completions `index` (per-completion lists); the counts (statuses, means, unjudged,
        seconds) still describe every completion scored, as the metrics report them."""
        return dataclasses.replace(self, rewards=[self.rewards[i] for i in index],
                                   valid=[self.valid[i] for i in index],
                                   step_scores=[self.step_scores[i] for i in index],
                                   step_char_ends=[self.step_char_ends[i] for i in index])


def merge_scored(parts: Sequence[Scored]) -> Scored:
    """The `Scored` of consecutive batches, as if scored in one call (`seconds` add up)."""
    statuses: dict[str, Counter] = {}
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for p in parts:
        for kind, c in p.statuses.items():
            statuses[kind] = statuses.get(kind, Counter()) + c
        for kind, n in p.judged_counts.items():
            if n:
                sums[kind] = sums.get(kind, 0.0) + p.check_means[kind] * n
            counts[kind] = counts.get(kind, 0) + n
    return Scored(rewards=[r for p in parts for r in p.rewards], valid=[v for p in parts for v in p.valid],
                  step_scores=[s for p in parts for s in p.step_scores],
                  step_char_ends=[e for p in parts for e in p.step_char_ends], statuses=statuses,
                  check_means={k: sums[k] / n if n else float("nan") for k, n in counts.items()},
                  unjudged=sum(p.unjudged for p in parts), seconds=sum(p.seconds for p in parts),
                  judged_counts=counts)


def split_steps(text: str, separator: str) -> list[tuple[str, int]]:
    """The non-blank pieces of `text` between separators, stripped, each with its end offset in `text`."""
    out, start = [], 0
    for piece in text.split(separator):
        stripped = piece.strip()
        if stripped:
            out.append((stripped, start + len(piece.rstrip())))
        start += len(piece) + len(separator)
    return out


def step_token_ends(token_ids: Sequence[int], char_ends: Sequence[int], tokenizer: Any) -> list[int]:
    """Index of the token holding the last character of each step, from the cumulative length of the
    tokens decoded one by one. Exact for the char-level tiny tokenizer and for byte-level BPE on ASCII;
    a multi-byte character split over tokens can shift a boundary by a token."""
    pieces = tokenizer.batch_decode([[t] for t in token_ids], skip_special_tokens=True)
    ends, k, reached = [], 0, len(pieces[0]) if pieces else 0
    for end in char_ends:
        while k < len(pieces) - 1 and reached < end:
            k += 1
            reached += len(pieces[k])
        ends.append(k)
    return ends


def _items(kind: str, problems: Sequence[Problem], texts: Sequence[str], steps: list[list[tuple[str, int]]],
           index: list[int]) -> list[dict[str, Any]]:
    if kind == "math":
        return [{"id": str(i), "response": texts[i], "gold": problems[i].gold} for i in index]
    if kind == "code":
        return [{"id": str(i), "response": texts[i], "tests": dict(problems[i].tests or {}),
                 "language": problems[i].metadata.get("language", "python")} for i in index]
    return [{"id": str(i), "problem": problems[i].prompt, "steps": [s for s, _ in steps[i]]}
            | ({"gold": problems[i].gold} if problems[i].gold else {}) for i in index]


def score_completions(client: Any, problems: Sequence[Problem], texts: Sequence[str],
                      settings: RewardSettings) -> Scored:
    """Rewards of `texts[i]` as an answer to `problems[i]`; `client` is a VerifierClient."""
    start = time.monotonic()
    n = len(texts)
    weights = {"math": settings.math, "code": settings.code, "steps": settings.steps}
    steps = [split_steps(t, settings.step_separator) for t in texts]
    wanted: dict[str, list[int]] = {}
    stepless: list[int] = []  # a completion with no step (empty, or only separators): nothing for a PRM
    for kind, weight in weights.items():
        use = weight != 0 or (kind == "steps" and settings.want_step_scores)
        index = [i for i in range(n) if use and kind in problems[i].checks]
        if kind == "steps":
            stepless = [i for i in index if not steps[i]]
            index = [i for i in index if steps[i]]
        if index:
            wanted[kind] = index
    calls = {"math": client.check_math, "code": client.run_code, "steps": client.score_steps}
    with ThreadPoolExecutor(max(1, len(wanted))) as pool:
        futures = {kind: pool.submit(calls[kind], _items(kind, problems, texts, steps, index),
                                     timeout=settings.timeout_s) for kind, index in wanted.items()}
        results = {kind: future.result() for kind, future in futures.items()}

    rewards, judged_all = [0.0] * n, [True] * n
    step_scores: list[tuple[float, ...] | None] = [None] * n
    statuses: dict[str, Counter] = {}
    means: dict[str, float] = {}
    counts: dict[str, int] = {}
    if stepless:  # not sent (the server would refuse the request); unjudged, as a status of their own
        statuses["steps"] = Counter({"EMPTY": len(stepless)})
        for i in stepless:
            judged_all[i] = False
    for kind, index in wanted.items():
        statuses[kind] = statuses.get(kind, Counter()) + Counter(r.status for r in results[kind])
        judged_scores = [r.score for r in results[kind] if r.judged]
        means[kind] = sum(judged_scores) / len(judged_scores) if judged_scores else float("nan")
        counts[kind] = len(judged_scores)
        for i, result in zip(index, results[kind]):
            if not result.judged:
                judged_all[i] = False
                continue
            rewards[i] += weights[kind] * result.score
            if kind == "steps":
                step_scores[i] = tuple(result.step_scores)
    valid = [True] * n
    for i in range(n):
        if not judged_all[i]:
            if settings.unjudged == "penalize":
                rewards[i] = settings.penalty
            else:
                rewards[i], valid[i] = 0.0, False
    return Scored(rewards=rewards, valid=valid, step_scores=step_scores,
                  step_char_ends=[tuple(e for _, e in s) for s in steps], statuses=statuses,
                  check_means=means, unjudged=judged_all.count(False), seconds=time.monotonic() - start,
                  judged_counts=counts)
