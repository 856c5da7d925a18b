r"""A small recursive-descent parser from LaTeX math (and plain ASCII math) to sympy.

Why our own: the ANTLR-based LaTeX parsers cost milliseconds per answer and
evaluate whatever they are given. This one builds sympy objects directly and
guards the dangerous constructions while it builds them: a power or factorial
whose exact value would be huge is kept unevaluated and flagged (`Parsed.huge`),
so the comparator never asks sympy for 10^(10^10) digits. Input length and
nesting depth are bounded too; a violation is a `LatexError`, which the grader
turns into a plain-string comparison, never a hang.

Grammar (loosest first): expr := term (('+'|'-'|'\pm') term)* ; term := unary
(('*'|'/'|implicit) unary)* ; unary := ('-'|'+') unary | power ; power :=
postfix ('^' unary-group)? ; postfix := primary ('!' | "'")*.
Conventions: `i` is the imaginary unit, `e` is Euler's number, `\pi` is pi;
`\log` is the natural log unless it has a base (`\log_2 x`); adjacent factors
multiply (`2x`, `xy`, `2\sqrt{3}`, `(a)(b)`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import sympy

__all__ = ["LatexError", "Parsed", "parse_latex_expr", "MAX_LENGTH", "MAX_DEPTH"]

MAX_LENGTH = 2000     # characters of one answer
MAX_DEPTH = 60        # nesting of groups
MAX_EXACT_BITS = 200_000  # larger exact integers (powers, factorials) stay unevaluated
MAX_FACTORIAL = 20_000


class LatexError(ValueError):
    """The text is not an expression this parser reads."""


@dataclass
class Parsed:
    expr: sympy.Expr
    huge: bool              # an unevaluated giant power/factorial inside: compare structurally only
    has_decimal: bool       # a decimal literal was written: the value may be an approximation
    decimals: int = 0       # the most digits after a decimal point in any literal


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<cmd>\\[a-zA-Z]+|\\[{}|])|(?P<op><=|>=|!=|\*\*|[-+*/^_!'()\[\]{}|,=<>])|(?P<letter>[a-zA-Z])|(?P<other>\S))"
)

_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
    "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
    "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
}
_FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh,
    "tanh": sympy.tanh, "exp": sympy.exp, "ln": sympy.log, "log": sympy.log,
}
_NOT_FACTORS = {"\\pm", "\\mp", "\\}", "\\|", "\\rfloor", "\\rceil", "\\cup", "\\cap", "\\in", "\\to", "\\rightarrow"}
_INVERSES = {"sin": sympy.asin, "cos": sympy.acos, "tan": sympy.atan}
_WORD_FUNCTIONS = re.compile(r"(?<![\\a-zA-Z])(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|cot|sec|csc|exp|ln|log|sqrt)(?![a-zA-Z])")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    text = _WORD_FUNCTIONS.sub(r"\\\1", text)
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            break
        pos = match.end()
        kind = match.lastgroup
        if kind is None:
            continue
        tokens.append((kind, match.group(kind)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        if len(text) > MAX_LENGTH:
            raise LatexError(f"longer than {MAX_LENGTH} characters")
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0
        self.huge = False
        self.has_decimal = False
        self.decimals = 0

    # ------------------------------------------------------------ helpers
    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise LatexError("unexpected end")
        self.pos += 1
        return token

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == value:
            self.pos += 1
            return True
        return False

    def expect(self, value: str) -> None:
        if not self.accept(value):
            raise LatexError(f"expected {value!r} at token {self.pos}")

    def nest(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LatexError(f"nested deeper than {MAX_DEPTH}")

    # ------------------------------------------------------------ grammar
    def parse(self) -> sympy.Expr:
        expr = self.expr()
        if self.peek() is not None:
            raise LatexError(f"unexpected {self.peek()[1]!r}")
        return expr

    def expr(self) -> sympy.Expr:
        self.nest()
        result = self.term()
        while (token := self.peek()) is not None and token[1] in ("+", "-", "\\pm", "\\mp"):
            self.pos += 1
            if token[1] in ("\\pm", "\\mp"):
                raise LatexError("± is a pair of answers, not one expression")
            right = self.term()
            result = self._add(result, right if token[1] == "+" else self._neg(right))
        self.depth -= 1
        return result

    def term(self) -> sympy.Expr:
        result = self.unary()
        while (token := self.peek()) is not None:
            if token[1] in ("*", "/"):
                self.pos += 1
                right = self.unary()
                result = self._mul(result, right if token[1] == "*" else self._pow(right, sympy.Integer(-1)))
            elif self._starts_factor(token):
                result = self._mul(result, self.power())
            else:
                break
        return result

    def _starts_factor(self, token: tuple[str, str]) -> bool:
        """Can this token begin an implicitly multiplied factor (`2x`, `2\\sqrt{3}`, `(a)(b)`)?"""
        kind, value = token
        if kind in ("num", "letter"):
            return True
        if kind == "cmd":
            return value not in _NOT_FACTORS
        return value in ("(", "{", "[")

    def unary(self) -> sympy.Expr:
        if self.accept("-"):
            return self._neg(self.unary())
        if self.accept("+"):
            return self.unary()
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.postfix()
        if self.accept("^") or self.accept("**"):
            exponent = self.exponent()
            return self._pow(base, exponent)
        return base

    def exponent(self) -> sympy.Expr:
        if self.accept("-"):
            return self._neg(self.exponent())
        token = self.peek()
        if token is not None and token[0] == "num" and token[1].isdigit() and len(token[1]) > 1:
            # x^23 in LaTeX means x^2 * 3 only for single-token exponents; a bare digit run is x^{2}3.
            self.pos += 1
            digits = token[1]
            self.tokens.insert(self.pos, ("num", digits[1:]))
            return sympy.Integer(digits[0])
        return self.postfix()

    def postfix(self) -> sympy.Expr:
        value = self.primary()
        if isinstance(value, sympy.Symbol) and self.accept("_"):  # x_1, a_{n+1}: a name, not an operation
            token = self.take()
            if token[1] == "{":
                depth, parts = 1, []
                while depth:
                    token = self.take()
                    depth += {"{": 1, "}": -1}.get(token[1], 0)
                    parts.append(token[1])
                subscript = "".join(parts[:-1])
            else:
                subscript = token[1][0] if token[0] == "num" else token[1]
                if token[0] == "num" and len(token[1]) > 1:
                    self.tokens.insert(self.pos, ("num", token[1][1:]))
            value = sympy.Symbol(f"{value.name}_{subscript}")
        while (token := self.peek()) is not None and token[1] in ("!", "'"):
            self.pos += 1
            if token[1] == "'":
                raise LatexError("primes are not values")
            value = self._factorial(value)
        return value

    def primary(self) -> sympy.Expr:
        kind, value = self.take()
        if kind == "num":
            return self._number(value)
        if kind == "letter":
            return _letter(value)
        if kind == "cmd":
            return self.command(value[1:])
        if value in ("(", "["):
            inner = self.expr()
            self.expect(")" if value == "(" else "]")
            return inner
        if value == "{":
            inner = self.expr()
            self.expect("}")
            return inner
        if value == "|":
            inner = self.expr()
            self.expect("|")
            return sympy.Abs(inner)
        raise LatexError(f"unexpected {value!r}")

    def group(self) -> sympy.Expr:
        """A braced argument, or a single token (`\\frac12`, `\\sqrt2`)."""
        token = self.peek()
        if token is None:
            raise LatexError("missing argument")
        if token[1] == "{":
            return self.primary()
        if token[0] == "num":
            self.pos += 1
            return self._number(token[1][0]) if token[1].isdigit() else self._number(token[1])
        return self.primary()

    def command(self, name: str) -> sympy.Expr:
        if name == "frac":
            numerator = self.group_digits_split()
            denominator = self.group_digits_split()
            return self._mul(numerator, self._pow(denominator, sympy.Integer(-1)))
        if name == "sqrt":
            if self.accept("["):
                degree = self.expr()
                self.expect("]")
                return sympy.root(self.group(), degree)
            return sympy.sqrt(self.group())
        if name == "binom":
            top, bottom = self.group(), self.group()
            return sympy.binomial(top, bottom)
        if name == "pi":
            return sympy.pi
        if name == "infty":
            return sympy.oo
        if name in ("lfloor", "lceil"):
            inner = self.expr()
            self.expect("\\rfloor" if name == "lfloor" else "\\rceil")
            return sympy.floor(inner) if name == "lfloor" else sympy.ceiling(inner)
        if name == "{":
            raise LatexError("a set is not an expression")
        if name == "|":
            inner = self.expr()
            self.expect("\\|")
            return sympy.Abs(inner)
        if name in _GREEK:
            return sympy.Symbol(name)
        if name in _FUNCTIONS:
            return self.function(name)
        raise LatexError(f"unknown command \\{name}")

    def group_digits_split(self) -> sympy.Expr:
        r"""`\frac12`: each argument of a braceless \frac is one digit."""
        token = self.peek()
        if token is not None and token[0] == "num" and token[1].isdigit() and len(token[1]) > 1:
            self.pos += 1
            self.tokens.insert(self.pos, ("num", token[1][1:]))
            return sympy.Integer(token[1][0])
        return self.group()

    def function(self, name: str) -> sympy.Expr:
        base = None
        if name == "log" and self.accept("_"):
            base = self.group()
        power = None
        if self.accept("^"):
            power = self.exponent()
        token = self.peek()
        argument = self.primary() if token is not None and token[1] in ("(", "{", "[") else self.power()
        value = sympy.log(argument, base) if base is not None else _FUNCTIONS[name](argument)
        if power is None:
            return value
        if power == -1 and name in _INVERSES:  # \sin^{-1} x is arcsin x
            return _INVERSES[name](argument)
        return self._pow(value, power)

    # ------------------------------------------------------------ guarded builders
    # Once a giant value is in the tree, sympy must not re-evaluate it while
    # combining terms (Add.flatten would expand 10**(10**10)), so every later
    # node is built unevaluated.
    def _add(self, left: sympy.Expr, right: sympy.Expr) -> sympy.Expr:
        return sympy.Add(left, right, evaluate=not self.huge)

    def _mul(self, left: sympy.Expr, right: sympy.Expr) -> sympy.Expr:
        return sympy.Mul(left, right, evaluate=not self.huge)

    def _neg(self, value: sympy.Expr) -> sympy.Expr:
        return sympy.Mul(sympy.Integer(-1), value, evaluate=not self.huge)

    def _number(self, text: str) -> sympy.Expr:
        if "." in text:
            self.has_decimal = True
            self.decimals = max(self.decimals, len(text.partition(".")[2]))
            return sympy.Rational(text.rstrip(".") or "0")
        return sympy.Integer(text)

    def _pow(self, base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
        if base.is_number and exponent.is_number and (self.huge or _too_big(base, exponent)):
            self.huge = True
            return sympy.Pow(base, exponent, evaluate=False)
        return sympy.Pow(base, exponent)

    def _factorial(self, value: sympy.Expr) -> sympy.Expr:
        if value.is_Integer and int(value) > MAX_FACTORIAL or (value.is_number and not value.is_Integer and self.huge):
            self.huge = True
            return sympy.factorial(value, evaluate=False)
        return sympy.factorial(value)


def _too_big(base: sympy.Expr, exponent: sympy.Expr) -> bool:
    """Would evaluating base**exponent exactly produce more than MAX_EXACT_BITS?"""
    if exponent.is_Integer and base.is_Rational:
        bits = max(abs(base.p).bit_length(), abs(base.q).bit_length())
        return bits * abs(int(exponent)) > MAX_EXACT_BITS
    try:
        magnitude = abs(complex(exponent.evalf(15)))
        base_size = abs(complex(base.evalf(15)))
    except (TypeError, ValueError, OverflowError):
        return True
    return magnitude * max(math.log2(base_size) if base_size > 0 else 0.0, 1.0) > MAX_EXACT_BITS


_SYMBOLS: dict[str, sympy.Expr] = {"i": sympy.I, "e": sympy.E}


def _letter(name: str) -> sympy.Expr:
    return _SYMBOLS.get(name) or sympy.Symbol(name)


def parse_latex_expr(text: str) -> Parsed:
    """Parse one expression; raise LatexError if it is not one."""
    parser = _Parser(text)
    try:
        expr = parser.parse()
    except (TypeError, ValueError, ZeroDivisionError, RecursionError) as error:
        if isinstance(error, LatexError):
            raise
        raise LatexError(f"cannot build the expression: {error}") from error
    return Parsed(expr=expr, huge=parser.huge, has_decimal=parser.has_decimal, decimals=parser.decimals)
