"""Plain types of the code checker: requests, limits and verdicts (no grpc, no processes).

Each type maps 1:1 onto a message of protos/verifier/v1/verifier.proto (CodeItem, CodeTests,
CodeLimits, CodeResult, TestOutcome); enum member names equal the proto's, so the servicer
converts with `Enum[name]` both ways. A limit of 0 means "server default", as on the wire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union

__all__ = [
    "CodeStatus", "Whitespace", "Extraction", "StdioCase", "StdioTests", "AssertTests", "CallCase",
    "CallTests", "CodeTests", "CodeLimits", "CodeRequest", "TestOutcome", "CodeVerdict", "JUDGED",
    "LANGUAGES",
]

LANGUAGES = ("python", "cpp")


class CodeStatus(str, enum.Enum):
    """Names equal those of the proto's CodeResult.Status."""

    PASSED = "PASSED"
    FAILED = "FAILED"                # wrong output or a failing assertion
    RUNTIME_ERROR = "RUNTIME_ERROR"
    TIMEOUT = "TIMEOUT"              # CPU-time limit (or the wall-clock backstop of a program that slept)
    MEMORY_LIMIT = "MEMORY_LIMIT"
    OUTPUT_LIMIT = "OUTPUT_LIMIT"    # stdout+stderr cap, or the file-size limit
    COMPILE_ERROR = "COMPILE_ERROR"
    NO_CODE = "NO_CODE"
    SANDBOX_ERROR = "SANDBOX_ERROR"  # not judged: a fault of the sandbox, or a program starved of CPU
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    UNAVAILABLE = "UNAVAILABLE"      # this runner does not run code (or not this language)


JUDGED = frozenset({
    CodeStatus.PASSED, CodeStatus.FAILED, CodeStatus.RUNTIME_ERROR, CodeStatus.TIMEOUT,
    CodeStatus.MEMORY_LIMIT, CodeStatus.OUTPUT_LIMIT, CodeStatus.COMPILE_ERROR, CodeStatus.NO_CODE,
})


class Whitespace(str, enum.Enum):
    TRAILING = "TRAILING"  # ignore trailing spaces on each line and trailing blank lines (the default)
    TOKENS = "TOKENS"      # compare whitespace-separated tokens
    EXACT = "EXACT"        # byte for byte


class Extraction(str, enum.Enum):
    LAST_BLOCK = "LAST_BLOCK"    # last fenced block of the language (or untagged); the default
    FIRST_BLOCK = "FIRST_BLOCK"
    ALL_BLOCKS = "ALL_BLOCKS"    # all blocks of the language, concatenated
    WHOLE = "WHOLE"              # the response is the code


@dataclass(frozen=True)
class StdioCase:
    input: str
    output: str  # expected stdout


@dataclass(frozen=True)
class StdioTests:
    cases: tuple[StdioCase, ...]
    whitespace: Whitespace = Whitespace.TRAILING


@dataclass(frozen=True)
class AssertTests:
    """Python test code run after the solution; with an entry point, `check(<entry_point>)` is called."""

    code: str
    entry_point: str = ""


@dataclass(frozen=True)
class CallCase:
    args_json: str = ""      # a JSON array; "" means []
    kwargs_json: str = ""    # a JSON object; "" means {}
    expected_json: str = "null"


@dataclass(frozen=True)
class CallTests:
    fn: str
    cases: tuple[CallCase, ...]
    float_rel_tol: float = 0.0  # 0: floats compared exactly


CodeTests = Union[StdioTests, AssertTests, CallTests]


@dataclass(frozen=True)
class CodeLimits:
    cpu_time_s: float = 0.0     # per test case (stdio, call) or per run (assert)
    memory_bytes: int = 0       # cgroup memory limit of the sandbox (and the address-space rlimit)
    output_bytes: int = 0       # stdout+stderr cap per execution
    wall_time_s: float = 0.0    # backstop against sleeping, per execution


@dataclass(frozen=True)
class CodeRequest:
    """One CodeItem: a response (whole model output or bare code) and the tests to run it on."""

    response: str
    tests: CodeTests
    language: str = "python"
    limits: CodeLimits = CodeLimits()
    extraction: Extraction = Extraction.LAST_BLOCK
    stop_at_first_failure: bool = False
    id: str = ""


@dataclass(frozen=True)
class TestOutcome:
    index: int
    status: CodeStatus
    detail: str = ""        # for a failure: expected vs got, or the error
    cpu_time_s: float = 0.0

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class CodeVerdict:
    status: CodeStatus
    passed: int = 0
    total: int = 0
    tests: tuple[TestOutcome, ...] = ()
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    cpu_time_s: float = 0.0
    peak_memory_bytes: int = 0
    reason: str = ""
    elapsed_ms: float = 0.0
    extracted: str = ""     # the code that was run
    id: str = field(default="", compare=False)

    @property
    def judged(self) -> bool:
        return self.status in JUDGED

    @property
    def correct(self) -> bool:
        return self.status is CodeStatus.PASSED

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0
