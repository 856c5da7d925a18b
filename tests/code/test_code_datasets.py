"""HumanEval and MBPP through the full sandbox: every reference solution passes, a broken
variant of every HumanEval solution fails.

The broken variant wraps the entry point so that it returns a slightly wrong value of the same
kind (an int off by one, a string with a character added, a list with an element added, ...):
a real wrong answer, compared through the plain-data boundary.
"""

from __future__ import annotations

import gzip
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from verifier_service.code import AssertTests, CodeLimits, CodeRequest, CodeStatus, Extraction

from sandbox_helpers import start_runner

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "code")

# MBPP tasks whose own reference solution fails its asserts, and why (checked by the test).
MBPP_REFERENCE_FAILS: dict[int, str] = {}

_BREAK = '''
def _verirl_wrong(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, list):
        return value + [None]
    if isinstance(value, tuple):
        return value + (None,)
    if value is None:
        return 0
    return None

_verirl_original = {name}

def {name}(*args, **kwargs):
    return _verirl_wrong(_verirl_original(*args, **kwargs))
'''


def _humaneval() -> list[dict]:
    with gzip.open(os.path.join(FIXTURES, "HumanEval.jsonl.gz"), "rt") as f:
        return [json.loads(line) for line in f]


def _mbpp() -> list[dict]:
    with gzip.open(os.path.join(FIXTURES, "mbpp.jsonl.gz"), "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runner2():
    # one slot per core: these tests run many programs. Demotion off: a reference solution that
    # needs a second of CPU, demoted on a machine busy with other jobs, is starved into "not judged"
    # (test_cpu_demotion.py); these tests check verdicts, not scheduling.
    r = start_runner(demote_after_ms=0)
    yield r
    r.close()


def _run_all(runner, requests):
    with ThreadPoolExecutor(max_workers=2 * runner.slots) as pool:
        return list(pool.map(runner.run, requests))


@pytest.mark.slow
def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(runner2):
    tasks = _humaneval()
    assert len(tasks) == 164

    def request(task, broken):
        code = task["prompt"] + task["canonical_solution"]
        if broken:
            code += _BREAK.format(name=task["entry_point"])
        return CodeRequest(response=code, extraction=Extraction.WHOLE, id=task["task_id"],
                           tests=AssertTests(task["test"], task["entry_point"]))

    good = _run_all(runner2, [request(t, False) for t in tasks])
    bad = _run_all(runner2, [request(t, True) for t in tasks])
    not_passed = [(v.id, v.status, v.reason) for v in good if v.status is not CodeStatus.PASSED]
    assert not_passed == []
    broken_passed = [v.id for v in bad if v.status is CodeStatus.PASSED]
    assert broken_passed == []
    assert all(v.judged for v in bad), [(v.id, v.status, v.reason) for v in bad if not v.judged]


@pytest.mark.slow
def test_mbpp_reference_solutions_pass(runner2):
    tasks = _mbpp()
    assert len(tasks) == 974

    def request(task):
        # test_setup_code builds objects the asserts use (2 tasks build trees of the solution's
        # Node class): it runs with the solution, whose globals the tests then see.
        code = task["code"] + "\n" + task["test_setup_code"]
        tests = "\n".join(task["test_list"])
        return CodeRequest(response=code, extraction=Extraction.WHOLE, id=str(task["task_id"]),
                           tests=AssertTests(tests), limits=CodeLimits(cpu_time_s=10.0))

    verdicts = _run_all(runner2, [request(t) for t in tasks])
    failing = {int(v.id): f"{v.status.value}: {v.reason}" for v in verdicts if v.status is not CodeStatus.PASSED}
    assert set(failing) == set(MBPP_REFERENCE_FAILS), failing
