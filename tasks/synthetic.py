"""A synthetic family of multi-step arithmetic word problems whose every step has an exact label.

Why: outcome rewards, PRM training and step-level search all need problems where the truth of each
intermediate step is known, cheaply and without a grader model. Here a problem is a start value and a
chain of operations; every intermediate value is known, so any step a model writes can be judged exactly.
The text is short and regular on purpose: the demo trains a ~1M-parameter character-level model on it in
minutes. Example (default difficulty):

    question: "Ann has 12 apples. Ann gets 7 more. Ann gives away 5. How many apples now?"
    steps:    "12 + 7 = 19" / "19 - 5 = 14" / "#### 14"      (one step per line; the last is the answer)

Splits: a problem belongs to "train" or "heldout" by a hash of its arithmetic (start, operations,
operands), not of its wording or of the seed, so the same sums never appear in both splits, whatever
seeds generated them.

Step semantics (`check_steps`): step i < n must perform the problem's i-th operation on the true value
so far and state the true result (a + b and a * b may be written either way round); step n must state
the final answer ("#### 14" or "\\boxed{14}"); anything else, including extra steps, is wrong. Parsing
is lenient about words, spacing, "x"/"×"/"÷" and "$", strict about numbers: a step must hold exactly
one equation and no other numbers. Verdicts are per step, against the truth: a step that recovers the
right value after an earlier error is judged right; `StepChain.labels()` is the prefix view.

Wrong chains with exact labels (for PRM training and evaluation) come from `tasks.corruptions`.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from tasks.types import CHECK_MATH, CHECK_STEPS, Problem, StepChain

__all__ = ["SyntheticConfig", "Chain", "generate", "split_of", "chain_of", "reference_steps",
           "reference_chain", "parse_step", "check_steps", "first_error", "chain_from_steps",
           "split_solution", "format_step", "format_answer", "OPS", "SPLITS", "STEP_SEPARATOR"]

STEP_SEPARATOR = "\n"
SPLITS = ("train", "heldout")


def _div(a: int, b: int) -> int | None:
    return a // b if b and a % b == 0 else None


# The operations; None means "no exact integer result", which the generator never produces.
OPS: dict[str, Callable[[int, int], int | None]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": _div}
_COMMUTATIVE = {"+", "*"}

_NAMES = ("Ann", "Bob", "Cal", "Dan", "Eve", "Max", "Sam", "Zoe")
_ITEMS = ("apples", "pens", "coins", "cards", "eggs", "books", "stamps", "shells")
_START = "{name} has {a} {item}."
_PHRASES = {
    "+": ("{name} gets {b} more.", "{name} finds {b} more."),
    "-": ("{name} gives away {b}.", "{name} loses {b}."),
    "*": ("{name} now has {b} times as many.", "{name} multiplies them by {b}."),
    "/": ("{name} splits them into {b} equal piles and keeps one.", "{name} keeps one of {b} equal shares."),
}
_QUESTION = "How many {item} now?"
_ANSWER_STYLES = {"hashes": "#### {x}", "boxed": "\\boxed{{{x}}}"}


@dataclass(frozen=True)
class SyntheticConfig:
    """Difficulty knobs. Every number in a problem and every intermediate value lies in
    [1, max_value]; multipliers and divisors lie in [2, max_factor]."""

    min_steps: int = 2
    max_steps: int = 3
    max_value: int = 99
    max_factor: int = 9
    ops: tuple[str, ...] = ("+", "-", "*")
    answer_style: str = "hashes"  # "hashes": "#### 14"; "boxed": "\boxed{14}"
    heldout_fraction: float = 0.1  # share of all arithmetic chains that belong to "heldout"

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if self.max_value < 3 or self.max_factor < 2:
            raise ValueError("need max_value >= 3 and max_factor >= 2")
        if not self.ops or set(self.ops) - set(OPS):
            raise ValueError(f"ops must be a non-empty subset of {sorted(OPS)}, got {self.ops}")
        if self.answer_style not in _ANSWER_STYLES:
            raise ValueError(f"answer_style must be one of {sorted(_ANSWER_STYLES)}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError("heldout_fraction must be in (0, 1)")


@dataclass(frozen=True)
class Chain:
    """The arithmetic of a problem: a start value and (operation, operand) pairs."""

    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def values(self) -> tuple[int, ...]:
        """The start value and the value after each operation: len(ops) + 1 numbers."""
        vals = [self.start]
        for op, b in self.ops:
            vals.append(OPS[op](vals[-1], b))
        return tuple(vals)

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def signature(self) -> str:
        """"12 + 7 - 5": what the split hash and deduplication look at (wording excluded)."""
        return " ".join([str(self.start)] + [f"{op} {b}" for op, b in self.ops])


def split_of(chain: Chain, heldout_fraction: float = SyntheticConfig.heldout_fraction) -> str:
    """"heldout" or "train", from a hash of the chain's arithmetic (stable across seeds and runs)."""
    digest = hashlib.sha256(b"verirl-synthetic:" + chain.signature.encode()).hexdigest()
    return "heldout" if int(digest[:12], 16) / 16**12 < heldout_fraction else "train"


def _operands(op: str, v: int, cfg: SyntheticConfig) -> range | list[int]:
    """Operands that keep the result an integer in [1, max_value]."""
    if op == "+":
        return range(1, cfg.max_value - v + 1)
    if op == "-":
        return range(1, v)
    if op == "*":
        return range(2, min(cfg.max_factor, cfg.max_value // v) + 1)
    return [d for d in range(2, cfg.max_factor + 1) if v % d == 0]


def _sample_chain(rng: random.Random, cfg: SyntheticConfig) -> Chain:
    v = start = rng.randint(2, cfg.max_value)
    ops = []
    for _ in range(rng.randint(cfg.min_steps, cfg.max_steps)):
        feasible = {op: c for op in cfg.ops if (c := _operands(op, v, cfg))}
        if not feasible:  # only with ops lacking "+" and "-": e.g. a prime under "*"/"/" limits
            break
        op = rng.choice(sorted(feasible))
        b = rng.choice(feasible[op])
        ops.append((op, b))
        v = OPS[op](v, b)
    return Chain(start, tuple(ops))


def format_step(a: int, op: str, b: int, c: int) -> str:
    """"12 + 7 = 19": the one step format of the family."""
    return f"{a} {op} {b} = {c}"


def format_answer(x: int, style: str = "hashes") -> str:
    """The answer line: "#### 14" (style "hashes") or "\\boxed{14}" (style "boxed")."""
    return _ANSWER_STYLES[style].format(x=x)


def _render(chain: Chain, rng: random.Random) -> tuple[str, dict]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    parts = [_START.format(name=name, a=chain.start, item=item)]
    parts += [rng.choice(_PHRASES[op]).format(name=name, b=b) for op, b in chain.ops]
    parts.append(_QUESTION.format(item=item))
    return " ".join(parts), {"name": name, "item": item}


def _steps_of(chain: Chain, style: str) -> list[str]:
    vals = chain.values
    steps = [format_step(vals[i], op, b, vals[i + 1]) for i, (op, b) in enumerate(chain.ops)]
    return steps + [format_answer(chain.answer, style)]


def generate(n: int, *, split: str = "train", seed: int = 0,
             config: SyntheticConfig | None = None) -> list[Problem]:
    """`n` distinct problems of one split, the same for the same (n, split, seed, config).

    Problems are distinct by arithmetic; a space too small for `n` (tight knobs) is an error rather
    than an endless loop.
    """
    cfg = config or SyntheticConfig()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"verirl-synthetic:{seed}:{split}")
    seen: set[str] = set()
    out: list[Problem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 1000 + 200 * n:
            raise ValueError(f"found only {len(out)} of {n} distinct {split} problems in {attempts - 1} "
                             f"draws: the knobs {cfg} leave too few; loosen them or ask for fewer")
        chain = _sample_chain(rng, cfg)
        if len(chain.ops) < cfg.min_steps or chain.signature in seen or \
                split_of(chain, cfg.heldout_fraction) != split:
            continue
        seen.add(chain.signature)
        text, words = _render(chain, rng)
        steps = _steps_of(chain, cfg.answer_style)
        digest = hashlib.sha256(f"{chain.signature}|{text}".encode()).hexdigest()[:12]
        out.append(Problem(
            id=f"syn-{digest}", prompt=text, gold=str(chain.answer), checks=(CHECK_MATH, CHECK_STEPS),
            metadata={"source": "synthetic", "split": split, "start": chain.start,
                      "ops": [[op, b] for op, b in chain.ops], "signature": chain.signature,
                      "values": list(chain.values), "steps": steps, "solution": STEP_SEPARATOR.join(steps),
                      "answer_style": cfg.answer_style, "max_value": cfg.max_value,
                      "max_factor": cfg.max_factor, "op_set": list(cfg.ops), **words}))
    return out


def chain_of(problem: Problem) -> Chain:
    """The arithmetic of a synthetic problem (also after a JSON round trip of the problem)."""
    meta = problem.metadata
    if meta.get("source") != "synthetic":
        raise ValueError(f"problem {problem.id!r} is not from the synthetic family")
    return Chain(int(meta["start"]), tuple((str(op), int(b)) for op, b in meta["ops"]))


def reference_steps(problem: Problem) -> list[str]:
    """The reference solution, one string per step, the answer line last."""
    return _steps_of(chain_of(problem), problem.metadata.get("answer_style", "hashes"))


def reference_chain(problem: Problem) -> StepChain:
    return StepChain(problem=problem.prompt, steps=tuple(reference_steps(problem)), first_error=-1,
                     gold=problem.gold, id=problem.id,
                     metadata={"source": "synthetic", "kind": "correct", "final_answer_correct": True})


def split_solution(text: str) -> list[str]:
    """A model's solution text as steps: its non-blank lines, stripped."""
    return [line.strip() for line in text.split(STEP_SEPARATOR) if line.strip()]


_NUM = r"-?\d+"
_EQUATION = re.compile(rf"({_NUM})\s*([-+*/x×÷])\s*({_NUM})\s*=\s*({_NUM})")
_ANSWER = re.compile(rf"(?:####|\\boxed\{{)\s*({_NUM})\s*\}}?")
_OP_ALIASES = {"x": "*", "×": "*", "÷": "/"}


def _clean(text: str) -> str:
    """Drop thousands separators and "$", unify the minus sign: number forms the checker need not see."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", text).replace("$", "").replace("−", "-")


def parse_step(text: str) -> tuple[int, str, int, int] | None:
    """(a, op, b, c) for a step holding exactly one equation "a op b = c" and no other numbers."""
    text = _clean(text)
    found = list(_EQUATION.finditer(text))
    if len(found) != 1:
        return None
    m = found[0]
    if re.search(r"\d", text[:m.start()] + text[m.end():]):
        return None
    a, op, b, c = m.groups()
    return int(a), _OP_ALIASES.get(op, op), int(b), int(c)


def _parse_answer(text: str) -> int | None:
    text = _clean(text)
    found = list(_ANSWER.finditer(text))
    if len(found) != 1 or re.search(r"\d", text[:found[0].start()] + text[found[0].end():]):
        return None
    return int(found[0].group(1))


def check_steps(problem: Problem | Chain, steps: Iterable[str]) -> list[bool]:
    """Exact per-step verdicts for any chain written for a synthetic problem (semantics: module doc)."""
    chain = problem if isinstance(problem, Chain) else chain_of(problem)
    vals, n = chain.values, len(chain.ops)
    verdicts = []
    for i, text in enumerate(steps):
        if i < n:
            op, b = chain.ops[i]
            got = parse_step(text)
            ok = got is not None and got[1] == op and got[3] == vals[i + 1] and (
                (got[0], got[2]) == (vals[i], b) or (op in _COMMUTATIVE and (got[0], got[2]) == (b, vals[i])))
        else:
            ok = i == n and _parse_answer(text) == chain.answer
        verdicts.append(ok)
    return verdicts


def first_error(verdicts: Iterable[bool]) -> int:
    """Index of the first False, -1 if none."""
    return next((i for i, ok in enumerate(verdicts) if not ok), -1)


def chain_from_steps(problem: Problem, steps: Iterable[str]) -> StepChain:
    """A model-written chain labelled exactly: the form PRM training and step metrics take.

    A chain cut short (no answer line) has no wrong step, so its first_error is -1 although it solves
    nothing: judge the outcome separately (the math check against `problem.gold`).
    """
    steps = tuple(steps)
    return StepChain(problem=problem.prompt, steps=steps, first_error=first_error(check_steps(problem, steps)),
                     gold=problem.gold, id=problem.id, metadata={"source": "synthetic", "kind": "model"})
