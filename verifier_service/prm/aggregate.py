"""Step scores -> one score of the chain, and the first step under a threshold.

Named functions picked from a table by the request's aggregation (or the model's default):
  min   the chain is as good as its weakest step (the usual best-of-N choice, "Let's Verify Step by Step")
  prod  P(every step correct) if the step scores were independent
  last  the score at the last step (a PRM trained to judge the whole prefix)
  mean  the average step score
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

__all__ = ["AGGREGATE", "aggregate", "first_error"]


def _min(scores: Sequence[float]) -> float:
    return min(scores)


def _prod(scores: Sequence[float]) -> float:
    return math.prod(scores)


def _last(scores: Sequence[float]) -> float:
    return scores[-1]


def _mean(scores: Sequence[float]) -> float:
    return math.fsum(scores) / len(scores)


AGGREGATE: dict[str, Callable[[Sequence[float]], float]] = {"min": _min, "prod": _prod, "last": _last, "mean": _mean}


def aggregate(name: str, scores: Sequence[float]) -> float:
    """One score of a non-empty chain of step scores."""
    return AGGREGATE[name](scores)


def first_error(scores: Sequence[float], threshold: float | None) -> int:
    """Index of the first step scored below `threshold`; -1 if none or no threshold."""
    if threshold is None:
        return -1
    return next((i for i, s in enumerate(scores) if s < threshold), -1)
