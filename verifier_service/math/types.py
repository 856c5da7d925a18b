"""Plain types of the math checker: its options and its verdicts (no grpc, no sympy)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Extractor", "MathOptions", "MathStatus", "MathVerdict", "DEFAULT_EXTRACTORS", "JUDGED"]


class Extractor(str, enum.Enum):
    """Ways to find the answer in a response; names equal the proto enum's."""

    BOXED_LAST = "BOXED_LAST"
    BOXED_ALL = "BOXED_ALL"
    ANSWER_IS = "ANSWER_IS"
    GSM8K_HASHES = "GSM8K_HASHES"
    LAST_NUMBER = "LAST_NUMBER"
    WHOLE_RESPONSE = "WHOLE_RESPONSE"
    BARE_ANSWER = "BARE_ANSWER"


DEFAULT_EXTRACTORS = (
    Extractor.BOXED_LAST, Extractor.ANSWER_IS, Extractor.GSM8K_HASHES, Extractor.BARE_ANSWER, Extractor.LAST_NUMBER,
)


class MathStatus(str, enum.Enum):
    """Names equal those of the proto's MathResult.Status."""

    CORRECT = "CORRECT"
    INCORRECT = "INCORRECT"
    NO_ANSWER = "NO_ANSWER"
    TIMEOUT = "TIMEOUT"
    PARSE_ERROR = "PARSE_ERROR"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INTERNAL_ERROR = "INTERNAL_ERROR"


JUDGED = frozenset({MathStatus.CORRECT, MathStatus.INCORRECT, MathStatus.NO_ANSWER})

DEFAULT_REL_TOL = 1e-6


@dataclass(frozen=True)
class MathOptions:
    extractors: tuple[Extractor, ...] = DEFAULT_EXTRACTORS
    precision: int | None = None       # decimal places both sides are rounded to
    rel_tol: float = DEFAULT_REL_TOL   # for values that are not exact rationals
    gold_is_solution: bool | None = None  # None: detect (\boxed or #### in the gold)


@dataclass(frozen=True)
class MathVerdict:
    status: MathStatus
    extracted: str = ""
    normalized: str = ""
    gold_normalized: str = ""
    reason: str = ""
    cached: bool = field(default=False, compare=False)

    @property
    def correct(self) -> bool:
        return self.status is MathStatus.CORRECT

    @property
    def judged(self) -> bool:
        return self.status in JUDGED

    @property
    def score(self) -> float:
        return 1.0 if self.correct else 0.0
