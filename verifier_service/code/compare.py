"""Comparisons made outside the sandbox: program output against expected output, returned values
against expected JSON values.

Nothing here runs untrusted code: the output is bytes, the returned value was reduced to exact
built-ins by `plain` before it left the sandbox (so an always-equal `__eq__` never gets here).
Comparators are named after their rule and picked from a table, not by if-chains.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .plain import Function, Handle
from .types import Whitespace

__all__ = ["OUTPUT_RULES", "output_matches", "value_matches", "describe_mismatch", "short"]


def _trailing(text: str) -> list[str]:
    lines = [line.rstrip(" \t\r\f\v") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _same_trailing(got: bytes, expected: str) -> bool:
    return _trailing(got.decode("utf-8", "replace")) == _trailing(expected)


def _same_tokens(got: bytes, expected: str) -> bool:
    return got.decode("utf-8", "replace").split() == expected.split()


def _same_exact(got: bytes, expected: str) -> bool:
    return got == expected.encode("utf-8")


OUTPUT_RULES: dict[Whitespace, Callable[[bytes, str], bool]] = {
    Whitespace.TRAILING: _same_trailing,
    Whitespace.TOKENS: _same_tokens,
    Whitespace.EXACT: _same_exact,
}


def output_matches(got: bytes, expected: str, rule: Whitespace = Whitespace.TRAILING) -> bool:
    return OUTPUT_RULES[rule](got, expected)


def _numbers_equal(a: int | float, b: int | float, rel_tol: float) -> bool:
    """Exact for two ints (however big); NaN equals NaN; a tolerance only where one is asked for."""
    if type(a) is int and type(b) is int:
        return a == b
    if (type(a) is float and math.isnan(a)) or (type(b) is float and math.isnan(b)):
        return type(a) is type(b) is float and math.isnan(a) and math.isnan(b)
    if rel_tol > 0 and a != b:
        try:
            return math.isclose(a, b, rel_tol=rel_tol, abs_tol=rel_tol)
        except OverflowError:  # an int beyond float range against a float: not close
            return False
    return a == b


def _json_key(key: Any) -> Any:
    """Dict keys as JSON would write them (json.dumps({1: 2}) gives {"1": 2})."""
    if key is None or type(key) is bool:
        return {None: "null", True: "true", False: "false"}[key]
    if type(key) in (int, float):
        return str(key) if type(key) is int else repr(key)
    return key


def value_matches(got: Any, expected: Any, rel_tol: float = 0.0) -> bool:
    """`got` is a decoded plain value (tuples, sets, dicts with any keys allowed), `expected` comes
    from JSON. JSON has no tuple or set, so a tuple matches a list and a set matches a list of the
    same elements; bool matches only bool; ints and floats compare by value."""
    if type(got) in (Handle, Function):
        return False
    if expected is None or type(expected) is bool:
        return type(got) is type(expected) and got == expected
    if type(expected) in (int, float):
        return type(got) in (int, float) and _numbers_equal(got, expected, rel_tol)
    if type(expected) is str:
        return type(got) is str and got == expected
    if type(expected) is list:
        if type(got) in (list, tuple):
            return len(got) == len(expected) and all(value_matches(g, e, rel_tol) for g, e in zip(got, expected))
        if type(got) in (set, frozenset):
            return len(got) == len(expected) and _set_matches(got, expected, rel_tol)
        return False
    if type(expected) is dict:
        if type(got) is not dict:
            return False
        keyed = {_json_key(k): v for k, v in got.items()}
        return len(keyed) == len(got) == len(expected) and all(
            k in keyed and value_matches(keyed[k], v, rel_tol) for k, v in expected.items())
    return False


def _set_matches(got: set | frozenset, expected: list, rel_tol: float) -> bool:
    remaining = list(got)
    for e in expected:
        for j, g in enumerate(remaining):
            if value_matches(g, e, rel_tol):
                del remaining[j]
                break
        else:
            return False
    return not remaining


def short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def describe_mismatch(got: Any, expected: Any) -> str:
    return f"expected {short(expected)}, got {short(got)}"
