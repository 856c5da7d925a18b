"""The runner's behaviour on honest programs: languages, test styles, limits, statuses, API."""

from __future__ import annotations

import os
import threading
import time

import pytest

from verifier_service.code import (AssertTests, CallCase, CallTests, CodeLimits, CodeRequest, CodeRunner,
                                   CodeStatus, Extraction, RunnerConfig, StdioCase, StdioTests, Whitespace)

from sandbox_helpers import run_assert, run_call, run_py

CPP_SUM = """#include <bits/stdc++.h>
int main() { long long a, b; std::cin >> a >> b; std::cout << a + b << "\\n"; }
"""

MODEL_RESPONSE = """Let me think about this.

First a helper in another language:
```bash
echo not this
```
A first attempt:
```python
def add(a, b):
    return a - b
```
Wait, that is wrong. The final answer:
```python
def add(a, b):
    return a + b
```
"""


def test_full_mode_reports_nothing_missing(runner):
    assert runner.mode == "full" and runner.missing_protections == () and runner.slots == 1


def test_cpp_stdio_compiled_once(runner):
    cases = tuple(StdioCase(f"{i} {i * 2}\n", f"{i * 3}\n") for i in range(5))
    verdict = runner.run(CodeRequest(response=f"```cpp\n{CPP_SUM}```", language="cpp", tests=StdioTests(cases)))
    assert verdict.status is CodeStatus.PASSED and verdict.passed == 5, verdict


def test_cpp_compile_error(runner):
    verdict = runner.run(CodeRequest(response="```cpp\nint main() { return x; }\n```", language="cpp",
                                     tests=StdioTests((StdioCase("", ""),))))
    assert verdict.status is CodeStatus.COMPILE_ERROR and "x" in verdict.stderr, verdict
    assert verdict.judged


def test_cpp_wrong_answer_and_crash(runner):
    wrong = runner.run(CodeRequest(response=CPP_SUM.replace("a + b", "a - b"), language="cpp",
                                   extraction=Extraction.WHOLE, tests=StdioTests((StdioCase("1 2", "3"),))))
    assert wrong.status is CodeStatus.FAILED
    crash = runner.run(CodeRequest(response="int main() { int *p = 0; return *p; }", language="cpp",
                                   extraction=Extraction.WHOLE, tests=StdioTests((StdioCase("", ""),))))
    assert crash.status is CodeStatus.RUNTIME_ERROR and "SIGSEGV" in crash.reason


@pytest.mark.parametrize("rule, output, passes", [
    (Whitespace.TRAILING, "1 2  \n3\n\n\n", True),
    (Whitespace.TRAILING, "1  2\n3\n", False),
    (Whitespace.TOKENS, "1  2\n\n3", True),
    (Whitespace.EXACT, "1 2\n3\n", True),
    (Whitespace.EXACT, "1 2\n3", False),
])
def test_whitespace_rules_through_the_sandbox(runner, rule, output, passes):
    verdict = runner.run(CodeRequest(response=f"print({output!r}, end='')", extraction=Extraction.WHOLE,
                                     tests=StdioTests((StdioCase("", "1 2\n3\n"),), rule)))
    assert (verdict.status is CodeStatus.PASSED) == passes, verdict


def test_extraction_from_a_full_model_response(runner):
    verdict = runner.run(CodeRequest(response=MODEL_RESPONSE, tests=AssertTests("assert add(2, 3) == 5\n")))
    assert verdict.status is CodeStatus.PASSED and "a + b" in verdict.extracted
    first = runner.run(CodeRequest(response=MODEL_RESPONSE, extraction=Extraction.FIRST_BLOCK,
                                   tests=AssertTests("assert add(2, 3) == 5\n")))
    assert first.status is CodeStatus.FAILED
    none = runner.run(CodeRequest(response="I cannot do that.", tests=AssertTests("assert True\n")))
    assert none.status is CodeStatus.NO_CODE and none.judged


def test_assert_style_counts_each_assert(runner):
    verdict = run_assert(runner, "def sq(x):\n    return x * x if x < 3 else 0\n",
                         "assert sq(1) == 1\nassert sq(2) == 4\nassert sq(3) == 9\n")
    assert (verdict.status, verdict.passed, verdict.total) == (CodeStatus.FAILED, 2, 3)
    assert "sq(3) == 9" in verdict.tests[2].detail


def test_assert_style_exceptions_and_handles(runner):
    code = ("class Box:\n    def __init__(self, v):\n        self.v = v\n"
            "def make(v):\n    return Box(v)\ndef unbox(b):\n    return b.v\n"
            "def fail(x):\n    raise ValueError('bad ' + str(x))\n")
    tests = ("assert unbox(make(7)) == 7\nassert make(7) != 7\n"
             "try:\n    fail(1)\n    raise AssertionError('no error')\nexcept ValueError as err:\n    assert 'bad 1' in str(err)\n"
             "assert fail(2) == 0\n")
    verdict = run_assert(runner, code, tests)
    assert verdict.passed == 2 and verdict.total == 3, verdict
    assert verdict.status is CodeStatus.RUNTIME_ERROR and "ValueError: bad 2" in verdict.reason


def test_call_style_values_and_float_tolerance(runner):
    code = "def f(x, scale=1):\n    return {'sum': sum(x) * scale, 'parts': tuple(x), 'ratio': 1 / 3}\n"
    cases = (CallCase("[[1, 2]]", "", '{"sum": 3, "parts": [1, 2], "ratio": 0.333333}'),
             CallCase("[[1, 2]]", '{"scale": 2}', '{"sum": 6, "parts": [1, 2], "ratio": 0.3333333}'))
    loose = runner.run(CodeRequest(response=code, extraction=Extraction.WHOLE,
                                   tests=CallTests("f", cases, float_rel_tol=1e-5)))
    assert loose.status is CodeStatus.PASSED and loose.passed == 2, loose
    exact = runner.run(CodeRequest(response=code, extraction=Extraction.WHOLE, tests=CallTests("f", cases)))
    assert exact.status is CodeStatus.FAILED and exact.passed == 0


def test_call_style_continues_after_a_crash(runner):
    code = "import os\ndef f(x):\n    if x == 1:\n        os._exit(3)\n    return x\n"
    verdict = run_call(runner, code, "f", [("[0]", "0"), ("[1]", "1"), ("[2]", "2")])
    assert [t.status for t in verdict.tests] == [CodeStatus.PASSED, CodeStatus.RUNTIME_ERROR, CodeStatus.PASSED]


def test_stop_at_first_failure(runner):
    cases = tuple(StdioCase(str(i), str(i if i != 1 else -1)) for i in range(4))
    verdict = runner.run(CodeRequest(response="print(input())", extraction=Extraction.WHOLE,
                                     tests=StdioTests(cases), stop_at_first_failure=True))
    assert (verdict.status, verdict.passed, verdict.total, len(verdict.tests)) == (CodeStatus.FAILED, 1, 4, 2)


def test_cpu_time_is_judged_not_wall_time(runner):
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\ntime.sleep(0.5)\nprint('ok')\n"
    verdict = run_py(runner, code, expected="ok\n", cpu_time_s=0.5, wall_time_s=3.0)
    assert verdict.status is CodeStatus.PASSED and 0.3 <= verdict.cpu_time_s < 0.5, verdict


def test_runtime_error_detail_and_stderr(runner):
    verdict = run_py(runner, "print('partial')\nraise KeyError('missing')\n", expected="partial\n")
    assert verdict.status is CodeStatus.RUNTIME_ERROR and "KeyError" in verdict.reason
    assert verdict.stdout == "partial\n" and "Traceback" in verdict.stderr


@pytest.mark.parametrize("request_, reason", [
    (CodeRequest(response="x", language="rust", tests=StdioTests((StdioCase("", ""),))), "language"),
    (CodeRequest(response="x", extraction=Extraction.WHOLE, tests=StdioTests(())), "cases"),
    (CodeRequest(response="x", extraction=Extraction.WHOLE, tests=CallTests("f", (CallCase("{", "", "1"),))), "JSON"),
    (CodeRequest(response="x", extraction=Extraction.WHOLE, tests=CallTests("not a name", (CallCase(),))), "fn"),
    (CodeRequest(response="x", language="cpp", extraction=Extraction.WHOLE, tests=AssertTests("assert 1")), "stdio"),
    (CodeRequest(response="x", extraction=Extraction.WHOLE, tests=StdioTests((StdioCase("", ""),)),
                 limits=CodeLimits(cpu_time_s=-1)), "cpu_time_s"),
    (CodeRequest(response="x", extraction=Extraction.WHOLE, tests=StdioTests((StdioCase("", ""),)),
                 limits=CodeLimits(memory_bytes=1 << 50)), "memory_bytes"),
])
def test_invalid_requests_are_not_judged(runner, request_, reason):
    verdict = runner.run(request_)
    assert verdict.status in (CodeStatus.INVALID_ARGUMENT, CodeStatus.UNAVAILABLE) and not verdict.judged
    assert reason in verdict.reason


def test_invalid_test_code(runner):
    verdict = run_assert(runner, "def f():\n    return 1\n", "assert f( ==")
    assert verdict.status is CodeStatus.INVALID_ARGUMENT and not verdict.judged


def test_many_threads_share_the_slots(runner):
    results = []

    def one(i: int) -> None:
        results.append(run_py(runner, f"print({i} * 2)", expected=f"{i * 2}\n").status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [CodeStatus.PASSED] * 12


def test_config_and_lifecycle():
    with pytest.raises(ValueError):
        RunnerConfig(mode="off")
    idle = CodeRunner(RunnerConfig())
    assert idle.mode == "off"
    verdict = idle.run(CodeRequest(response="x", extraction=Extraction.WHOLE, tests=StdioTests((StdioCase("", ""),))))
    assert verdict.status is CodeStatus.UNAVAILABLE
    idle.close()


@pytest.mark.slow
def test_no_false_timeout_at_full_concurrency():
    """Programs using under half their CPU limit are never judged TIMEOUT while 4x more runs than
    cores are queued: they pass, or, demoted past 200 ms on a machine that other jobs keep busy,
    come back not judged (starved), never as the program's fault."""
    from sandbox_helpers import start_runner
    r = start_runner()
    try:
        code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4:\n    pass\nprint('ok')\n"
        request = CodeRequest(response=code, extraction=Extraction.WHOLE, tests=StdioTests((StdioCase("", "ok"),)),
                              limits=CodeLimits(cpu_time_s=1.0, wall_time_s=3.0))
        results = []
        threads = [threading.Thread(target=lambda: results.append(r.run(request))) for _ in range(4 * r.slots)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(v.status is CodeStatus.PASSED or (v.status is CodeStatus.SANDBOX_ERROR and
                                                      v.reason.startswith("not judged: starved of CPU"))
                   for v in results), [v.reason for v in results]
        assert time.monotonic() - start < 30
    finally:
        r.close()


def _no_cgroups():
    from verifier_service.code.isolation import IsolationError
    raise IsolationError(2, "cgroups switched off by the test")


_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")


@_ROOT
def test_full_mode_refuses_without_cgroups(monkeypatch):
    from verifier_service.code import runner as runner_module
    from verifier_service.code import SandboxUnavailable
    monkeypatch.setattr(runner_module, "cgroup_parents", _no_cgroups)
    with pytest.raises(SandboxUnavailable, match="cgroups"):
        CodeRunner(RunnerConfig(slots=1)).start()


@_ROOT
@pytest.mark.slow
def test_weak_mode_says_what_is_lost_and_still_stops_loops(monkeypatch):
    from verifier_service.code import runner as runner_module
    monkeypatch.setattr(runner_module, "cgroup_parents", _no_cgroups)
    weak = CodeRunner(RunnerConfig(slots=1, mode="weak")).start()
    try:
        assert weak.mode == "weak" and any("cgroups" in m for m in weak.missing_protections)
        assert run_py(weak, "print(2 * 21)", expected="42\n").status is CodeStatus.PASSED
        loop = run_py(weak, "while True:\n    pass\n", cpu_time_s=0.5)
        assert loop.status is CodeStatus.TIMEOUT, loop  # RLIMIT_CPU: whole seconds
        sleeper = run_py(weak, "import time\ntime.sleep(100)\n", cpu_time_s=0.5, wall_time_s=1.0)
        assert sleeper.status is CodeStatus.TIMEOUT, sleeper
    finally:
        weak.close()


def test_large_arguments_and_results_cross_the_boundary(runner):
    code = "def rev(xs):\n    print('x' * 100_000)\n    return xs[::-1]\n"
    big = list(range(200_000))
    verdict = run_assert(runner, code, f"xs = list(range({len(big)}))\nassert rev(xs) == xs[::-1]\n",
                         output_bytes=1 << 20)
    assert verdict.status is CodeStatus.PASSED, verdict
    call = runner.run(CodeRequest(response=code, extraction=Extraction.WHOLE,
                                  tests=CallTests("rev", (CallCase(f"[{big}]", "", str(big[::-1])),)),
                                  limits=CodeLimits(output_bytes=1 << 20)))
    assert call.status is CodeStatus.PASSED, call


def test_call_style_solution_that_does_not_load(runner):
    verdict = run_call(runner, "def f(x:\n    return x\n", "f", [("[1]", "1")] * 50)
    assert verdict.status is CodeStatus.RUNTIME_ERROR and verdict.passed == 0 and verdict.total == 50
    assert "SyntaxError" in verdict.reason and len(verdict.tests) == 1


@pytest.mark.slow
def test_cpp_limits(runner):
    loop = runner.run(CodeRequest(response="int main() { volatile long x = 0; for (;;) x++; }", language="cpp",
                                  extraction=Extraction.WHOLE, tests=StdioTests((StdioCase("", ""),)),
                                  limits=CodeLimits(cpu_time_s=0.5)))
    assert loop.status is CodeStatus.TIMEOUT, loop
    hog = runner.run(CodeRequest(response="#include <vector>\nint main() { std::vector<long> v(1L << 32, 1); "
                                          "return (int) v[7]; }", language="cpp", extraction=Extraction.WHOLE,
                                 tests=StdioTests((StdioCase("", ""),)), limits=CodeLimits(memory_bytes=64 << 20)))
    assert hog.status is CodeStatus.MEMORY_LIMIT, hog
