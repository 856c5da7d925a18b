"""From the facts a sandboxed run reports to a CodeVerdict: the runner's judging half.

The run's init reports only what the kernel told it (exit status, signal, CPU time, peak
memory, output sizes) and the plain values the harness serialised; everything here runs
outside the sandbox, in the server process, so the code under test cannot reach it.
Expected outputs and values never enter the sandbox.

Starved, not slow: a program stopped by its wall clock is TIMEOUT (it slept or blocked) unless,
of the wall time it did not run, its slot's tasks spent at least STARVED_SHARE runnable but
waiting for a core (PSI "some" of the slot's unified cgroup, from the kernel). Then the stop says
nothing about the program: on a machine overloaded by other work, or after the fork-server
demoted a CPU hog to cpu.shares 2, a correct program can reach its wall clock short of its CPU
limit. Such an execution is SANDBOX_ERROR ("not judged: starved of CPU ..."), so that a trainer
drops it instead of scoring a correct program 0. A sleeping or blocked program waits for no core
and keeps its TIMEOUT.
Why 0.4 and not more: PSI sums a group's stall per CPU weighted by the group's non-idle time
there, so a task that waits on two CPUs' run queues in turn reads as little as half of its wait
(a busy program starved on this 2-core machine read 0.56-0.71 of its non-running time). More
cores can read lower; the stop is then TIMEOUT, as without PSI. What the code can do alone:
with three or more busy threads it waits on its own one-core quota (at most as long as it runs),
so a program that spins that way for most of its CPU limit and then sleeps past its wall clock
can read as starved: not judged instead of TIMEOUT, which is never a pass.
Without PSI (no CONFIG_PSI, or psi=0) every wall-clock stop stays TIMEOUT, as the runner's
`notes` say.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, replace
from typing import Any

from . import plain
from .compare import describe_mismatch, output_matches, value_matches
from .harness import EXIT_MEMORY
from .types import CodeLimits, CodeRequest, CodeStatus, CodeVerdict, StdioTests, TestOutcome

__all__ = ["Job", "SandboxFault", "InvalidTests", "assemble", "case_outcome", "with_output", "ended", "starved",
           "STARVED_SHARE"]

STARVED_SHARE = 0.4  # of the non-running wall time spent waiting for a core: a wall-clock stop is not judged


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
    demote_after_s: float = 0.0  # CPU after which the fork-server demotes the run; 0: never


class SandboxFault(Exception):
    """The sandbox failed (not the code): SANDBOX_ERROR, and the slot is restarted."""


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def starved(fact: dict[str, Any]) -> str | None:
    """Why a wall-clock stop is not judged (see the module docstring), or None if it is."""
    waited, elapsed, cpu = fact.get("waited_s"), fact.get("elapsed_s"), float(fact.get("cpu_s", 0.0))
    if waited is None or elapsed is None or waited < STARVED_SHARE * (elapsed - cpu):
        return None
    return _starved_reason(waited, cpu, elapsed)


def _starved_reason(waited: float, cpu: float, elapsed: float, how: str = "") -> str:
    return (f"not judged: starved of CPU ({waited:.2f} s waiting for a core, {cpu:.2f} s of CPU used in "
            f"{elapsed:.2f} s{how})")


def ended(fact: dict[str, Any], language: str, stderr: bytes) -> tuple[CodeStatus, str]:
    """Status and detail of an execution that did not end normally (or exited non-zero)."""
    end = fact.get("end")
    if end == "cpu":
        return CodeStatus.TIMEOUT, f"CPU time over the limit ({fact.get('cpu_s', 0):.2f} s)"
    if end == "wall":
        reason = starved(fact)
        if reason:
            return CodeStatus.SANDBOX_ERROR, reason
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
            status, detail = ended(header, "cpp", b"")
            if header.get("end") == "exit":
                status, detail = CodeStatus.COMPILE_ERROR, "compiler failed"
            elif status is not CodeStatus.SANDBOX_ERROR:  # a starved compiler is not judged either
                status, detail = CodeStatus.COMPILE_ERROR, "compilation over its limits: " + detail
            out, err = (blobs + [b"", b""])[:2]
            return with_output(CodeVerdict(status, total=total, reason=detail, **common), out, err, cap)
        if kind == "exec":
            outcomes.append(case_outcome(job, header, blobs))
            outputs.append(tuple((blobs + [b"", b""])[:2]))
        if kind == "assert":
            outcomes, total = assert_outcomes(job, header, blobs)
            outputs.append(tuple((blobs + [b"", b""])[:2]))
    done = any(h.get("t") == "done" for h, _ in records)
    if not done:
        if end.get("backstop"):
            reason = starved({**end, "cpu_s": common["cpu_time_s"]})
            outcomes.append(TestOutcome(len(outcomes), CodeStatus.SANDBOX_ERROR, reason) if reason else
                            TestOutcome(len(outcomes), CodeStatus.TIMEOUT, "wall-clock backstop of the run"))
        elif end.get("shed"):
            # the fork-server gave up on a demoted run that kept waiting for a core (forkserver.SHED_WAIT_S)
            reason = _starved_reason(float(end.get("waited_s", 0.0)), float(end.get("cpu_s", 0.0)),
                                     float(end.get("elapsed_s", 0.0)), "; given up on at the lowest CPU weight")
            outcomes.append(TestOutcome(len(outcomes), CodeStatus.SANDBOX_ERROR, reason))
        elif end.get("forks_refused"):
            # the fork-server gave up on a run that kept forking at its process limit (forkserver.py)
            outcomes.append(TestOutcome(len(outcomes), CodeStatus.RUNTIME_ERROR,
                                        f"stopped: kept forking at its process limit ({end['forks_refused']} forks "
                                        f"refused, {float(end.get('cpu_s', 0.0)):.2f} s of CPU)"))
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
