"""Wrong reasoning chains with exact labels, made from correct synthetic chains.

`corrupt(problem, k, kind)` keeps the reference chain right before step k, makes step k wrong in one
named way (`CORRUPTIONS`, plus "answer": the answer line alone is wrong), and writes the later steps
*consistent with the error*: they carry the wrong value forward with correct arithmetic, as models do,
so the first error is the only place where a step contradicts what precedes it. Every operation of the
family is injective, so the final answer is then wrong as well, and `check_steps` of a corrupted chain
equals its labels: right before k, wrong from k on (`StepChain.labels()`).

A wrong step stays inside the generator's ranges (values in [1, max_value], factors in [2, max_factor],
operations from the config): an out-of-range number or a never-seen operation would label itself, and a
PRM would learn that cue instead of checking the arithmetic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterable

from tasks.stepdata import to_trl
from tasks.synthetic import (OPS, SyntheticConfig, chain_of, format_answer, format_step, reference_chain,
                             reference_steps)
from tasks.types import Problem, StepChain

__all__ = ["corrupt", "step_chains", "prm_records", "CORRUPTIONS", "KINDS"]


@dataclass(frozen=True)
class _Limits:
    """The generator's ranges, which a corrupted step keeps to: a slip that produced a number or an
    operation the correct chains never show would label itself, and a PRM would learn that cue instead."""

    max_value: int
    max_factor: int
    ops: tuple[str, ...]

    @classmethod
    def of(cls, problem: Problem) -> _Limits:
        meta, default = problem.metadata, SyntheticConfig()
        return cls(int(meta.get("max_value", default.max_value)), int(meta.get("max_factor", default.max_factor)),
                   tuple(meta.get("op_set", default.ops)))

    def ok(self, value: int | None) -> bool:
        return value is not None and 1 <= value <= self.max_value


def _near(x: int, rng: random.Random, lo: int, hi: int) -> int | None:
    """A plausible slip of x in [lo, hi]: off by 1, 2 or 10, or its two digits swapped (None: none fits)."""
    candidates = {x - 10, x - 2, x - 1, x + 1, x + 2, x + 10}
    if 10 <= x <= 99 and x % 10:
        candidates.add(int(str(x)[::-1]))
    fits = sorted(c for c in candidates if lo <= c <= hi and c != x)
    return rng.choice(fits) if fits else None


Wrong = tuple[int, str, int, int | None]  # (a, op, b, c) as written; c is None for an inexact division


# Each corruption writes a wrong step k from the true (a, op, b): returns (a', op', b', c'), or None
# when this draw found no slip (the caller then draws again). c' may be out of range; the caller checks.
def _wrong_result(a: int, op: str, b: int, rng: random.Random, lim: _Limits) -> Wrong | None:
    c2 = _near(OPS[op](a, b), rng, 1, lim.max_value)
    return None if c2 is None else (a, op, b, c2)


def _wrong_carry(a: int, op: str, b: int, rng: random.Random, lim: _Limits) -> Wrong | None:
    a2 = _near(a, rng, 1, lim.max_value)
    return None if a2 is None else (a2, op, b, OPS[op](a2, b))


def _wrong_operand(a: int, op: str, b: int, rng: random.Random, lim: _Limits) -> Wrong | None:
    b2 = _near(b, rng, 1, lim.max_value) if op in "+-" else _near(b, rng, 2, lim.max_factor)
    return None if b2 is None else (a, op, b2, OPS[op](a, b2))


def _wrong_operation(a: int, op: str, b: int, rng: random.Random, lim: _Limits) -> Wrong | None:
    others = [o for o in lim.ops if o != op and (o in "+-" or b <= lim.max_factor)]
    if not others:
        return None
    op2 = rng.choice(others)
    return a, op2, b, OPS[op2](a, b)


CORRUPTIONS: dict[str, Callable[[int, str, int, random.Random, _Limits], Wrong | None]] = {
    "result": _wrong_result,        # wrong arithmetic: 19 - 5 = 13
    "carry": _wrong_carry,          # wrong value carried from the step before: 18 - 5 = 13
    "operand": _wrong_operand,      # a number misread from the problem: 19 - 6 = 13
    "operation": _wrong_operation,  # another of the problem family's operations: 19 + 5 = 24
}
KINDS = (*CORRUPTIONS, "answer")    # "answer": every operation right, the answer line wrong


def corrupt(problem: Problem, k: int, kind: str, rng: random.Random, tries: int = 50) -> StepChain:
    """The reference chain with its first error at step k, of the named kind (see the module doc).

    kind "answer" needs k == number of operations (the answer line); the others need k below it.
    Every number written stays in the generator's range [1, max_value] (factors in [2, max_factor]) and
    a wrong operation is one of the config's: out-of-range values would give the error away. Raises
    ValueError when no draw of `tries` fits (e.g. a divisor downstream, or one operation only).
    """
    chain, lim = chain_of(problem), _Limits.of(problem)
    style = problem.metadata.get("answer_style", "hashes")
    vals, n = chain.values, len(chain.ops)
    ref = reference_steps(problem)
    meta = {"source": "synthetic", "kind": kind, "final_answer_correct": False}
    if kind == "answer":
        if k != n:
            raise ValueError(f"kind 'answer' corrupts the answer line, step {n}, not {k}")
        wrong = _near(chain.answer, rng, 1, lim.max_value)
        if wrong is None:
            raise ValueError(f"problem {problem.id}: no wrong answer fits [1, {lim.max_value}]")
        steps = ref[:n] + [format_answer(wrong, style)]
        return StepChain(problem.prompt, tuple(steps), n, problem.gold, f"{problem.id}-e{k}-{kind}", meta)
    if kind not in CORRUPTIONS or not 0 <= k < n:
        raise ValueError(f"need kind in {KINDS} and 0 <= k < {n}, got {kind!r}, {k}")
    op, b = chain.ops[k]
    for _ in range(tries):
        drawn = CORRUPTIONS[kind](vals[k], op, b, rng, lim)
        if drawn is None or not lim.ok(drawn[3]) or drawn[3] == vals[k + 1]:
            continue
        tail, w = [], drawn[3]
        for op_j, b_j in chain.ops[k + 1:]:
            w2 = OPS[op_j](w, b_j)
            if not lim.ok(w2):
                break
            tail.append(format_step(w, op_j, b_j, w2))
            w = w2
        else:
            steps = ref[:k] + [format_step(*drawn)] + tail + [format_answer(w, style)]
            return StepChain(problem.prompt, tuple(steps), k, problem.gold, f"{problem.id}-e{k}-{kind}", meta)
    raise ValueError(f"problem {problem.id}: no {kind!r} corruption of step {k} fits the ranges")


def step_chains(problems: Iterable[Problem], *, seed: int = 0, error_fraction: float = 0.5,
                kinds: tuple[str, ...] = KINDS) -> list[StepChain]:
    """One chain per problem: its reference chain, or with probability `error_fraction` a corrupted one
    (kind drawn from `kinds`, then the step: the answer line for "answer", else any operation)."""
    out = []
    for problem in problems:
        rng = random.Random(f"verirl-synthetic-chains:{seed}:{problem.id}")
        if rng.random() >= error_fraction:
            out.append(reference_chain(problem))
            continue
        n = len(chain_of(problem).ops)
        for _ in range(20):
            kind = rng.choice(kinds)
            try:
                out.append(corrupt(problem, n if kind == "answer" else rng.randrange(n), kind, rng))
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"problem {problem.id}: no corruption of kinds {kinds} succeeded")
    return out


def prm_records(problems: Iterable[Problem], *, seed: int = 0, error_fraction: float = 0.5) -> list[dict]:
    """PRM training data in TRL's format ({prompt, completions, labels}) from `step_chains`."""
    return [to_trl(c) for c in step_chains(problems, seed=seed, error_fraction=error_fraction)]
