"""The two records every loader and generator in `tasks` produces.

`Problem` is one prompt with what the verifier needs to judge an answer to it: a gold answer (math),
tests (code), or both absent when only a PRM scores it. `checks` names the verifier checks that apply,
so a trainer can route rewards without knowing where the problem came from.

`StepChain` is one reasoning chain split into steps with the index of its first wrong step: the unit of
PRM training data and of ProcessBench-style evaluation.

Both are frozen: a problem is read everywhere (prompting, rewards, reports) and must not drift. They hold
plain JSON-able values (`to_dict`/`from_dict` round-trip through JSONL), so their `dict` fields make them
unhashable; key them by `id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Problem", "StepChain", "CHECK_MATH", "CHECK_CODE", "CHECK_STEPS", "CHECKS"]

CHECK_MATH = "math"    # the final answer is compared with `gold` by the math checker
CHECK_CODE = "code"    # the extracted code is run against `tests` in the sandbox
CHECK_STEPS = "steps"  # every step can be judged (exactly, for the synthetic family; else by a PRM)
CHECKS = (CHECK_MATH, CHECK_CODE, CHECK_STEPS)


@dataclass(frozen=True)
class Problem:
    """One task instance.

    `tests` has the shape of the verifier's eval lines (`verirl eval`, kind "code"), so it can be sent
    as-is: `{"stdio": [{"input": ..., "output": ...}]}`, `{"assert": "<code>", "entry_point": "<name>"}`
    (entry point optional) or `{"call": {"fn": ..., "cases": [{"args": [...], "kwargs": {}, "expected":
    ...}]}}`. `metadata` keeps what the source offers beyond that (source, level, subject, the reference
    solution, ...), never anything the checks need.
    """

    id: str
    prompt: str
    gold: str | None = None
    tests: Mapping[str, Any] | None = None
    checks: tuple[str, ...] = (CHECK_MATH,)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise ValueError(f"problem {self.id!r}: unknown checks {unknown}; known: {list(CHECKS)}")
        if CHECK_MATH in self.checks and self.gold is None:
            raise ValueError(f"problem {self.id!r}: the math check needs a gold answer")
        if CHECK_CODE in self.checks and not self.tests:
            raise ValueError(f"problem {self.id!r}: the code check needs tests")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.prompt, "gold": self.gold, "tests": self.tests,
                "checks": list(self.checks), "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Problem:
        return cls(id=str(d["id"]), prompt=d["prompt"], gold=d.get("gold"), tests=d.get("tests"),
                   checks=tuple(d.get("checks", (CHECK_MATH,))), metadata=dict(d.get("metadata") or {}))


@dataclass(frozen=True)
class StepChain:
    """A reasoning chain with the index of its first wrong step (-1: every step is right).

    Labels follow ProcessBench and Math-Shepherd: once a step is wrong the chain is wrong, so `labels()`
    marks the first error and every step after it as wrong, whatever those later steps say.
    """

    problem: str
    steps: tuple[str, ...]
    first_error: int = -1
    gold: str | None = None
    id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not -1 <= self.first_error < len(self.steps):
            raise ValueError(f"chain {self.id!r}: first_error {self.first_error} is outside "
                             f"[-1, {len(self.steps) - 1}] for {len(self.steps)} steps")

    @property
    def correct(self) -> bool:
        return self.first_error == -1

    def labels(self) -> list[bool]:
        """Per-step labels: True before the first error, False from it on."""
        if self.first_error == -1:
            return [True] * len(self.steps)
        return [i < self.first_error for i in range(len(self.steps))]
