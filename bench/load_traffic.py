"""The requests of the load benchmark (bench/load.py): honest ones with a known expected status,
hostile ones with the statuses they may get.

Every draw returns a `Draw`: the kind, the items of one request, and for each item the set of
statuses it may come back with (`allowed`), or the gRPC code the whole call must fail with
(`call_error`, e.g. INVALID_ARGUMENT for an oversized string). Anything else is a wrong
status. Honest items carry random numbers so that the result cache rarely answers them: the
benchmark measures checking, not the cache (see --distinct in load.py for the other case).

Hostile items (one per request, so a refused request costs no honest item):
  math: inputs from tests/math_checker/test_pathological.py's family (towers of powers,
        huge factorials, deep nesting, 200k-digit numbers) -> judged, or TIMEOUT, never
        INTERNAL_ERROR and never CORRECT;
  code: fork bomb, infinite loop, memory bomb, stdout flood -> TIMEOUT / MEMORY_LIMIT /
        OUTPUT_LIMIT (FAILED or RUNTIME_ERROR where the limit shows up as a crash); a bomb demoted
        after 200 ms of CPU may instead reach its wall clock starved on a busy machine, before the
        limit it was racing for: SANDBOX_ERROR "not judged: starved of CPU" (counted as STARVED,
        apart from faults: the service saying it could not judge, never a pass);
  oversized: a 2 MiB response (over max_string_bytes), or more test cases than
        max_tests_per_item -> the call fails with INVALID_ARGUMENT;
  steps: a 200-step chain of long steps -> TOO_LONG (judged False), never a crash.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Draw", "HONEST", "HOSTILE", "HOSTILE_DRAWS", "MATH_TIMEOUT_S", "CODE_CPU_S", "STARVED"]

MATH_TIMEOUT_S = 5.0  # per math item: the server's default deadline, stated so a reader need not look it up
CODE_CPU_S = 1.0      # per hostile program (fork/loop bombs burn this much CPU before TIMEOUT)
STARVED = "SANDBOX_ERROR:starved"  # not judged because the program waited for a core (verdicts.starved)
FAILED_RUN = frozenset({"FAILED", "RUNTIME_ERROR", "TIMEOUT", "MEMORY_LIMIT", "OUTPUT_LIMIT"})


@dataclass(frozen=True)
class Draw:
    kind: str                   # "math", "code" or "steps"
    name: str                   # the template, for the report
    items: list[dict]
    allowed: list[frozenset[str]] = field(default_factory=list)  # per item; empty when call_error is set
    call_error: str = ""        # gRPC code the call must fail with ("" = must succeed)


# ---------------------------------------------------------------- honest


def _math_item(rng: random.Random, i: int) -> tuple[dict, str]:
    """One math item with its expected status, in one of several answer styles."""
    a, b = rng.randint(1, 10**6), rng.randint(2, 10**4)
    style = rng.randrange(6)
    if style == 0:  # equal fraction written differently
        return {"gold": f"{a}/{b}", "response": f"So the answer is \\boxed{{\\frac{{{3 * a}}}{{{3 * b}}}}}."}, "CORRECT"
    if style == 1:
        return {"gold": f"{a}/{b}", "response": f"\\boxed{{\\frac{{{a + 1}}}{{{b}}}}}"}, "INCORRECT"
    if style == 2:  # GSM8K style
        return {"gold": str(a), "response": f"Adding up, we get {a - 1} + 1.\n#### {a}"}, "CORRECT"
    if style == 3:
        return {"gold": f"{a}\\sqrt{{{b}}}", "response": f"The answer is $\\boxed{{{a}\\sqrt{{{b}}}}}$"}, "CORRECT"
    if style == 4:
        return {"gold": f"{a}.5", "response": f"\\boxed{{{2 * a + 1}/2}}"}, "CORRECT"
    return {"gold": str(a), "response": "I could not work this one out."}, "NO_ANSWER"


def honest_math(rng: random.Random, batch: int) -> Draw:
    items, allowed = [], []
    for i in range(batch):
        item, status = _math_item(rng, i)
        items.append({"id": f"m{i}", **item, "options": {"timeout_s": MATH_TIMEOUT_S}})
        allowed.append(frozenset({status}))
    return Draw("math", "honest", items, allowed)


def honest_code(rng: random.Random, batch: int) -> Draw:
    """Tiny stdio programs: multiply the input by k; half the items carry a wrong expected output."""
    items, allowed = [], []
    for i in range(batch):
        k, x = rng.randint(2, 9), rng.randint(1, 10**6)
        wrong = rng.random() < 0.5
        expected = k * x + (1 if wrong else 0)
        items.append({"id": f"c{i}", "language": "python",
                      "response": f"```python\nx = int(input())\nprint(x * {k})\n```",
                      "tests": {"stdio": {"cases": [{"input": f"{x}\n", "output": f"{expected}\n"}]}}})
        allowed.append(frozenset({"FAILED" if wrong else "PASSED"}))
    return Draw("code", "honest", items, allowed)


def honest_steps(rng: random.Random, batch: int) -> Draw:
    """Short chains: a random PRM scores them OK (the score itself is not checkable)."""
    items = [{"id": f"s{i}", "problem": f"What is {a} + {b}?",
              "steps": [f"We add {a} and {b}.", f"{a} + {b} = {a + b}.", f"The answer is {a + b}."]}
             for i, (a, b) in enumerate((rng.randint(1, 999), rng.randint(1, 999)) for _ in range(batch))]
    return Draw("steps", "honest", items, [frozenset({"OK"})] * batch)


HONEST = {"math": honest_math, "code": honest_code, "steps": honest_steps}

# ---------------------------------------------------------------- hostile

_PATHOLOGICAL_MATH = [
    "10^{10^{10^{10}}}", "2^{2^{2^{2^{2^{2}}}}}", "(10^{100})!", "100000!", "\\frac{1}{(10^{6})!}",
    "(" * 500 + "1" + ")" * 500, "\\sqrt{" * 300 + "2" + "}" * 300, "1+" * 5000 + "1", "x^" * 300 + "2",
    "9" * 200000, "e^{e^{e^{e^{10}}}}", "\\sin(10^{10^{5}})", "(x+1)^{1000}-(x-1)^{1000}",
]
MATH_JUDGED_OR_TIMEOUT = frozenset({"INCORRECT", "NO_ANSWER", "PARSE_ERROR", "TIMEOUT"})


def hostile_math(rng: random.Random, batch: int) -> Draw:
    answer = rng.choice(_PATHOLOGICAL_MATH)
    gold = str(rng.randint(2, 10**6))  # never equal to any of the answers above
    item = {"id": "hm", "gold": gold, "response": f"\\boxed{{{answer}}}", "options": {"timeout_s": MATH_TIMEOUT_S}}
    return Draw("math", f"pathological:{answer[:16]}", [item], [MATH_JUDGED_OR_TIMEOUT])


_BOMBS = {
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                  frozenset({"RUNTIME_ERROR", "TIMEOUT", STARVED})),  # RUNTIME_ERROR: stopped at its process limit
    "infinite_loop": ("while True:\n    pass\n", frozenset({"TIMEOUT", STARVED})),
    "memory_bomb": ("blocks = []\nwhile True:\n    blocks.append(b'x' * (1 << 20))\n",
                    frozenset({"MEMORY_LIMIT", STARVED})),
    "stdout_flood": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                     frozenset({"OUTPUT_LIMIT", STARVED})),
}


def hostile_code(rng: random.Random, batch: int) -> Draw:
    name = rng.choice(sorted(_BOMBS))
    code, allowed = _BOMBS[name]
    item = {"id": "hc", "language": "python", "extraction": "WHOLE", "response": code,
            "tests": {"stdio": {"cases": [{"input": "", "output": "1\n"}]}},
            "limits": {"cpu_time_s": CODE_CPU_S, "memory_bytes": 128 << 20, "output_bytes": 1 << 20}}
    return Draw("code", f"bomb:{name}", [item], [allowed])


def hostile_oversized(rng: random.Random, batch: int) -> Draw:
    if rng.random() < 0.5:
        item = {"id": "hs", "gold": "1", "response": "1" * (2 << 20)}  # 2 MiB: over the 1 MiB max_string_bytes
        return Draw("math", "oversized:string", [item], call_error="INVALID_ARGUMENT")
    cases = [{"input": str(i), "output": str(i)} for i in range(300)]  # over max_tests_per_item (256)
    item = {"id": "ht", "language": "python", "response": "print(input())", "extraction": "WHOLE",
            "tests": {"stdio": {"cases": cases}}}
    return Draw("code", "oversized:tests", [item], call_error="INVALID_ARGUMENT")


def hostile_steps(rng: random.Random, batch: int) -> Draw:
    steps = [f"Step {i}: " + "we keep going " * 40 for i in range(200)]
    item = {"id": "hp", "problem": "Count to two hundred.", "steps": steps}
    return Draw("steps", "long_chain", [item], [frozenset({"TOO_LONG"})])


# Hostile draws by the kind of honest traffic they replace: a hostile "math" slot sends a
# pathological item or an oversized request, and so on.
HOSTILE = {"math": (hostile_math, hostile_oversized), "code": (hostile_code, hostile_oversized),
           "steps": (hostile_steps,)}
# By name, for ablations (bench/load.py --hostile-draws).
HOSTILE_DRAWS = {"math": hostile_math, "code": hostile_code, "oversized": hostile_oversized, "steps": hostile_steps}
