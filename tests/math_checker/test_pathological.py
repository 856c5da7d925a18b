"""Pathological math inputs through the real worker pool: each ends within its deadline.

The parser's guards should make most of them cheap (judged, no TIMEOUT); whatever
slips past the guards is killed at the deadline. Either way the item gets a status
promptly and the next item is served normally.
"""

from __future__ import annotations

import time

import pytest

from verifier_service.math import MathOptions, MathStatus, check
from verifier_service.workers import Job, OutcomeStatus, WorkerPool

DEADLINE_S = 2.0
SLACK_S = 1.0

PATHOLOGICAL = [
    ("1", "10^{10^{10}}"),
    ("10^{10^{10}}", "10^{10^{10}}+1"),
    ("1", "10^{10^{10^{10}}}"),
    ("2", "2^{2^{2^{2^{2^{2}}}}}"),
    ("1", "9^{9^{9}}"),
    ("1", "(10^{100})!"),
    ("1", "100000!"),
    ("1", "\\frac{1}{(10^{6})!}"),
    ("\\frac{1}{3000!}", "\\frac{1}{3001!}"),
    ("1", "(" * 500 + "1" + ")" * 500),
    ("1", "{" * 500 + "1" + "}" * 500),
    ("1", "\\sqrt{" * 300 + "2" + "}" * 300),
    ("1", "\\frac{1}{" * 200 + "2" + "}" * 200),
    ("1", "1+" * 5000 + "1"),
    ("1", "x^" * 300 + "2"),
    ("1", "9" * 50000),
    ("1", "9" * 200000),  # past Python's int-from-string limit: must not raise
    ("1", "(" + ",".join(["1"] * 3000) + ")"),
    ("1", "\\begin{pmatrix}" + "\\\\".join(["&".join(["1"] * 40)] * 40) + "\\end{pmatrix}"),
    ("x", "(x+1)^{1000}-(x-1)^{1000}"),
    ("1", "e^{e^{e^{e^{10}}}}"),
    ("1", "\\sin(10^{10^{5}})"),
    ("1", "2^{10^{6}} - 2^{10^{6}}"),
]


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2, queue_capacity=64) as pool:
        yield pool


@pytest.mark.parametrize("gold,answer", PATHOLOGICAL, ids=[f"{i}:{a[:24]}" for i, (_, a) in enumerate(PATHOLOGICAL)])
def test_pathological_input_ends_within_its_deadline(pool, gold, answer):
    start = time.monotonic()
    outcome = pool.run(Job("verifier_service.math:check", (gold, f"\\boxed{{{answer}}}", MathOptions()),
                           timeout_s=DEADLINE_S))
    elapsed = time.monotonic() - start
    assert elapsed < DEADLINE_S + SLACK_S
    assert outcome.status in (OutcomeStatus.OK, OutcomeStatus.TIMEOUT), outcome
    if outcome.status is OutcomeStatus.OK:
        assert outcome.value.status in (MathStatus.CORRECT, MathStatus.INCORRECT, MathStatus.NO_ANSWER)
    follow_up = pool.run(Job("verifier_service.math:check", ("7", "\\boxed{7}", MathOptions()), timeout_s=DEADLINE_S))
    assert follow_up.status is OutcomeStatus.OK and follow_up.value.status is MathStatus.CORRECT


def test_guards_keep_most_pathological_inputs_cheap():
    """In-process (no deadline): the guards alone must answer these quickly and correctly."""
    start = time.monotonic()
    assert not check("10^{10^{10}}", "\\boxed{10^{10^{10}}+1}").correct
    assert check("10^{10^{10}}", "\\boxed{10^{10^{10}}}").correct
    assert not check("1", "\\boxed{(10^{100})!}").correct
    assert not check("\\frac{1}{3000!}", "\\boxed{\\frac{1}{3001!}}").correct
    # Past the guard's size a value is compared by its structure only: 2^(10^6) - 2^(10^6) is
    # not recognised as 0. A known, documented limit; what matters is that it is fast.
    assert check("0", "\\boxed{2^{10^{6}} - 2^{10^{6}}}").judged
    assert time.monotonic() - start < 10  # a hang guard, not a speed target


def test_an_answer_too_long_to_compare_is_unequal_before_normalisation():
    """Past MAX_RAW_LENGTH non-space characters an answer is INCORRECT at once (the regex passes of
    normalisation are linear but many: a 200k-digit answer took 0.3 s of a math worker); spaces do
    not count, so a short answer padded with whitespace is still read."""
    from verifier_service.math.grader import MAX_RAW_LENGTH
    verdict = check("123", "\\boxed{" + "9" * 200_000 + "}")
    assert verdict.status is MathStatus.INCORRECT and "before normalisation" in verdict.reason
    assert len(verdict.extracted) < 10_000  # the echo is cut, not the 200k characters
    assert check("9" * MAX_RAW_LENGTH, "\\boxed{" + "9" * MAX_RAW_LENGTH + "}").correct  # at the bound: compared
    assert check("5", "\\boxed{5" + " " * (2 * MAX_RAW_LENGTH) + "}").correct
    assert check("12", "\\boxed{12 cm}").correct and check("12", "\\boxed{12}").correct
