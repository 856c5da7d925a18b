"""The math checker: extract, normalise, parse, compare; always a verdict with a status.

Order of work, cheapest first: the gold is read (a full solution gives its boxed
answer), the response's answer is extracted, identical normalised strings are
accepted at once, plain numbers are compared as exact fractions without sympy,
and only then are both sides parsed into structured answers and compared.
A gold that cannot be read gives PARSE_ERROR (not judged), never a silent 0.

This function has no deadline of its own; the worker pool runs it in a process
that is killed when the deadline passes.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from fractions import Fraction

from tasks.extract import extract_answers, gold_from_solution

from .answer import Text, Unordered, describe, parse_normalized
from .compare import Tolerance, equivalent
from .latex_expr import MAX_LENGTH
from .normalize import Marks, normalize, strip_text_commands
from .types import MathOptions, MathStatus, MathVerdict

__all__ = ["check"]

# Exact integers of up to ~60k digits may be printed in a normalised form.
sys.set_int_max_str_digits(100_000)

_PLAIN_NUMBER = re.compile(r"^(-?)(\d+(?:\.\d*)?|\.\d+)$")
_PLAIN_FRACTION = re.compile(r"^(-?)\\frac\{(\d+)\}\{(\d+)\}$|^(-?)(\d+)/(\d+)$")
# A gold that is a choice letter, alone or before its value: "C", "(C)", "(A) 5".
_CHOICE = re.compile(r"^(?:\(([A-E])\)\s*(.*)|([A-E]))$")
_RESPONSE_CHOICE = re.compile(r"^\s*(?:\\text\{|\\textbf\{|\\mathrm\{)?\s*\(?([A-Ea-e])\)?(?:[.:)}\s]|$)")
_GOLD_SOLUTION = re.compile(r"\\boxed|\\fbox|####")
# An answer with more non-space characters than this cannot normalise to a comparable one (MAX_LENGTH):
# it is judged unequal before the regex passes of normalisation, which cost ~1 ms per 10k characters each.
MAX_RAW_LENGTH = 8 * MAX_LENGTH
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class _Judgement:
    correct: bool | None  # None: the gold could not be read
    how: str
    normalized: str
    gold_normalized: str


def check(gold: str, response: str, options: MathOptions = MathOptions()) -> MathVerdict:
    if not isinstance(gold, str) or not isinstance(response, str):
        return MathVerdict(MathStatus.INVALID_ARGUMENT, reason="gold and response must be strings")
    is_solution = options.gold_is_solution
    if is_solution is None:
        is_solution = bool(_GOLD_SOLUTION.search(gold))
    gold_text, gold_marks = normalize(gold_from_solution(gold) if is_solution else gold.strip())
    if not gold_text:
        return MathVerdict(MathStatus.PARSE_ERROR, reason="the gold answer is empty")

    found = extract_answers(response, [extractor.value for extractor in options.extractors])
    if found is None:
        return MathVerdict(MathStatus.NO_ANSWER, gold_normalized=gold_text, reason="no answer found in the response")
    extractor, extracted = found
    if len(extracted) > MAX_RAW_LENGTH and len(_SPACE.sub("", extracted)) > MAX_RAW_LENGTH:
        return MathVerdict(MathStatus.INCORRECT, extracted=extracted[:MAX_LENGTH], gold_normalized=gold_text,
                           reason=f"{extractor}: over {MAX_RAW_LENGTH} characters before normalisation")
    answer_text, answer_marks = normalize(extracted)
    if not answer_text:
        return MathVerdict(MathStatus.NO_ANSWER, extracted=extracted, gold_normalized=gold_text,
                           reason=f"{extractor} found an empty answer")
    judgement = _judge(gold_text, gold_marks, answer_text, answer_marks, options)
    if judgement.correct is False and extractor == "BOXED_LAST" and _has_parts(gold_text, gold_marks):
        # A gold with several answers may be boxed one by one: \boxed{2} and \boxed{3}.
        every_box = extract_answers(response, ("BOXED_ALL",))
        if every_box is not None and every_box[1] != extracted:
            retry = _judge(gold_text, gold_marks, *normalize(every_box[1]), options)
            if retry.correct:
                extractor, extracted, judgement = "BOXED_ALL", every_box[1], retry
    if judgement.correct is None:
        return MathVerdict(MathStatus.PARSE_ERROR, extracted=extracted, normalized=judgement.normalized,
                           gold_normalized=judgement.gold_normalized, reason=judgement.how)
    return MathVerdict(MathStatus.CORRECT if judgement.correct else MathStatus.INCORRECT, extracted=extracted,
                       normalized=judgement.normalized, gold_normalized=judgement.gold_normalized,
                       reason=f"{extractor}: {judgement.how}")


def _judge(gold_text: str, gold_marks: Marks, answer_text: str, answer_marks: Marks,
           options: MathOptions) -> _Judgement:
    """Cheapest test first: identical strings, choice letters, plain numbers, then full parsing."""
    if answer_text == gold_text and answer_marks == gold_marks:
        return _Judgement(True, "identical after normalisation", answer_text, gold_text)
    if len(gold_text) > MAX_LENGTH or len(answer_text) > MAX_LENGTH:
        return _Judgement(False, f"longer than {MAX_LENGTH} characters and not identical", answer_text, gold_text)
    choice = _CHOICE.match(strip_text_commands(gold_text))
    if choice:
        letter, value = choice.group(1) or choice.group(3), (choice.group(2) or "").strip()
        picked = _RESPONSE_CHOICE.match(answer_text)
        if picked or not value:
            correct = bool(picked) and picked.group(1).upper() == letter
            return _Judgement(correct, "multiple-choice letter", answer_text, gold_text)
        gold_text = value  # "(A) 5" answered with "5": compare the value
    fast = _fast_numbers(gold_text, answer_text, options)
    if fast is not None and not (gold_marks.percent or answer_marks.percent):
        return _Judgement(fast, "exact numeric comparison", answer_text, gold_text)
    gold_parsed = parse_normalized(gold_text, gold_marks)
    answer_parsed = parse_normalized(answer_text, answer_marks)
    gold_norm, answer_norm = describe(gold_parsed), describe(answer_parsed)
    if isinstance(gold_parsed, Text) and _looks_mathematical(gold_text):
        return _Judgement(None, "the gold answer could not be parsed", answer_norm, gold_norm)
    tolerance = Tolerance(rel_tol=options.rel_tol, precision=options.precision)
    correct = equivalent(gold_parsed, answer_parsed, tolerance)
    how = f"{type(gold_parsed).__name__.lower()} vs {type(answer_parsed).__name__.lower()}"
    return _Judgement(correct, how, answer_norm, gold_norm)


def _has_parts(gold_text: str, gold_marks: Marks) -> bool:
    parsed = parse_normalized(gold_text, gold_marks)
    return isinstance(parsed, Unordered) and not parsed.is_set and len(parsed.items) > 1


def _fast_numbers(gold: str, answer: str, options: MathOptions) -> bool | None:
    """Two plain rationals compared exactly, no sympy; None when either is not plain."""
    if options.precision is not None:
        return None
    left, right = _plain_rational(gold), _plain_rational(answer)
    if left is None or right is None:
        return None
    left_value, left_decimal = left
    right_value, right_decimal = right
    if left_value == right_value:
        return True
    if left_decimal or right_decimal:
        return None  # a decimal may approximate a non-terminating fraction: the full comparator decides
    return False


def _plain_rational(text: str) -> tuple[Fraction, bool] | None:
    number = _PLAIN_NUMBER.match(text)
    if number:
        value = Fraction(number.group(2))
        return (-value if number.group(1) else value), "." in text
    fraction = _PLAIN_FRACTION.match(text)
    if fraction:
        sign, top, bottom = (fraction.group(1), fraction.group(2), fraction.group(3)) if fraction.group(2) else \
            (fraction.group(4), fraction.group(5), fraction.group(6))
        if int(bottom) == 0:
            return None
        value = Fraction(int(top), int(bottom))
        return (-value if sign else value), False
    return None


def _looks_mathematical(text: str) -> bool:
    """A gold with LaTeX commands or operators that still parsed only as text was misread."""
    return bool(re.search(r"\\(?!text)[a-zA-Z]+|[\^_=<>]|\d", text))
