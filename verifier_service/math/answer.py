r"""From a normalised answer string to a structured answer.

The shapes a math answer takes, each a frozen dataclass:
- Value: one expression (number, symbolic expression, complex number).
- Bracketed: `(a, b)`, `[a, b)`, `(1, 2, 3)`: an ordered sequence whose brackets
  matter (an interval and a tuple are both read this way, so `[1,2]` never
  equals `(1,2)`).
- Unordered: `\{1, 2\}` (a set) or `1, 2` / `1 and 2` (several answers).
- Union: intervals joined by `\cup`.
- Matrix: `\begin{pmatrix} ... \end{pmatrix}` (any matrix environment).
- Relation: `x = 3`, `y = 2x + 1`, `1 < x \le 2`.
- BaseNumber: `41_7`: digits in a base; the base is part of the answer.
- Text: anything else, compared as a normalised string.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sympy

from .latex_expr import LatexError, Parsed, parse_latex_expr
from .normalize import Marks, normalize, strip_text_commands

__all__ = [
    "Answer", "Value", "Bracketed", "Unordered", "Union", "Matrix", "Relation", "BaseNumber", "Text",
    "parse_answer", "parse_normalized", "describe",
]


@dataclass(frozen=True)
class Value:
    expr: sympy.Expr
    huge: bool = False
    approximate: bool = False  # written with a decimal point
    decimals: int = 0          # digits after the point (of the longest decimal literal)
    percent: bool = False
    degrees: bool = False


@dataclass(frozen=True)
class Bracketed:
    open: str
    close: str
    items: tuple


@dataclass(frozen=True)
class Unordered:
    items: tuple
    is_set: bool  # written with braces


@dataclass(frozen=True)
class Union:
    parts: tuple


@dataclass(frozen=True)
class Matrix:
    rows: tuple  # tuple of tuples of answers


@dataclass(frozen=True)
class Relation:
    ops: tuple      # e.g. ("<", "<=")
    sides: tuple    # len(ops) + 1 answers
    assigns: bool = False  # `x = ...`, `f(x) = ...`, `a_1 = ...`: the left side only names the answer


@dataclass(frozen=True)
class BaseNumber:
    digits: str
    base: int


@dataclass(frozen=True)
class Text:
    text: str


Answer = Value | Bracketed | Unordered | Union | Matrix | Relation | BaseNumber | Text

_RELATION = re.compile(r"<=|>=|!=|=|<|>")
_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}$", re.S)
_BASE = re.compile(r"^([0-9A-Za-z]+)_\{?(\d+)\}?$")
_NAME = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?(?:\^\{?-1\}?)?(?:\([a-zA-Z, ]*\))?$|^\\[a-zA-Z]+$")
_SET_BUILDER = re.compile(r"^[a-zA-Z]\s*(?:\\mid|\||:)\s*(.+)$")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z '\-]*[A-Za-z]$")
_SPLIT_WORDS = re.compile(r"\s+(?:and|or)\s+|\\(?:text\{\s*(?:and|or)\s*\})|\\(?:lor|land)(?![a-zA-Z])")


def split_top_level(text: str, separators: tuple[str, ...]) -> list[str]:
    """Split on separators that are not inside (), [], {} or \\{ \\}."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text.startswith("\\{", i) or text.startswith("\\left", i):
            depth += 1
            i += 2
            continue
        if text.startswith("\\}", i):
            depth -= 1
            i += 2
            continue
        char = text[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            for separator in separators:
                if text.startswith(separator, i):
                    parts.append(text[start:i])
                    i += len(separator)
                    start = i
                    break
            else:
                i += 1
            continue
        i += 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _wraps_whole(text: str) -> bool:
    """Does the first bracket close at the very end (`(1,2)`, not `(1)+(2)`)?"""
    depth = 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def parse_answer(raw: str) -> Answer:
    """Parse one extracted answer. Never raises: unreadable input becomes Text."""
    return parse_normalized(*normalize(raw))


@functools.lru_cache(maxsize=4096)
def parse_normalized(text: str, marks: Marks) -> Answer:
    """Parse the output of normalize(). Cached: a group of G responses shares one gold."""
    return _parse(text, marks, depth=0)


def _parse(text: str, marks: Marks, depth: int) -> Answer:
    text = text.strip()
    if depth > 8 or not text:
        return Text(_plain(text))
    if text.startswith("\\{") and text.endswith("\\}") and _balanced_set(text):
        inner = text[2:-2].strip()
        builder = _SET_BUILDER.match(inner)
        if builder:  # \{x \mid x > 0\}: the condition says which set
            return _parse(builder.group(1), marks, depth + 1)
        items = [] if not inner else split_top_level(inner, (",", ";"))
        return Unordered(tuple(_parse(item, marks, depth + 1) for item in items), is_set=True)
    if text == "\\emptyset":
        return Unordered((), is_set=True)
    matrix = _MATRIX.match(text)
    if matrix:
        rows = [row for row in re.split(r"\\\\", matrix.group(2)) if row.strip()]
        cells = tuple(tuple(_parse(cell, marks, depth + 1) for cell in row.split("&")) for row in rows)
        return Matrix(cells)
    for sign, first, second in (("\\pm", "+", "-"), ("\\mp", "-", "+")):
        if sign in text:  # a ± b is the pair of answers a + b and a - b
            pair = (_parse(text.replace(sign, op, 1), marks, depth + 1) for op in (first, second))
            return Unordered(tuple(pair), is_set=False)
    unions = split_top_level(text, ("\\cup",))
    if len(unions) > 1:
        return Union(tuple(_parse(part, marks, depth + 1) for part in unions))
    several = [part for part in split_top_level(_SPLIT_WORDS.sub(",", text), (",", ";")) if part]
    if len(several) > 1:
        return Unordered(tuple(_parse(part, marks, depth + 1) for part in several), is_set=False)
    if text[0] in "([" and text[-1] in ")]" and _wraps_whole(text):
        items = split_top_level(text[1:-1], (",",))
        if len(items) > 1:
            return Bracketed(text[0], text[-1], tuple(_parse(item, marks, depth + 1) for item in items))
        if text[0] == "(" and text[-1] == ")":
            return _parse(text[1:-1], marks, depth + 1)
    in_set = split_top_level(text, ("\\in",))
    if len(in_set) == 2 and re.fullmatch(r"[a-zA-Z]", in_set[0]):
        return _parse(in_set[1], marks, depth + 1)
    relation = _relation(text, marks, depth)
    if relation is not None:
        return relation
    base = _BASE.match(text)
    if base and 2 <= int(base.group(2)) <= 36 and all(int(d, 36) < int(base.group(2)) for d in base.group(1)):
        return BaseNumber(base.group(1).lower(), int(base.group(2)))
    return _value_or_text(text, marks)


def _balanced_set(text: str) -> bool:
    """Does the opening `\\{` close at the very end (`\\{1\\} \\cup \\{2\\}` is not one set)?"""
    depth, i = 0, 0
    while i < len(text):
        if text.startswith("\\{", i):
            depth += 1
            i += 2
        elif text.startswith("\\}", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i == len(text)
        else:
            i += 1
    return False


def _relation(text: str, marks: Marks, depth: int) -> Relation | None:
    pieces = split_top_level(text, ("<=", ">=", "!=", "=", "<", ">"))
    if len(pieces) < 2:
        return None
    ops = []
    depth_count = 0
    for match in _RELATION.finditer(text):
        before = text[: match.start()]
        depth_count = sum(before.count(c) for c in "([{") - sum(before.count(c) for c in ")]}")
        if depth_count == 0:
            ops.append(match.group(0))
    if len(ops) != len(pieces) - 1 or any(not piece for piece in pieces):
        return None
    assigns = ops == ["="] and bool(_NAME.match(pieces[0]))
    return Relation(tuple(ops), tuple(_parse(piece, marks, depth + 1) for piece in pieces), assigns)


def _value_or_text(text: str, marks: Marks) -> Answer:
    plain = strip_text_commands(text).strip()
    if _WORDS.match(plain) and (plain != text or re.search(r"[aeiouAEIOU]", plain)):
        return Text(_plain(plain))  # a word; `xy` (no vowel, no \text) stays a product of variables
    try:
        parsed: Parsed = parse_latex_expr(plain)
    except LatexError:
        return Text(_plain(plain))
    return Value(parsed.expr, huge=parsed.huge, approximate=parsed.has_decimal, decimals=parsed.decimals,
                 percent=marks.percent, degrees=marks.degrees)


def _plain(text: str) -> str:
    """Text answers compare case- and spacing-insensitively, without LaTeX markup."""
    text = strip_text_commands(text).lower()
    text = re.sub(r"\\[a-zA-Z]+", lambda m: m.group(0)[1:], text)
    return re.sub(r"[\s{}$\\.]+", "", text)


def describe(answer: Answer) -> str:
    """A compact normalised form for results and logs."""
    if isinstance(answer, Value):
        if answer.huge:
            return sympy.srepr(answer.expr)[:200]
        suffix = "%" if answer.percent else ""
        return f"{sympy.sstr(answer.expr)}{suffix}"[:200]
    if isinstance(answer, Bracketed):
        return answer.open + ", ".join(describe(item) for item in answer.items) + answer.close
    if isinstance(answer, Unordered):
        inner = ", ".join(describe(item) for item in answer.items)
        return "{" + inner + "}" if answer.is_set else inner
    if isinstance(answer, Union):
        return " U ".join(describe(part) for part in answer.parts)
    if isinstance(answer, Matrix):
        return "[" + "; ".join(", ".join(describe(cell) for cell in row) for row in answer.rows) + "]"
    if isinstance(answer, Relation):
        out = describe(answer.sides[0])
        for op, side in zip(answer.ops, answer.sides[1:]):
            out += f" {op} {describe(side)}"
        return out
    if isinstance(answer, BaseNumber):
        return f"{answer.digits}_{answer.base}"
    return answer.text
