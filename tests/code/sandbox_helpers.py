"""Helpers of the code-checker tests (imported by name: tests/code is not a package, so that it
cannot shadow the stdlib's `code` module).

The sandbox needs root, cgroups and seccomp; where the machine lacks them these tests are
skipped with the reason; under CI (which is root on a machine like the dev one) they fail instead.
"""

from __future__ import annotations

import os

from verifier_service.code import (AssertTests, CallCase, CallTests, CodeLimits, CodeRequest, CodeRunner,
                                   CodeStatus, CodeVerdict, Extraction, RunnerConfig,
                                   StdioCase, StdioTests)

from ci_rules import require_root

SECRET = "verirl-test-secret-7f3a9c"
os.environ["VERIRL_SANDBOX_TEST_SECRET"] = SECRET  # set before any runner starts: it must not leak


def start_runner(**overrides) -> CodeRunner:
    """A started runner in full mode. Without root: a skip, or a failure under CI (ci_rules.py); as
    root a sandbox that does not start is a failure, not a skip."""
    require_root("the sandbox")
    return CodeRunner(RunnerConfig(**overrides)).start()


def run_py(runner: CodeRunner, code: str, stdin: str = "", expected: str = "", **limits) -> CodeVerdict:
    return runner.run(CodeRequest(response=code, extraction=Extraction.WHOLE,
                                  tests=StdioTests((StdioCase(stdin, expected),)),
                                  limits=CodeLimits(**limits)))


def run_assert(runner: CodeRunner, code: str, tests: str, entry_point: str = "", **limits) -> CodeVerdict:
    return runner.run(CodeRequest(response=code, extraction=Extraction.WHOLE,
                                  tests=AssertTests(tests, entry_point), limits=CodeLimits(**limits)))


def run_call(runner: CodeRunner, code: str, fn: str, cases: list[tuple[str, str]], **limits) -> CodeVerdict:
    return runner.run(CodeRequest(response=code, extraction=Extraction.WHOLE,
                                  tests=CallTests(fn, tuple(CallCase(a, "", e) for a, e in cases)),
                                  limits=CodeLimits(**limits)))


_PROBE = """
import os
others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]
print(len(others), sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')), sorted(os.environ))
print(int(input()) * 2)
"""


def host_processes_of_sandbox_uids(runner: CodeRunner) -> list[int]:
    uids = {runner.config.code_uid_base + i for i in range(runner.slots)} | \
           {runner.config.test_uid_base + i for i in range(runner.slots)}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid in uids:
            found.append(int(entry))
    return found


def assert_next_run_clean(runner: CodeRunner) -> None:
    """The runner still answers, the next run in the slot sees no process, file or variable left
    behind, and no process of the sandbox uids survives on the host."""
    verdict = run_py(runner, _PROBE, "21\n",
                     "0 [] [] ['HOME', 'LANG', 'PATH', 'TMPDIR']\n42\n")
    assert verdict.status is CodeStatus.PASSED, verdict
    assert host_processes_of_sandbox_uids(runner) == []
