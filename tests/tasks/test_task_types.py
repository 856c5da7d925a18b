"""Problem and StepChain: validation, immutability, labels."""

from __future__ import annotations

import dataclasses

import pytest

from tasks import Problem, StepChain


@pytest.mark.parametrize("kwargs, message", [
    ({"checks": ("mathh",)}, "unknown checks"),
    ({"checks": ("math",), "gold": None}, "needs a gold"),
    ({"checks": ("code",), "tests": None}, "needs tests"),
    ({"checks": ("code",), "tests": {}}, "needs tests"),
])
def test_problem_validation(kwargs, message):
    base = {"id": "p", "prompt": "?", "gold": "1"}
    with pytest.raises(ValueError, match=message):
        Problem(**{**base, **kwargs})


def test_problem_is_frozen_and_round_trips():
    p = Problem(id="p", prompt="Add one.", tests={"assert": "assert f(1) == 2", "entry_point": "f"},
                checks=("code",), metadata={"source": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.prompt = "changed"
    assert Problem.from_dict(p.to_dict()) == p
    assert Problem(id="q", prompt="?", checks=()).gold is None  # a PRM-only problem needs neither


@pytest.mark.parametrize("n, first_error, labels", [
    (3, -1, [True, True, True]),
    (3, 0, [False, False, False]),
    (3, 1, [True, False, False]),
    (3, 2, [True, True, False]),
    (0, -1, []),
])
def test_step_chain_labels(n, first_error, labels):
    chain = StepChain(problem="?", steps=tuple(f"s{i}" for i in range(n)), first_error=first_error)
    assert chain.labels() == labels and chain.correct == (first_error == -1)


@pytest.mark.parametrize("first_error", [-2, 3])
def test_step_chain_rejects_out_of_range_labels(first_error):
    with pytest.raises(ValueError, match="outside"):
        StepChain(problem="?", steps=("a", "b", "c"), first_error=first_error)
