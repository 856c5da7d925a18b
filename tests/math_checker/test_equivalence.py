"""Table-driven tests of the math checker (verifier_service.math.check)."""

from __future__ import annotations

import pytest

from verifier_service.math import MathOptions, MathStatus, check

from .equivalence_cases import CATEGORIES, EXTRACTION, GOLD_SOLUTIONS, PRECISION

TABLE = [(name, *case) for name, cases in CATEGORIES.items() for case in cases]


def _id(case) -> str:
    return f"{case[0]}:{case[1]!r}~{case[2]!r}"


def test_table_is_large_and_balanced():
    expected = [c[3] for c in TABLE] + [c[2] for c in EXTRACTION + GOLD_SOLUTIONS + PRECISION]
    assert len(expected) >= 300
    assert sum(1 for e in expected if e is False) >= 100, "the table needs must-not-match cases"


@pytest.mark.parametrize("category,gold,answer,expected", TABLE, ids=[_id(c) for c in TABLE])
def test_equivalence(category, gold, answer, expected):
    verdict = check(gold, f"The answer is $\\boxed{{{answer}}}$.")
    assert verdict.judged, verdict
    assert verdict.correct is expected, verdict


# In these categories the gold decides how the response is read (a letter, a named variable, a base).
SYMMETRIC = [case for case in TABLE if case[0] not in ("choices", "equations", "bases", "several")]


@pytest.mark.parametrize("category,gold,answer,expected", SYMMETRIC, ids=[_id(c) for c in SYMMETRIC])
def test_equivalence_is_symmetric_for_values(category, gold, answer, expected):
    """Swapping gold and response gives the same verdict."""
    verdict = check(answer, f"\\boxed{{{gold}}}")
    assert verdict.correct is expected, verdict


@pytest.mark.parametrize("gold,response,expected", EXTRACTION, ids=[f"{g!r}<-{r[:30]!r}" for g, r, _ in EXTRACTION])
def test_extraction_from_whole_responses(gold, response, expected):
    verdict = check(gold, response)
    if expected is None:
        assert verdict.status is MathStatus.NO_ANSWER
        assert not verdict.correct
    else:
        assert verdict.correct is expected, verdict


@pytest.mark.parametrize("gold,answer,expected", GOLD_SOLUTIONS)
def test_gold_given_as_a_full_solution(gold, answer, expected):
    assert check(gold, f"\\boxed{{{answer}}}").correct is expected


@pytest.mark.parametrize("gold,answer,expected,precision", PRECISION)
def test_precision_rounds_both_sides(gold, answer, expected, precision):
    verdict = check(gold, f"\\boxed{{{answer}}}", MathOptions(precision=precision))
    assert verdict.correct is expected, verdict


def test_rel_tol_can_be_loosened():
    assert not check("\\pi", "\\boxed{3.1416}").correct
    assert check("\\pi", "\\boxed{3.1416}", MathOptions(rel_tol=1e-4)).correct


def test_verdict_fields():
    verdict = check("\\frac{1}{2}", "so we get \\boxed{0.5}")
    assert verdict.status is MathStatus.CORRECT and verdict.score == 1.0
    assert verdict.extracted == "0.5"
    assert verdict.normalized and verdict.gold_normalized
    assert verdict.reason.startswith("BOXED_LAST")


def test_unreadable_or_empty_gold_is_not_judged():
    assert check("", "\\boxed{1}").status is MathStatus.PARSE_ERROR
    verdict = check("\\frac{1}{", "\\boxed{2}")
    assert verdict.status is MathStatus.PARSE_ERROR and not verdict.judged


def test_no_answer_is_judged_wrong():
    verdict = check("5", "I don't know")
    assert verdict.status is MathStatus.NO_ANSWER and verdict.judged and verdict.score == 0.0
