"""Tables for the pure parts (no sandbox): block extraction, output rules, value comparison, the
plain-data codec."""

from __future__ import annotations

import math

import pytest

from tasks.code_blocks import extract_code, find_blocks
from verifier_service.code import plain
from verifier_service.code.compare import output_matches, value_matches
from verifier_service.code.types import Whitespace


@pytest.mark.parametrize("response, language, mode, expected", [
    ("```python\na = 1\n```", "python", "LAST_BLOCK", "a = 1\n"),
    ("```py\na\n```\n```python\nb\n```", "python", "LAST_BLOCK", "b\n"),
    ("```py\na\n```\n```python\nb\n```", "python", "FIRST_BLOCK", "a\n"),
    ("```py\na\n```\ntext\n```\nb\n```", "python", "ALL_BLOCKS", "a\n\nb\n"),
    ("```python\na\n```\n```cpp\nint x;\n```", "python", "LAST_BLOCK", "a\n"),
    ("```python\na\n```\n```cpp\nint x;\n```", "cpp", "LAST_BLOCK", "int x;\n"),
    ("```c++\nint y;\n```", "cpp", "LAST_BLOCK", "int y;\n"),
    ("~~~python\nt\n~~~", "python", "LAST_BLOCK", "t\n"),
    ("````python\n```\ninner\n```\n````", "python", "LAST_BLOCK", "```\ninner\n```\n"),
    ("text\n```python\ncut off by the token limit", "python", "LAST_BLOCK", "cut off by the token limit\n"),
    ("no code here", "python", "LAST_BLOCK", None),
    ("```python\n\n```", "python", "LAST_BLOCK", None),
    ("```bash\nls\n```", "python", "LAST_BLOCK", None),
    ("x = 1", "python", "WHOLE", "x = 1"),
])
def test_extract_code(response, language, mode, expected):
    assert extract_code(response, language, mode) == expected


def test_find_blocks_keeps_tags():
    assert find_blocks("```Python {.numberLines}\nx\n```") == [("python", "x\n")]


def test_unknown_mode():
    with pytest.raises(ValueError):
        extract_code("x", "python", "MIDDLE")


@pytest.mark.parametrize("rule, got, expected, same", [
    (Whitespace.TRAILING, b"a b \r\n\n", "a b", True),
    (Whitespace.TRAILING, b"a  b", "a b", False),
    (Whitespace.TRAILING, b"\na", "a", False),
    (Whitespace.TOKENS, b" a\n\tb ", "a b", True),
    (Whitespace.TOKENS, b"ab", "a b", False),
    (Whitespace.EXACT, b"a\n", "a\n", True),
    (Whitespace.EXACT, b"a", "a\n", False),
    (Whitespace.EXACT, "é\n".encode(), "é\n", True),
])
def test_output_rules(rule, got, expected, same):
    assert output_matches(got, expected, rule) is same


@pytest.mark.parametrize("got, expected, tol, same", [
    (1, 1, 0, True), (1, 1.0, 0, True), (True, 1, 0, False), (1, True, 0, False),
    (0.1 + 0.2, 0.3, 0, False), (0.1 + 0.2, 0.3, 1e-9, True), (math.nan, math.nan, 0, True),
    (10 ** 400, 10 ** 400, 0, True), (10 ** 400, 1e300, 1e-6, False),
    ((1, 2), [1, 2], 0, True), ([1, [2]], [1, [2]], 0, True), ({3, 1}, [1, 3], 0, True), ({1}, [1, 1], 0, False),
    ({1: "a"}, {"1": "a"}, 0, True), ({"a": 1}, {"a": 1, "b": 2}, 0, False), (None, None, 0, True),
    ("1", 1, 0, False), (plain.Handle(0, "E"), 1, 0, False), (iter([1]), [1], 0, False),
])
def test_value_matches(got, expected, tol, same):
    assert value_matches(got, expected, tol) is same


class _Liar(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class _ListLiar(list):
    def __iter__(self):
        return iter([42])


@pytest.mark.parametrize("value", [
    None, True, 0, -5, 10 ** 5000, 1.5, math.inf, "s", b"\x00b", 1j, [1, (2, 3)], {"a": {1, 2}},
    frozenset({1}), {(1, 2): [None]}, int, str,
])
def test_plain_round_trip(value):
    assert plain.loads(plain.dumps(value)) == value


def test_plain_reduces_subclasses_to_their_real_values():
    assert type(plain.loads(plain.dumps(_Liar(3)))) is int and plain.loads(plain.dumps(_Liar(3))) == 3
    assert plain.loads(plain.dumps(_ListLiar([1, 2]))) == [1, 2]
    assert plain.loads(plain.dumps(x for x in range(3))).__next__() == 0


def test_plain_refuses_or_keeps_other_objects():
    with pytest.raises(plain.NotPlain):
        plain.dumps(object())
    kept = []
    handle = plain.loads(plain.dumps([object()], keep=lambda o: kept.append(o) or len(kept) - 1))[0]
    assert handle == plain.Handle(0, "object") and handle != 0 and len(kept) == 1
    deep = []
    for _ in range(plain.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(plain.NotPlain):
        plain.dumps(deep)


# ---------------------------------------------------------------- a run that ended without "done"

def _stdio_job():
    from verifier_service.code.types import CodeLimits, CodeRequest, StdioCase, StdioTests
    from verifier_service.code.verdicts import Job
    request = CodeRequest(response="print(1)", tests=StdioTests(cases=(StdioCase(input="", output="1"),)))
    return Job(request, "print(1)", CodeLimits(1.0, 128 << 20, 1 << 16, 2.0), {"style": "stdio"}, None, 1, ["1"])


def test_run_whose_init_the_oom_killer_took_is_memory_limit():
    """Under memory pressure the OOM killer can take the run's init after the solution (found by the
    load test, bench/load.py): with OOM kills in the run's cgroup that is MEMORY_LIMIT, not a fault."""
    from verifier_service.code.types import CodeStatus
    from verifier_service.code.verdicts import assemble
    verdict = assemble(_stdio_job(), [], {"backstop": False, "status": -9, "oom_kills": 2})
    assert verdict.status is CodeStatus.MEMORY_LIMIT and verdict.passed == 0, verdict


def test_run_ended_without_result_and_without_oom_is_a_fault():
    from verifier_service.code.verdicts import SandboxFault, assemble
    with pytest.raises(SandboxFault, match="without a result"):
        assemble(_stdio_job(), [], {"backstop": False, "status": -9, "oom_kills": 0})
    with pytest.raises(SandboxFault):
        assemble(_stdio_job(), [], {"backstop": False, "status": 0, "oom_kills": 1})  # init exited by itself
