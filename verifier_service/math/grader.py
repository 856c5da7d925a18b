"""Placeholder grader (exact string match) until the sympy grader lands."""

from __future__ import annotations

from .types import MathOptions, MathStatus, MathVerdict


def check(gold: str, response: str, options: MathOptions = MathOptions()) -> MathVerdict:
    answer = response.strip()
    if not answer:
        return MathVerdict(MathStatus.NO_ANSWER, reason="empty response")
    status = MathStatus.CORRECT if answer == gold.strip() else MathStatus.INCORRECT
    return MathVerdict(status, extracted=answer, normalized=answer, gold_normalized=gold.strip())
