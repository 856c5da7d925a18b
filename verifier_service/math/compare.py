"""Is a response answer equivalent to the gold answer? Comparators by strategy.

Numbers:
- exact_rational: two exact rationals (integers, fractions, terminating
  decimals) are equal only if they are exactly equal: 3.14159265358979 is not
  3.14159265358978, and 1/3000! is not 1/3001!.
- approximate: a decimal written by hand against a value with no finite decimal
  expansion (2/3, sqrt(2), pi) can only be an approximation; it matches within
  a relative tolerance (`rel_tol`, 1e-6 by default), or when it is that value
  correctly rounded to the decimals shown with at least 6 significant digits
  (0.333333 for 1/3 sits exactly on the 1e-6 boundary; rounding decides it).
- high_precision: two exact irrational values are evaluated to 60 digits and
  must agree to 1e-40 relative (sqrt(2)/2 == 1/sqrt(2)).
- rounded: with `precision` set, both sides are rounded to that many decimal
  places first (at 2, 0.67 matches 2/3).
Expressions with free symbols are compared by evaluating their difference at
random points (exact rationals, 30 digits), falling back to sympy.simplify only
where evaluation fails. A value with an unevaluated giant power or factorial is
compared structurally, never evaluated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import mpmath
import sympy

from .answer import Answer, BaseNumber, Bracketed, Matrix, Relation, Text, Union, Unordered, Value

__all__ = ["Tolerance", "equivalent"]

_HIGH_PRECISION_DIGITS = 60
_SYMBOLIC_POINTS = 4
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "!=": "!="}


@dataclass(frozen=True)
class Tolerance:
    rel_tol: float = 1e-6
    precision: int | None = None


def equivalent(gold: Answer, response: Answer, tol: Tolerance) -> bool:
    """Symmetric in spirit: the gold only decides how an equation's side is read."""
    if type(gold) is type(response):
        return _SAME_KIND[type(gold)](gold, response, tol)
    return _cross_kind(gold, response, tol)


# ---------------------------------------------------------------- same kind

def _values(a: Value, b: Value, tol: Tolerance) -> bool:
    shown = _shown_decimals(a, b)
    for left in _percent_readings(a):
        for right in _percent_readings(b):
            if _expr_equal(left, right, a.approximate or b.approximate, a.huge or b.huge, tol, shown):
                return True
    if a.degrees != b.degrees:
        return _degrees_vs_radians(a, b, tol)
    return False


def _shown_decimals(a: Value, b: Value) -> int | None:
    """Decimals shown by the one side that is a plain decimal number (None otherwise)."""
    approximations = [v for v in (a, b) if v.approximate and v.expr.is_Rational]
    return approximations[0].decimals if len(approximations) == 1 and not (a.approximate and b.approximate) else None


def _percent_readings(value: Value) -> tuple[sympy.Expr, ...]:
    """`50%` may be meant as 50 or as 0.5: both readings are tried."""
    return (value.expr, value.expr / 100) if value.percent else (value.expr,)


def _degrees_vs_radians(a: Value, b: Value, tol: Tolerance) -> bool:
    degrees, radians = (a, b) if a.degrees else (b, a)
    if not radians.expr.has(sympy.pi):
        return False
    return _expr_equal(degrees.expr, radians.expr * 180 / sympy.pi, False, False, tol)


def _bracketed(a: Bracketed, b: Bracketed, tol: Tolerance) -> bool:
    return (a.open, a.close) == (b.open, b.close) and _ordered(a.items, b.items, tol)


def _ordered(a: tuple, b: tuple, tol: Tolerance) -> bool:
    return len(a) == len(b) and all(equivalent(x, y, tol) for x, y in zip(a, b))


def _unordered_items(a: tuple, b: tuple, tol: Tolerance) -> bool:
    """Multiset equality under equivalence (greedy matching is exact for an equivalence relation)."""
    if len(a) != len(b):
        return False
    remaining = list(b)
    for item in a:
        for index, candidate in enumerate(remaining):
            if equivalent(item, candidate, tol):
                del remaining[index]
                break
        else:
            return False
    return True


def _unordered(a: Unordered, b: Unordered, tol: Tolerance) -> bool:
    return _unordered_items(a.items, b.items, tol)


def _union(a: Union, b: Union, tol: Tolerance) -> bool:
    return _unordered_items(a.parts, b.parts, tol)


def _matrix(a: Matrix, b: Matrix, tol: Tolerance) -> bool:
    return len(a.rows) == len(b.rows) and all(_ordered(x, y, tol) for x, y in zip(a.rows, b.rows))


def _relation(a: Relation, b: Relation, tol: Tolerance) -> bool:
    if _ordered(a.sides, b.sides, tol) and a.ops == b.ops:
        return True
    flipped_ops = tuple(_FLIP[op] for op in reversed(b.ops))
    if a.ops == flipped_ops and _ordered(a.sides, tuple(reversed(b.sides)), tol):
        return True
    if a.ops == b.ops == ("=",):
        return _same_equation(a, b, tol)
    interval_a, interval_b = _as_interval(a), _as_interval(b)
    return interval_a is not None and interval_b is not None and _bracketed(interval_a, interval_b, tol)


def _same_equation(a: Relation, b: Relation, tol: Tolerance) -> bool:
    """`2x + 2 = 4` and `x + 1 = 2`: the differences of the sides are proportional."""
    sides = [side for side in (*a.sides, *b.sides) if isinstance(side, Value)]
    if len(sides) != 4 or any(side.huge for side in sides):
        return False
    left = sides[0].expr - sides[1].expr
    right = sides[2].expr - sides[3].expr
    symbols = sorted(left.free_symbols | right.free_symbols, key=lambda s: s.name)
    if not symbols:
        return False
    ratios = []
    for point in _random_points(symbols):
        top, bottom = _numeric(left.subs(point), 30), _numeric(right.subs(point), 30)
        if top is None or bottom is None or bottom == 0:
            continue
        ratios.append(top / bottom)
        if len(ratios) == _SYMBOLIC_POINTS:
            break
    if len(ratios) < 2 or ratios[0] == 0:
        return False
    return all(abs(r - ratios[0]) <= sympy.Float("1e-20") * abs(ratios[0]) for r in ratios[1:])


def _base_number(a: BaseNumber, b: BaseNumber, tol: Tolerance) -> bool:
    return a == b


def _text(a: Text, b: Text, tol: Tolerance) -> bool:
    return a.text == b.text


_SAME_KIND = {
    Value: _values, Bracketed: _bracketed, Unordered: _unordered, Union: _union, Matrix: _matrix,
    Relation: _relation, BaseNumber: _base_number, Text: _text,
}


# ---------------------------------------------------------------- across kinds

def _cross_kind(gold: Answer, response: Answer, tol: Tolerance) -> bool:
    for a, b in ((gold, response), (response, gold)):
        if isinstance(a, Relation):
            rhs = _assigned_value(a)
            if rhs is not None and not isinstance(b, Relation) and equivalent(rhs, b, tol):
                return True
            interval = _as_interval(a)
            if interval is not None and isinstance(b, Bracketed | Union) and equivalent(interval, b, tol):
                return True
            excluded = _as_union(a)
            if excluded is not None and isinstance(b, Union) and equivalent(excluded, b, tol):
                return True
        if isinstance(a, BaseNumber) and isinstance(b, Value):
            return b.expr.is_Integer and str(b.expr) == a.digits
        if isinstance(a, Bracketed) and (a.open, a.close) == ("(", ")") and isinstance(b, Unordered) \
                and not b.is_set and _ordered(a.items, b.items, tol):
            return True  # a tuple written without its parentheses: `1, 2` for `(1, 2)`
        if isinstance(a, Matrix) and isinstance(b, Bracketed) and (b.open, b.close) == ("(", ")") \
                and _ordered(_vector_items(a), b.items, tol):
            return True  # a column (or row) vector written as a tuple
        if isinstance(a, Unordered) and len(a.items) == 1:
            return equivalent(a.items[0], b, tol)
        if isinstance(a, Unordered) and not a.is_set and isinstance(b, Unordered):
            return _unordered_items(a.items, b.items, tol)
        if isinstance(a, Text) and isinstance(b, Value):
            return a.text == _symbol_text(b)
    return False


def _vector_items(matrix: Matrix) -> tuple:
    """The entries of a one-column or one-row matrix, in order (empty for any other shape)."""
    if all(len(row) == 1 for row in matrix.rows):
        return tuple(row[0] for row in matrix.rows)
    return matrix.rows[0] if len(matrix.rows) == 1 else ()


def _symbol_text(value: Value) -> str:
    return sympy.sstr(value.expr).lower().replace("*", "").replace(" ", "")


def _assigned_value(relation: Relation) -> Answer | None:
    """`x = 3` (or `y = 2x + 1`) reads as its right-hand side: the variable is a name;
    a true computation `4 \\times 5 = 20` reads as its last side."""
    if relation.assigns:
        return relation.sides[1]
    if set(relation.ops) == {"="} and _true_numeric_chain(relation.sides):
        return relation.sides[-1]  # `4 \times 5 = 20` answers 20
    return None


def _true_numeric_chain(sides: tuple) -> bool:
    """Every side a number and all equal: a worked computation whose last side is the answer."""
    if not all(isinstance(side, Value) and not side.huge and not side.expr.free_symbols for side in sides):
        return False
    return all(_expr_equal(sides[0].expr, side.expr, False, False, Tolerance()) for side in sides[1:])


def _as_union(relation: Relation) -> Union | None:
    """`x != 1` -> (-oo, 1) U (1, oo)."""
    if relation.ops != ("!=",) or not all(isinstance(side, Value) for side in relation.sides):
        return None
    variable, point = relation.sides
    if not isinstance(variable.expr, sympy.Symbol):
        variable, point = point, variable
        if not isinstance(variable.expr, sympy.Symbol):
            return None
    return Union((Bracketed("(", ")", (Value(-sympy.oo), point)), Bracketed("(", ")", (point, Value(sympy.oo)))))


def _as_interval(relation: Relation) -> Bracketed | None:
    """`x > 3` -> (3, oo); `1 < x <= 2` -> (1, 2]; other relations: None."""
    ops, sides = relation.ops, relation.sides
    if not all(isinstance(side, Value) for side in sides):
        return None
    inf = Value(sympy.oo)
    if len(ops) == 1 and ops[0] in ("<", ">", "<=", ">="):
        variable, op, bound = sides[0], ops[0], sides[1]
        if not isinstance(variable.expr, sympy.Symbol):
            variable, op, bound = sides[1], _FLIP[ops[0]], sides[0]
            if not isinstance(variable.expr, sympy.Symbol):
                return None
        strict = op in ("<", ">")
        if op in (">", ">="):
            return Bracketed("(" if strict else "[", ")", (bound, inf))
        return Bracketed("(", ")" if strict else "]", (Value(-sympy.oo), bound))
    if len(ops) == 2 and isinstance(sides[1].expr, sympy.Symbol) and ops[0] in ("<", "<=") and ops[1] in ("<", "<="):
        return Bracketed("(" if ops[0] == "<" else "[", ")" if ops[1] == "<" else "]", (sides[0], sides[2]))
    if len(ops) == 2 and isinstance(sides[1].expr, sympy.Symbol) and ops[0] in (">", ">=") and ops[1] in (">", ">="):
        return Bracketed("(" if ops[1] == ">" else "[", ")" if ops[0] == ">" else "]", (sides[2], sides[0]))
    return None


# ---------------------------------------------------------------- expressions

def _expr_equal(a: sympy.Expr, b: sympy.Expr, approximate: bool, huge: bool, tol: Tolerance,
                shown: int | None = None) -> bool:
    if a == b:
        return True
    if huge or a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False  # structurally different, and too big or unbounded to evaluate
    if a.free_symbols or b.free_symbols:
        return _symbolic_equal(a, b)
    if tol.precision is not None:
        return _rounded(a, tol.precision) == _rounded(b, tol.precision)
    if a.is_Rational and b.is_Rational:
        if approximate and (_no_finite_decimal(a) or _no_finite_decimal(b)):
            return _correctly_rounded(a, b, shown) or _close(a, b, tol.rel_tol)
        return False  # exact rationals that differ
    if approximate:
        return _correctly_rounded(a, b, shown) or _close(a, b, tol.rel_tol)
    return _close(a, b, None)


_MIN_ROUNDED_DIGITS = 6


def _correctly_rounded(a: sympy.Expr, b: sympy.Expr, shown: int | None) -> bool:
    """Is the decimal side the other value rounded half-up to the decimals it shows?"""
    if shown is None:
        return False
    decimal, exact = (a, b) if a.is_Rational and _decimal_places_fit(a, shown) else (b, a)
    if not decimal.is_Rational:
        return False
    digits = abs(Fraction(int(decimal.p), int(decimal.q)) * 10**shown)
    if digits.denominator != 1 or len(str(digits.numerator)) < _MIN_ROUNDED_DIGITS:
        return False
    return _rounded(decimal, shown) == _rounded(exact, shown)


def _decimal_places_fit(value: sympy.Rational, places: int) -> bool:
    return (Fraction(int(value.p), int(value.q)) * 10**places).denominator == 1


def _no_finite_decimal(value: sympy.Rational) -> bool:
    q = int(value.q)
    for prime in (2, 5):
        while q % prime == 0:
            q //= prime
    return q != 1


def _numeric(value: sympy.Expr, digits: int) -> sympy.Expr | None:
    evaluated = value.evalf(digits)
    if not evaluated.is_number or evaluated.has(sympy.nan, sympy.zoo):
        return None
    return evaluated


def _to_mp(value: sympy.Expr, digits: int):
    """An mpmath number (sympy's own arithmetic on Floats is far slower)."""
    try:
        return value._to_mpmath(int(digits * 3.33) + 8)
    except (AttributeError, TypeError, ValueError):
        return None


def _close(a: sympy.Expr, b: sympy.Expr, rel_tol: float | None) -> bool:
    """Relative closeness; rel_tol None means agreement to 1e-40 at 60 digits (exact values)."""
    if a.has(sympy.oo, -sympy.oo) or b.has(sympy.oo, -sympy.oo):
        return False
    x, y = _numeric(a, _HIGH_PRECISION_DIGITS), _numeric(b, _HIGH_PRECISION_DIGITS)
    if x is None or y is None:
        return False
    with mpmath.workdps(_HIGH_PRECISION_DIGITS):
        x, y = _to_mp(x, _HIGH_PRECISION_DIGITS), _to_mp(y, _HIGH_PRECISION_DIGITS)
        if x is None or y is None:
            return False
        scale = max(abs(x), abs(y))
        if scale == 0:
            return True
        limit = mpmath.mpf("1e-40") if rel_tol is None else mpmath.mpf(rel_tol)
        return bool(abs(x - y) <= limit * scale)


def _rounded(value: sympy.Expr, places: int) -> tuple[Decimal, Decimal] | None:
    """Both parts rounded half-up to `places` decimals (exact for rationals)."""
    if value.is_Rational:
        return (_round_fraction(Fraction(int(value.p), int(value.q)), places), Decimal(0))
    evaluated = _numeric(value, places + 30)
    if evaluated is None:
        return None
    real, imag = evaluated.as_real_imag()
    with localcontext() as context:
        context.prec = places + 40
        return (
            Decimal(str(sympy.Float(real, places + 30))).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP),
            Decimal(str(sympy.Float(imag, places + 30))).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP),
        )


def _round_fraction(value: Fraction, places: int) -> Decimal:
    scaled = value * 10**places
    sign = -1 if scaled < 0 else 1
    magnitude = abs(scaled)
    whole = int(magnitude)
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    return Decimal(sign * whole).scaleb(-places)


def _random_points(symbols: list[sympy.Symbol]):
    """Deterministic signed rational points (log(xy) = log x + log y only for positive x, y)."""
    rng = random.Random(0)
    for _ in range(_SYMBOLIC_POINTS * 3):
        yield {s: sympy.Rational(rng.choice((-1, 1)) * rng.randint(7, 97), rng.randint(3, 19)) for s in symbols}


def _symbolic_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Equal as functions: the difference vanishes at random rational points."""
    difference = a - b
    if difference == 0:
        return True
    symbols = sorted(difference.free_symbols, key=lambda s: s.name)
    checked = 0
    for point in _random_points(symbols):
        value = _numeric(difference.subs(point), 30)
        scale = _numeric(a.subs(point), 30)
        if value is None or scale is None:
            continue
        if abs(value) > sympy.Float("1e-20") * max(1, abs(scale)):
            return False
        checked += 1
        if checked >= _SYMBOLIC_POINTS:
            return True
    return sympy.simplify(difference) == 0
