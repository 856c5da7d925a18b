"""From the facts a sandboxed run reports to a CodeVerdict: the runner's judging half.

The run's init reports only what the kernel told it (exit status, signal, CPU time, peak
memory, output sizes) and the plain values the harness serialised; everything here runs
outside the sandbox, in the server process, so the code under test cannot reach it.
Expected outputs and values never enter the sandbox.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, replace
from typing import Any

from . import plain
from .compare import describe_mismatch, output_matches, value_matches
from .harness import EXIT_MEMORY
from .types import CodeLimits, CodeRequest, CodeStatus, CodeVerdict, StdioTests, TestOutcome

__all__ = ["Job", "SandboxFault", "InvalidTests", "assemble", "case_outcome", "with_output", "ended"]


@dataclass
class Job:
    """A validated request: what the sandbox gets (public), what only the test process gets
    (secret), and what stays here for the comparison."""

    request: CodeRequest
    code: str
    limits: CodeLimits
    public: dict[str, Any]
    secret: str | None
    total: int
    expected: list[Any] = field(default_factory=list)
    backstop_s: float = 0.0
    cgroup_memory: int = 0


class SandboxFault(Exception):
    """The sandbox failed (not the code): SANDBOX_ERROR, and the slot is restarted."""


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def ended(fact: dict[str, Any], language: str, stderr: bytes) -> tuple[CodeStatus, str]:
    """Status and detail of an execution that did not end normally (or exited non-zero)."""
    end = fact.get("end")
    if end == "cpu":
        return CodeStatus.TIMEOUT, f"CPU time over the limit ({fact.get('cpu_s', 0):.2f} s)"
    if end == "wall":
        return CodeStatus.TIMEOUT, "wall-clock backstop reached (sleeping or blocked)"
    if end == "output":
        return CodeStatus.OUTPUT_LIMIT, "output over the limit"
    if end == "oom":
        return CodeStatus.MEMORY_LIMIT, "killed by the memory limit"
    if end in ("garbage", "closed"):
        return CodeStatus.RUNTIME_ERROR, "the solution process stopped answering"
    code = int(fact.get("code", 1))
    if language == "python" and code == EXIT_MEMORY:
        return CodeStatus.MEMORY_LIMIT, "MemoryError"
    if code == -signal.SIGXCPU:
        return CodeStatus.TIMEOUT, "CPU time limit (SIGXCPU)"
    if code == -signal.SIGXFSZ:
        return CodeStatus.OUTPUT_LIMIT, "file size limit (SIGXFSZ)"
    if language == "cpp" and code == -signal.SIGABRT and b"bad_alloc" in stderr:
        return CodeStatus.MEMORY_LIMIT, "std::bad_alloc"
    tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    how = f"killed by {signal_name(code)}" if code < 0 else f"exit code {code}"
    return CodeStatus.RUNTIME_ERROR, f"{how}: {tail[0][:300]}" if tail[0] else how


def case_outcome(job: Job, header: dict[str, Any], blobs: list[bytes]) -> TestOutcome:
    index = int(header["i"])
    cpu = float(header.get("cpu_s", 0.0))
    stdout, stderr = (blobs + [b"", b""])[:2]
    tests = job.request.tests
    if header.get("end") == "reply":
        reply = header["reply"]
        if "ok" not in reply:
            name, message = str(reply.get("exc", "Exception")), str(reply.get("msg", ""))
            status = CodeStatus.MEMORY_LIMIT if name == "MemoryError" else CodeStatus.RUNTIME_ERROR
            return TestOutcome(index, status, f"{name}: {message}"[:1000], cpu)
        try:
            got = plain.decode(reply["ok"])
        except (plain.NotPlain, ValueError, RecursionError, TypeError, KeyError) as err:
            return TestOutcome(index, CodeStatus.FAILED, f"unreadable return value ({err})", cpu)
        if value_matches(got, job.expected[index], tests.float_rel_tol):
            return TestOutcome(index, CodeStatus.PASSED, "", cpu)
        return TestOutcome(index, CodeStatus.FAILED, describe_mismatch(got, job.expected[index]), cpu)
    if header.get("end") == "exit" and header.get("code") == 0 and isinstance(tests, StdioTests):
        if output_matches(stdout, job.expected[index], tests.whitespace):
            return TestOutcome(index, CodeStatus.PASSED, "", cpu)
        got = stdout.decode("utf-8", "replace")
        return TestOutcome(index, CodeStatus.FAILED, describe_mismatch(got, job.expected[index]), cpu)
    load = header.get("load") or {}
    if load.get("load_error"):
        status = CodeStatus.MEMORY_LIMIT if load.get("exc") == "MemoryError" else CodeStatus.RUNTIME_ERROR
        return TestOutcome(index, status, "the solution failed to load: " + str(load["load_error"])[-1000:], cpu)
    status, detail = ended(header, job.request.language, stderr)
    return TestOutcome(index, status, detail, cpu)


def assemble(job: Job, records: list[tuple[dict, list[bytes]]], end: dict[str, Any]) -> CodeVerdict:
    cap = job.limits.output_bytes
    common = {"extracted": job.code, "peak_memory_bytes": int(end.get("peak_memory", 0)),
              "cpu_time_s": sum(float(h.get("cpu_s", 0.0)) for h, _ in records)}
    faults = [h for h, _ in records if h.get("t") == "fault"]
    if faults:
        raise SandboxFault(faults[0].get("message", "fault"))
    outputs: list[tuple[bytes, bytes]] = []
    outcomes: list[TestOutcome] = []
    total = job.total
    for header, blobs in records:
        kind = header.get("t")
        if kind == "compile" and not header.get("ok"):
            detail = "compiler failed" if header.get("end") == "exit" else \
                "compilation over its limits: " + ended(header, "cpp", b"")[1]
            out, err = (blobs + [b"", b""])[:2]
            return with_output(CodeVerdict(CodeStatus.COMPILE_ERROR, total=total, reason=detail, **common),
                                out, err, cap)
        if kind == "exec":
            outcomes.append(case_outcome(job, header, blobs))
            outputs.append(tuple((blobs + [b"", b""])[:2]))
        if kind == "assert":
            outcomes, total = assert_outcomes(job, header, blobs)
            outputs.append(tuple((blobs + [b"", b""])[:2]))
    done = any(h.get("t") == "done" for h, _ in records)
    if not done:
        if end.get("backstop"):
            outcomes.append(TestOutcome(len(outcomes), CodeStatus.TIMEOUT, "wall-clock backstop of the run"))
        elif end.get("oom_kills") and end.get("status") != 0:
            # the slot's memory cgroup hit the limit and the OOM killer took the run's init too (the
            # solution, at oom_score_adj 1000, goes first; under memory pressure while it is still
            # exiting, the init can follow): the program's memory did it, not a fault of ours
            outcomes.append(TestOutcome(len(outcomes), CodeStatus.MEMORY_LIMIT,
                                        "over the memory limit (the OOM killer ended the run)"))
        else:
            raise SandboxFault("the run ended without a result")
    passed = sum(o.status is CodeStatus.PASSED for o in outcomes)
    failing = next((o for o in outcomes if o.status is not CodeStatus.PASSED), None)
    if failing is None and passed < total:
        failing = TestOutcome(passed, CodeStatus.FAILED, "not run")
    status = CodeStatus.PASSED if failing is None else failing.status
    shown = outputs[failing.index] if failing is not None and failing.index < len(outputs) and \
        job.public["style"] != "assert" else (outputs[-1] if outputs else (b"", b""))
    verdict = CodeVerdict(status, passed=passed, total=total, tests=tuple(outcomes),
                          reason=failing.detail if failing else "", **common)
    return with_output(verdict, shown[0], shown[1], cap)


def assert_outcomes(job: Job, header: dict[str, Any], blobs: list[bytes]) -> tuple[list[TestOutcome], int]:
    report = header.get("tests")
    if report and report.get("error"):
        raise InvalidTests(report["error"])
    outcomes = [TestOutcome(int(t["i"]), CodeStatus[t["status"]], str(t.get("detail", ""))) for t in
                (report or {}).get("tests", [])]
    total = int((report or {}).get("total", max(len(outcomes), 1)))
    if report is None or report.get("gone"):
        status, detail = ended(header, "python", (blobs + [b"", b""])[1])
        if header.get("end") == "exit" and status is CodeStatus.RUNTIME_ERROR:
            detail = "the solution process ended before the tests finished (" + detail + ")"
        outcomes.append(TestOutcome(len(outcomes), status, detail))
    return outcomes, total


class InvalidTests(ValueError):
    pass


def with_output(verdict: CodeVerdict, stdout: bytes, stderr: bytes, cap: int) -> CodeVerdict:
    return replace(verdict, stdout=stdout[:cap].decode("utf-8", "replace"),
                   stderr=stderr[:max(cap - min(len(stdout), cap), 0)].decode("utf-8", "replace"),
                   stdout_truncated=len(stdout) > cap, stderr_truncated=len(stdout) + len(stderr) > cap)
