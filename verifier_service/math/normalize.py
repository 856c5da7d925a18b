"""String-level clean-up of an answer before it is parsed.

Every rewrite here keeps the value: spacing commands, `\\left`/`\\right`,
`\\dfrac`, dollar signs, thousands separators, units written as text after a
number. What changes the meaning of a number (a percent sign, a degree mark) is
not dropped silently: it is recorded in `Marks` so the comparator can decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Marks", "normalize", "strip_text_commands"]

_SPACING = re.compile(r"(?<!\\)\\[,;:> ]|\\quad|\\qquad|\\displaystyle|\\textstyle|\\limits|~")
_NEGATIVE_SPACE = re.compile(r"(?<!\\)\\!\s*")
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])\s*")
_ALIASES = [
    (re.compile(r"\\[dt]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\[dt]binom(?![a-zA-Z])"), r"\\binom"),
    (re.compile(r"\\(?:leqslant|leq|le)(?![a-zA-Z])"), "<="),
    (re.compile(r"\\(?:geqslant|geq|ge)(?![a-zA-Z])"), ">="),
    (re.compile(r"\\(?:neq|ne)(?![a-zA-Z])"), "!="),
    (re.compile(r"\\(?:approx|simeq|doteq)(?![a-zA-Z])"), "="),
    (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
    (re.compile(r"\\gt(?![a-zA-Z])"), ">"),
    (re.compile(r"≤"), "<="),
    (re.compile(r"≥"), ">="),
    (re.compile(r"≠"), "!="),
    (re.compile(r"−"), "-"),
    (re.compile(r"π"), r"\\pi "),
    (re.compile(r"∞"), r"\\infty "),
    (re.compile(r"√"), r"\\sqrt"),
    (re.compile(r"×|\\times(?![a-zA-Z])|\\cdot(?![a-zA-Z])|\\ast(?![a-zA-Z])"), "*"),
    (re.compile(r"÷|\\div(?![a-zA-Z])"), "/"),
    (re.compile(r"\\(?:varnothing|emptyset)(?![a-zA-Z])"), r"\\emptyset "),
    (re.compile(r"\\mathbb\s*\{?R\}?|ℝ"), r"(-\\infty, \\infty)"),
    (re.compile(r"\\(?:mathbf|mathrm|mathit|boldsymbol|bm|mathnormal)\s*\{"), "{"),
    (re.compile(r"\\(?:dots|ldots|cdots)(?![a-zA-Z])"), r"\\dots "),
    (re.compile(r"\\langle(?![a-zA-Z])|⟨"), "("),
    (re.compile(r"\\rangle(?![a-zA-Z])|⟩"), ")"),
]
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])|\^\{\\text\{o\}\}")
_PERCENT = re.compile(r"\\?%|\\text\{\s*percent\s*\}|\s+percent\b")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|operatorname)\s*\{([^{}]*)\}")
_UNIT_WORDS = (
    "units?|square|sq|cubic|cm|mm|km|m|meters?|metres?|centimeters?|kilometers?|inch(?:es)?|in|feet|foot|ft|"
    "yards?|yd|miles?|mi|mph|kg|g|grams?|kilograms?|pounds?|lbs?|lb|ounces?|oz|tons?|liters?|litres?|l|ml|"
    "gallons?|seconds?|secs?|s|minutes?|mins?|hours?|hrs?|h|days?|weeks?|months?|years?|dollars?|cents?|"
    "euros?|degrees?|deg|radians?|rad|people|persons?|students?|times|ways|points?|percent"
)
_TRAILING_UNITS = re.compile(rf"(?<=[\d}}.])\s*(?:(?:{_UNIT_WORDS})(?:\^?\{{?[23]\}}?)?\s*)+$", re.IGNORECASE)
_LEADING_CURRENCY = re.compile(r"^(-?)\s*(?:\\\$|\$|USD|€|£)\s*")
# `0.\overline{3}` and `0.1\overline{6}`: repeating decimals, exact fractions.
_REPEATING = re.compile(r"(?<!\d)(\d*)\.(\d*)\\overline\{(\d+)\}")  # (?<!\d): linear, not quadratic
# `2.5e-3` as a whole answer (not `2e` inside an expression).
_E_NOTATION = re.compile(r"^(-?\d+(?:\.\d+)?)[eE]([-+]?\d+)$")
# `3\frac{1}{2}` and `3 1/2` as a whole answer are mixed numbers (3 + 1/2), not products.
_MIXED_NUMBER = re.compile(r"^(-?)(\d+)(?:\s*\\frac\{(\d+)\}\{(\d+)\}|\s+(\d+)/(\d+))$")
# `5 million` as a whole answer: the word is a factor, not a unit.
_SCALES = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_SCALE_IN_TEXT = re.compile(r"\\text\{\s*(?:thousand|million|billion|trillion)\s*\}\s*$", re.IGNORECASE)
_SCALE_ONLY = re.compile(r"^\s*\\\w+\s*\{\s*(thousand|million|billion|trillion)\s*\}\s*$", re.IGNORECASE)
_SCALE_WORD = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(thousand|million|billion|trillion)$", re.IGNORECASE)
# `2 apples`: a plain number followed by words only (any unit the list above lacks).
_NUMBER_THEN_WORDS = re.compile(r"^(-?[\d.,]*\d)\s+[a-zA-Z]{3,}(?:\s+[a-zA-Z]+)*$")
_ANY_LETTER = re.compile(r"[a-zA-Z]")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:(?:,|\{,\}|\\,| )\d{3})+(?:\.\d+)?$")


@dataclass(frozen=True)
class Marks:
    """Meaning-bearing marks removed from the text: the comparator interprets them."""

    percent: bool = False
    degrees: bool = False


def strip_text_commands(text: str) -> str:
    r"""Replace `\text{...}` (and friends) by their content, innermost first."""
    previous = None
    while previous != text:
        previous = text
        text = _TEXT_CMD.sub(lambda m: m.group(1), text)
    return text


def _strip_outer(text: str) -> str:
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            text = text[len(left) : len(text) - len(right)].strip()
    return text


def normalize(answer: str) -> tuple[str, Marks]:
    """A cleaned LaTeX string and the marks that were taken out of it."""
    text = _strip_outer(answer)
    text = text.replace("\n", " ").strip()
    text = _NEGATIVE_SPACE.sub("", _SPACING.sub(" ", text))
    text = _SIZING.sub("", text)
    for pattern, replacement in _ALIASES:
        text = pattern.sub(replacement, text)
    degrees = bool(_DEGREES.search(text))
    text = _DEGREES.sub("", text)
    percent = bool(_PERCENT.search(text))
    text = _PERCENT.sub("", text)
    text = _strip_unit_words(_unit_text_after_number(text))
    text = _LEADING_CURRENCY.sub(r"\1", text)
    text = re.sub(r"\\\$", "", text)
    text = text.rstrip(".").strip()
    while len(text) > 1 and text[0] == "{" and text[-1] == "}" and _braces_wrap(text):
        text = text[1:-1].strip()
    if "\\overline" in text:
        text = _REPEATING.sub(_repeating_to_fraction, text)
    text = _E_NOTATION.sub(r"\1*10^{\2}", text)
    text = _MIXED_NUMBER.sub(_mixed_to_sum, text)
    text = strip_text_commands(text) if _SCALE_IN_TEXT.search(text) else text
    text = _SCALE_WORD.sub(lambda m: f"{m.group(1)}*10^{{{_SCALES[m.group(2).lower()]}}}", text)
    text = _NUMBER_THEN_WORDS.sub(r"\1", text)
    if _THOUSANDS.match(text):
        text = re.sub(r"\{,\}|\\,|,| ", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text, Marks(percent=percent, degrees=degrees)


_UNIT_TEXT = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|textnormal|mathrm)\s*\{\s*[a-zA-Z][a-zA-Z .]*\}(\^\{?[23]\}?)?\s*$")


def _unit_text_after_number(text: str) -> str:
    r"""`5.4 \text{ cents}` -> `5.4`: a word in \text after a number is a unit
    (but `\text{ million}` is a factor: it becomes a plain word for _SCALE_WORD)."""
    return _UNIT_TEXT.sub(lambda m: m.group(0) if _SCALE_ONLY.match(m.group(0)) else "", text)


def _strip_unit_words(text: str) -> str:
    """`12 cm` -> `12`, but only where what is left is a plain number (`2 h` in `x + 2 h` is a variable)."""
    if not _ANY_LETTER.search(text):  # every unit word has a letter; the regex tries every digit otherwise
        return text.strip()
    stripped = _TRAILING_UNITS.sub("", text).strip()
    if stripped != text.strip() and re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", stripped)):
        return text.strip()
    return stripped


def _mixed_to_sum(match: re.Match) -> str:
    sign, whole = match.group(1), match.group(2)
    top, bottom = (match.group(3), match.group(4)) if match.group(3) else (match.group(5), match.group(6))
    return f"{sign}({whole}+{top}/{bottom})"


def _braces_wrap(text: str) -> bool:
    depth = 0
    for i, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return i == len(text) - 1
    return False


def _repeating_to_fraction(match: re.Match) -> str:
    whole, fixed, repeat = match.group(1) or "0", match.group(2), match.group(3)
    numerator = int(whole + fixed + repeat) - int(whole + fixed)
    denominator = (10 ** len(repeat) - 1) * 10 ** len(fixed)
    return f"\\frac{{{numerator}}}{{{denominator}}}"
