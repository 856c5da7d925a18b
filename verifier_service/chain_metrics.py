"""Summaries of scored reasoning chains: ProcessBench metrics and best-of-N / majority / pass@k curves.

Pure functions over `ChainRecord`s (one per evaluated "steps" line); `verirl eval` builds the records
from the service's results, and `report.py` draws what these return. Nothing here talks to the service:
answer equivalence (which final answers count as the same for voting) is decided before, by the math
checker, and arrives as `ChainRecord.answer`, a cluster key.

Definitions (what the issue left open is decided here and said in docs/eval_chains.md):
- ProcessBench (Zheng et al. 2024): on chains labelled erroneous, a hit is a predicted first error
  equal to the label; on chains labelled correct (-1), a hit is a prediction of -1. F1 is the harmonic
  mean of the two accuracies.
- pass@k: the unbiased estimator of Chen et al. 2021, 1 - C(n-c, k) / C(n, k), per group, averaged.
- Curves at N = 1, 2, 4, ... and the largest group size: for each group of at least N responses, the
  average over ALL subsets of N responses: exact for best-of-N (closed form); for the votes exact when
  there are at most `draws` subsets, else over `draws` seeded random subsets. Majority vote picks the
  most frequent answer key, PRM best-of-N the response with the highest aggregate score, weighted
  best-of-N the answer key with the largest sum of aggregate scores (Li et al. 2023, Uesato et al.
  2022). Ties go to the one first in file order. The two PRM curves only use groups whose every
  response the PRM scored. A response with no extracted answer does not vote; a subset in which nobody
  votes counts as wrong.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ChainRecord", "ProcessBench", "Curves", "ChainSummary", "processbench", "pass_at_k", "curve_sizes",
           "curves", "predicted_first_error", "f1_by_threshold", "labelled_step_scores", "summarize", "DRAWS"]

DRAWS = 256  # subsets per group and N before averaging turns from exact to sampled


@dataclass(frozen=True)
class ChainRecord:
    """One evaluated chain. `aggregate`/`first_error` are None when the PRM did not judge it; `correct`
    is the math checker's verdict on the final answer (None: no gold, or not judged); `answer` is the
    key of its equivalence class of final answers (None: nothing extracted)."""

    id: str
    step_scores: tuple[float, ...] = ()
    aggregate: float | None = None
    first_error: int | None = None
    label: int | None = None
    group: str | None = None
    correct: bool | None = None
    answer: str | None = None


@dataclass(frozen=True)
class ProcessBench:
    erroneous_accuracy: float | None  # None where there is no chain of that kind
    correct_accuracy: float | None
    f1: float | None
    erroneous: int                    # labelled chains of each kind that the PRM judged
    correct: int


@dataclass(frozen=True)
class Curves:
    """Accuracy against N; each tuple is aligned with `sizes`; `groups[i]` groups have >= sizes[i] responses,
    `prm_groups[i]` of them scored by the PRM throughout (the PRM curves' groups; None where 0)."""

    sizes: tuple[int, ...]
    groups: tuple[int, ...]
    prm_groups: tuple[int, ...]
    majority: tuple[float, ...]
    best_of_n: tuple[float | None, ...]
    weighted_best_of_n: tuple[float | None, ...]
    pass_at_k: tuple[float, ...]
    subsets: str  # how the average over subsets was taken, for the report


@dataclass(frozen=True)
class ChainSummary:
    chains: int                      # "steps" lines
    judged: int                      # of them, scored by the PRM
    labelled: int
    answers_checked: int             # final answers the math checker judged against a gold
    answer_accuracy: float | None    # correct / answers_checked
    processbench: ProcessBench | None
    curves: Curves | None
    grouped_out: dict[str, int] = field(default_factory=dict)  # why records were left out of the groups

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [f"chains: {self.chains} ({self.judged} scored by the PRM, {self.labelled} labelled, "
                 f"{self.answers_checked} final answers checked)"]
        if self.answer_accuracy is not None:
            lines.append(f"final answer accuracy: {self.answer_accuracy:.4f}")
        pb = self.processbench
        if pb is not None:
            lines.append(f"ProcessBench: erroneous acc {_fmt(pb.erroneous_accuracy)} ({pb.erroneous} chains), "
                         f"correct acc {_fmt(pb.correct_accuracy)} ({pb.correct} chains), F1 {_fmt(pb.f1)}")
        c = self.curves
        if c is not None:
            lines.append(f"{'N':>5} {'groups':>6} {'majority':>9} {'best-of-N':>10} {'weighted':>9} {'pass@N':>7}")
            for n, g, m, b, w, p in zip(c.sizes, c.groups, c.majority, c.best_of_n, c.weighted_best_of_n, c.pass_at_k):
                lines.append(f"{n:>5} {g:>6} {m:>9.4f} {_fmt(b):>10} {_fmt(w):>9} {p:>7.4f}")
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _harmonic(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def processbench(records: Iterable[ChainRecord]) -> ProcessBench | None:
    """ProcessBench's metrics over the labelled chains the PRM judged (None if there are none)."""
    hits = {True: 0, False: 0}   # keyed by "labelled erroneous"
    seen = {True: 0, False: 0}
    for r in records:
        if r.label is None or r.first_error is None:
            continue
        wrong = r.label != -1
        seen[wrong] += 1
        hits[wrong] += int(r.first_error == r.label)
    if not seen[True] and not seen[False]:
        return None
    err = hits[True] / seen[True] if seen[True] else None
    ok = hits[False] / seen[False] if seen[False] else None
    return ProcessBench(err, ok, _harmonic(err, ok), seen[True], seen[False])


def predicted_first_error(step_scores: Sequence[float], threshold: float) -> int:
    """The first step scored below `threshold`, -1 if none (the service's rule, for threshold sweeps)."""
    return next((i for i, s in enumerate(step_scores) if s < threshold), -1)


def f1_by_threshold(records: Sequence[ChainRecord], thresholds: Sequence[float]) -> list[float | None]:
    """ProcessBench F1 if the first error were predicted at each threshold instead of the service's."""
    labelled = [r for r in records if r.label is not None and r.first_error is not None]
    out = []
    for t in thresholds:
        pb = processbench(ChainRecord(r.id, r.step_scores, r.aggregate, predicted_first_error(r.step_scores, t),
                                      r.label) for r in labelled)
        out.append(None if pb is None else pb.f1)
    return out


def labelled_step_scores(records: Iterable[ChainRecord]) -> tuple[list[float], list[float]]:
    """(scores of steps labelled right, scores of labelled first errors). Steps after a first error have
    no label of their own in ProcessBench, so they are left out."""
    good, bad = [], []
    for r in records:
        if r.label is None or r.first_error is None:
            continue
        end = len(r.step_scores) if r.label == -1 else r.label
        good.extend(r.step_scores[:end])
        if r.label != -1 and r.label < len(r.step_scores):
            bad.append(r.step_scores[r.label])
    return good, bad


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that k of n samples, c of them correct, drawn without replacement, hold a correct one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): the ratio of binomials without big integers (Chen et al. 2021)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def curve_sizes(largest: int) -> tuple[int, ...]:
    """1, 2, 4, ... below `largest`, then `largest` itself."""
    sizes = [1 << i for i in range(largest.bit_length()) if 1 << i < largest]
    return (*sizes, largest) if largest >= 1 else ()


@dataclass(frozen=True)
class _Group:
    """One group's members as plain arrays in file order (the subset loops are the hot path)."""

    keys: tuple[int, ...]                 # answer class of each member; -1: nothing extracted
    key_correct: tuple[bool, ...]         # per answer class: the checker's verdict on it
    weights: tuple[float, ...] | None     # PRM aggregates; None if some member was not scored
    correct: tuple[bool, ...]

    @classmethod
    def of(cls, members: Sequence[ChainRecord]) -> _Group:
        ids: dict[str, int] = {}
        keys, key_correct = [], []
        for r in members:
            if r.answer is None:
                keys.append(-1)
                continue
            if r.answer not in ids:
                ids[r.answer] = len(ids)
                key_correct.append(bool(r.correct))  # equivalent answers share a verdict
            keys.append(ids[r.answer])
        scored = all(r.aggregate is not None for r in members)
        return cls(tuple(keys), tuple(key_correct), tuple(r.aggregate for r in members) if scored else None,
                   tuple(bool(r.correct) for r in members))


def _vote(group: _Group, subset: Sequence[int], weights: Sequence[float] | None) -> bool:
    """Majority vote (weights None) or weighted vote over member indices in file order: whether the
    winning answer is correct. The dict keeps first appearance, so a tie goes to the first in file order."""
    totals: dict[int, float] = {}
    keys = group.keys
    for i in subset:
        k = keys[i]
        if k >= 0:
            totals[k] = totals.get(k, 0.0) + (1.0 if weights is None else weights[i])
    if not totals:
        return False
    best = max(totals.values())
    return group.key_correct[next(k for k, v in totals.items() if v == best)]


def _best_of_n(group: _Group, size: int) -> float:
    """PRM best-of-N averaged over ALL subsets of `size`, in closed form: the member ranked r-th (highest
    aggregate first, ties to the first in file order) is the pick of the C(n-1-r, size-1) subsets made of
    it and members ranked below it."""
    n, weights = len(group.correct), group.weights
    order = sorted(range(n), key=lambda i: (-weights[i], i))
    hits = sum(math.comb(n - 1 - r, size - 1) for r, i in enumerate(order) if group.correct[i])
    return hits / math.comb(n, size)


def _subsets(n: int, size: int, draws: int, rng: random.Random) -> list[tuple[int, ...]]:
    if math.comb(n, size) <= draws:
        return list(itertools.combinations(range(n), size))
    return [tuple(sorted(rng.sample(range(n), size))) for _ in range(draws)]


def curves(records: Iterable[ChainRecord], *, draws: int = DRAWS, seed: int = 0) -> tuple[Curves | None, dict]:
    """The curves over the grouped records with a checked final answer; also the count of grouped records
    left out, by reason. Majority vote and pass@N need no PRM; the two PRM curves use the groups whose
    every member the PRM scored (`prm_groups`), and are None at an N where there is none.
    None when no group has a usable record."""
    members: dict[str, list[ChainRecord]] = {}
    left_out: dict[str, int] = {}
    for r in records:
        if r.group is None:
            continue
        if r.correct is None:
            left_out["no checked final answer"] = left_out.get("no checked final answer", 0) + 1
            continue
        members.setdefault(r.group, []).append(r)
    if not members:
        return None, left_out
    unscored = sum(r.aggregate is None for g in members.values() for r in g)
    if unscored:
        left_out["PRM curves only: not scored by the PRM"] = unscored
    groups = {name: _Group.of(m) for name, m in members.items()}
    sizes = curve_sizes(max(len(g.correct) for g in groups.values()))
    rows: dict[str, list[float | None]] = {"majority": [], "best": [], "weighted": [], "pass": []}
    counts, prm_counts = [], []
    for size in sizes:
        majority = passes = best = weighted = 0.0
        used = scored = 0
        for name, g in groups.items():
            n = len(g.correct)
            if n < size:
                continue
            used += 1
            subsets = _subsets(n, size, draws, random.Random(f"{seed}:{name}:{size}"))
            majority += sum(_vote(g, s, None) for s in subsets) / len(subsets)
            passes += pass_at_k(n, sum(g.correct), size)
            if g.weights is not None:
                scored += 1
                best += _best_of_n(g, size)
                weighted += sum(_vote(g, s, g.weights) for s in subsets) / len(subsets)
        counts.append(used)
        prm_counts.append(scored)
        rows["majority"].append(majority / used)
        rows["pass"].append(passes / used)
        rows["best"].append(best / scored if scored else None)
        rows["weighted"].append(weighted / scored if scored else None)
    how = (f"per group and N: majority and weighted votes over every subset of N responses when there are "
           f"at most {draws}, else over {draws} random subsets (seed {seed}); best-of-N exact over all subsets")
    return Curves(sizes, tuple(counts), tuple(prm_counts), tuple(rows["majority"]), tuple(rows["best"]),
                  tuple(rows["weighted"]), tuple(rows["pass"]), how), left_out


def summarize(records: Sequence[ChainRecord], *, draws: int = DRAWS, seed: int = 0) -> ChainSummary:
    checked = [r.correct for r in records if r.correct is not None]
    curve, left_out = curves(records, draws=draws, seed=seed)
    return ChainSummary(
        chains=len(records), judged=sum(r.aggregate is not None for r in records),
        labelled=sum(r.label is not None for r in records), answers_checked=len(checked),
        answer_accuracy=sum(checked) / len(checked) if checked else None,
        processbench=processbench(records), curves=curve, grouped_out=left_out)
