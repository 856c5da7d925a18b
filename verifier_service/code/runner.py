"""The code checker's public API: `CodeRunner(config).start()`, then `.run(request) -> CodeVerdict`
from any number of threads, then `.close()`.

The runner lives in the server process and never forks: it starts one fork-server per slot with
subprocess (fork+exec), talks to it over a Unix socket, and hands each run its data through
memfds and pipes that the fork-server only passes on. It validates and extracts (INVALID_ARGUMENT,
NO_CODE, UNAVAILABLE are decided here), waits for a free slot (at most `slots` runs at once, at
most one core each; time is judged on CPU time, so contention cannot fail honest programs), and turns the facts reported by the run's
init into a verdict. A run past `demote_after_ms` of CPU is demoted by its fork-server to the
lowest CPU weight, and a program starved of CPU at its wall clock is not judged (verdicts.py). All comparisons against expected values happen here, outside the sandbox:
expected outputs and values never enter it (assert-style test code does, into the test process
only).

Threat model (docs/sandbox.md has it in full): the code is hostile. Each layer in isolation.py
says what it stops. Not stopped: CPU side channels and timing between slots, kernel exploits
through the allowed syscalls, reading the (public) stdlib and /usr, denial of service on the
runner's own queue (bounded by the server's back-pressure), an assert-style test code that is
itself hostile (it is trusted input, run in the sandbox as a separate uid).
"""

from __future__ import annotations

import array
import itertools
import json
import math
import os
import platform
import queue
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from tasks.code_blocks import extract_code

from . import plain, wire
from .isolation import IsolationError, SlotCgroup, cgroup_parents, seccomp_bpf, slot_paths
from .types import LANGUAGES, AssertTests, CallTests, CodeLimits, CodeRequest, CodeStatus, CodeVerdict, StdioTests
from .verdicts import InvalidTests, Job, SandboxFault, assemble, case_outcome

__all__ = ["CodeRunner", "RunnerConfig", "SandboxUnavailable"]

_MAX_RECORD = 64 << 20
_RUNNER_IDS = itertools.count()
_GROUP = re.compile(r"(verirl-(\d+)(?:-\d+)?)(?:-slot(\d+))?")  # group (owner pid), flat slot index
_HARNESS_OVERHEAD = 96 << 20  # the init, the test process and the interpreter's copied pages
# More slots than cores: a demoted CPU hog (see RunnerConfig.demote_after_ms) holds its slot until
# its CPU limit, or until it has waited forkserver.SHED_WAIT_S for a core, while costing almost no
# CPU; with one slot per core two loops stopped all code for 10 s at a time before the give-up
# existed (docs/benchmarks.md, "CPU-hog demotion"). Programs beyond the core count share cores at
# full weight: judged on CPU time, and not judged if starved.
SLOTS_PER_CORE = 4
_CGROUP_OWN_TASKS = 16  # the run's init and its helpers, in the slot cgroup beside the program


class SandboxUnavailable(RuntimeError):
    """The machine cannot provide the requested isolation (the message says what is missing)."""


@dataclass(frozen=True)
class RunnerConfig:
    slots: int = 0                     # 0: SLOTS_PER_CORE per CPU core
    mode: str = "full"                 # "full": refuse to start without every layer; "weak": run with what exists
    python: str = sys.executable       # interpreter of the fork-servers (its stdlib is bound into the sandbox)
    code_uid_base: int = 61000         # solution processes of slot i run as code_uid_base + i
    test_uid_base: int = 62000         # test processes (assert style) of slot i run as test_uid_base + i
    default_limits: CodeLimits = CodeLimits(cpu_time_s=2.0, memory_bytes=256 << 20, output_bytes=1 << 20,
                                            wall_time_s=10.0)
    max_limits: CodeLimits = CodeLimits(cpu_time_s=60.0, memory_bytes=4 << 30, output_bytes=64 << 20,
                                        wall_time_s=300.0)
    max_tests: int = 10_000
    tmp_bytes: int = 64 << 20          # the run's /tmp (tmpfs; also the file-size rlimit)
    shm_bytes: int = 16 << 20          # the run's /dev/shm
    nofile: int = 256
    nproc: int = 64                    # processes of a run (its cgroup allows _CGROUP_OWN_TASKS more for ours)
    cpp_argv: tuple[str, ...] = ("/usr/bin/g++", "-O2", "-std=gnu++17", "-pipe")
    compile_cpu_s: float = 20.0
    compile_wall_s: float = 60.0
    compile_memory_bytes: int = 1 << 30
    start_timeout_s: float = 30.0
    demote_after_ms: int = 200         # a run past this much CPU gets cpu.shares 2 (forkserver.py); 0: never
    compile_demote_after_ms: int = 5000  # added to a C++ run's threshold: g++ -O2 takes 0.5-2 s of CPU here

    def __post_init__(self) -> None:
        if self.mode not in ("full", "weak"):
            raise ValueError(f"mode must be 'full' or 'weak', not {self.mode!r}")
        for name in ("demote_after_ms", "compile_demote_after_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")


@dataclass
class _Slot:
    index: int
    cgroup: SlotCgroup | None
    process: subprocess.Popen | None = None
    sock: socket.socket | None = None


class CodeRunner:
    def __init__(self, config: RunnerConfig = RunnerConfig()) -> None:
        self.config = config
        self._slots: list[_Slot] = []
        self._free: queue.Queue[_Slot] = queue.Queue()
        self._missing: list[str] = []
        self._notes: list[str] = []
        self._languages: tuple[str, ...] = ()
        self._root_dir = ""
        self._prefix = ""
        self._seccomp = ""
        self._started = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    @property
    def mode(self) -> str:
        """"full", "weak" (see missing_protections) or "off" (not started)."""
        if not self._started:
            return "off"
        return "weak" if self._missing else "full"

    @property
    def missing_protections(self) -> tuple[str, ...]:
        return tuple(self._missing)

    @property
    def notes(self) -> tuple[str, ...]:
        """What works differently on this machine without being a missing protection (logged)."""
        return tuple(self._notes)

    @property
    def slots(self) -> int:
        return len(self._slots)

    @property
    def languages(self) -> tuple[str, ...]:
        return self._languages

    def cpu_seconds(self) -> float:
        """CPU time used so far by the runs (slot cgroups) and the live fork-servers; for metrics
        and the bench. Without cgroups only the fork-servers are counted."""
        total = 0.0
        for slot in list(self._slots):
            if slot.cgroup is not None:
                with open(f"{slot.cgroup.paths['unified']}/cpu.stat") as f:
                    total += int(f.readline().split()[1]) / 1e6  # usage_usec
            if slot.process is not None:
                with open(f"/proc/{slot.process.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def start(self) -> "CodeRunner":
        """Detect what the machine provides, start the fork-servers. Raises SandboxUnavailable."""
        if os.geteuid() != 0:
            raise SandboxUnavailable("the sandbox needs root (namespaces, cgroups, uid switch); "
                                     "no weaker mode exists without it")
        if platform.machine() != "x86_64":
            raise SandboxUnavailable(f"the seccomp filter and syscall numbers are for x86_64, not {platform.machine()}")
        count = self.config.slots or SLOTS_PER_CORE * (os.cpu_count() or 1)
        missing: list[str] = []
        parents: dict[str, str] | None
        try:
            parents = cgroup_parents()
            _remove_stale_groups(parents)
        except (IsolationError, OSError) as err:
            parents = None
            missing.append(f"cgroups ({err}): no memory, pids or CPU-quota limit on the process tree, no exact "
                           "CPU accounting (RLIMIT_CPU per process, in whole seconds), no whole-tree kill")
        self._prefix = subprocess.run([self.config.python, "-I", "-c", "import sys; print(sys.base_prefix)"],
                                      capture_output=True, text=True, check=True).stdout.strip()
        try:
            self._seccomp = seccomp_bpf().hex()  # built here: the fork-servers stay free of libseccomp
        except (ImportError, OSError, RuntimeError) as err:
            self._seccomp = ""
            missing.append(f"seccomp syscall filter ({type(err).__name__}: {err})")
        _remove_stale_root_dirs()
        self._root_dir = tempfile.mkdtemp(prefix=f"verirl-sandbox-root-{os.getpid()}-")
        self._languages = ("python", "cpp") if os.access(self.config.cpp_argv[0], os.X_OK) else ("python",)
        group = f"verirl-{os.getpid()}-{next(_RUNNER_IDS)}"
        try:
            for index in range(count):
                cgroup = SlotCgroup.create(parents, group, index, self.config.nproc + _CGROUP_OWN_TASKS) \
                    if parents else None
                slot = _Slot(index, cgroup)
                self._slots.append(slot)
                self._start_server(slot)
            if missing and self.config.mode == "full":
                raise SandboxUnavailable("missing protections: " + "; ".join(missing))
        except BaseException:
            self.close()
            raise
        self._missing = missing
        self._notes = []
        if parents and not self._slots[0].cgroup.has_pressure():
            self._notes.append("no CPU pressure (PSI) in the slot cgroups: a program starved of CPU that reaches its "
                               "wall-clock limit is judged TIMEOUT, as one that slept (verdicts.py)")
        for slot in self._slots:
            self._free.put(slot)
        self._started = True
        return self

    def _start_server(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        config = {
            "sock_fd": theirs.fileno(), "root_dir": self._root_dir, "extra_ro": [self._prefix],
            "cgroup_paths": slot.cgroup.paths if slot.cgroup else None,
            "code_uid": self.config.code_uid_base + slot.index, "test_uid": self.config.test_uid_base + slot.index,
            "users": {"root": 0, "sandbox": self.config.code_uid_base + slot.index,
                      "tests": self.config.test_uid_base + slot.index},
            "tmp_bytes": self.config.tmp_bytes, "shm_bytes": self.config.shm_bytes,
            "nofile": self.config.nofile, "seccomp_bpf": self._seccomp,
            # with a cgroup, its pids.max (nproc + _CGROUP_OWN_TASKS) is the limit a program meets, and its
            # refusals are counted (a run that keeps forking there is stopped, forkserver.py); the rlimit,
            # per uid and uncounted, stays above it as a backstop
            "nproc": self.config.nproc + (2 * _CGROUP_OWN_TASKS if slot.cgroup else 0),
        }
        boot = (f"import sys; sys.path.insert(0, {package_root!r}); "
                "from verifier_service.code.forkserver import main; main()")
        slot.process = subprocess.Popen(
            [self.config.python, "-I", "-S", "-c", boot, json.dumps(config)], pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env={"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
            cwd="/")
        theirs.close()
        slot.sock = ours
        if not select.select([ours], [], [], self.config.start_timeout_s)[0]:
            raise SandboxUnavailable(f"fork-server {slot.index} did not start in {self.config.start_timeout_s} s")
        message = ours.recv(1 << 16)
        hello = json.loads(message) if message else {"op": "error", "message": "it exited"}
        if hello["op"] != "ready":
            raise SandboxUnavailable(f"fork-server {slot.index} failed: {hello['message']}")

    def _stop_server(self, slot: _Slot) -> None:
        if slot.sock is not None:
            slot.sock.close()
            slot.sock = None
        if slot.process is not None:
            try:
                slot.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait()
            slot.process = None

    def _restart(self, slot: _Slot) -> None:
        if slot.process is not None and slot.process.poll() is None:
            slot.process.kill()
        self._stop_server(slot)
        with self._lock:
            if not self._started:  # close() ran meanwhile: a new fork-server would be orphaned
                return
            self._start_server(slot)

    def close(self) -> None:
        """Stop the fork-servers, kill what is left, remove the cgroups. Idempotent."""
        with self._lock:
            self._started = False
            for slot in self._slots:
                self._stop_server(slot)
                if slot.cgroup is not None:
                    slot.cgroup.remove()
            self._slots = []
            self._free = queue.Queue()
            if self._root_dir:
                os.rmdir(self._root_dir)
                self._root_dir = ""

    def __enter__(self) -> "CodeRunner":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ running

    def run(self, request: CodeRequest) -> CodeVerdict:
        """Run one request; thread-safe. Waits for a free slot, then at most the run's backstop."""
        start = time.monotonic()
        try:
            job = self._prepare(request)
            if isinstance(job, CodeVerdict):
                verdict = job
            elif not self._started:
                verdict = CodeVerdict(CodeStatus.UNAVAILABLE, reason="the code runner is not started")
            else:
                slot = self._free.get()
                try:
                    verdict = self._run_in(slot, job)
                finally:
                    self._free.put(slot)
        except Exception as err:  # the boundary: a bug of ours becomes INTERNAL_ERROR, never an exception
            verdict = CodeVerdict(CodeStatus.INTERNAL_ERROR, reason=f"{type(err).__name__}: {err}")
        return replace(verdict, id=request.id, elapsed_ms=(time.monotonic() - start) * 1000)

    def _run_in(self, slot: _Slot, job: Job) -> CodeVerdict:
        """Run in a slot; a fork-server that died or faulted is restarted (before the run, or
        after it with SANDBOX_ERROR for that run)."""
        if slot.process is None or slot.process.poll() is not None:
            try:
                self._restart(slot)
            except (SandboxUnavailable, OSError) as err:
                return CodeVerdict(CodeStatus.SANDBOX_ERROR, reason=f"slot {slot.index} cannot restart: {err}",
                                   extracted=job.code)
        try:
            return self._execute(slot, job)
        except InvalidTests as err:
            return CodeVerdict(CodeStatus.INVALID_ARGUMENT, reason=str(err), extracted=job.code)
        except (SandboxFault, OSError, wire.FrameError) as err:
            verdict = CodeVerdict(CodeStatus.SANDBOX_ERROR, reason=f"{type(err).__name__}: {err}",
                                  extracted=job.code)
        try:
            self._restart(slot)
        except (SandboxUnavailable, OSError):
            self._stop_server(slot)  # retried before the slot's next run
        return verdict

    def _limits(self, given: CodeLimits) -> CodeLimits | str:
        d, m = self.config.default_limits, self.config.max_limits
        resolved = {}
        for name in ("cpu_time_s", "memory_bytes", "output_bytes", "wall_time_s"):
            value = getattr(given, name)
            if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
                return f"limits.{name} must be a finite number >= 0"
            if value > getattr(m, name):
                return f"limits.{name} is over the server's maximum of {getattr(m, name)}"
            resolved[name] = value or getattr(d, name)
        resolved["wall_time_s"] = max(resolved["wall_time_s"], 2 * resolved["cpu_time_s"] + 1)
        return CodeLimits(**resolved)

    def _prepare(self, request: CodeRequest) -> Job | CodeVerdict:
        def invalid(reason: str) -> CodeVerdict:
            return CodeVerdict(CodeStatus.INVALID_ARGUMENT, reason=reason)

        if request.language not in LANGUAGES:
            return CodeVerdict(CodeStatus.UNAVAILABLE, reason=f"language {request.language!r} is not supported")
        if request.language not in self._languages and self._started:
            return CodeVerdict(CodeStatus.UNAVAILABLE, reason=f"no compiler for {request.language} on this server")
        limits = self._limits(request.limits)
        if isinstance(limits, str):
            return invalid(limits)
        tests = request.tests
        if request.language != "python" and not isinstance(tests, StdioTests):
            return invalid(f"tests: only stdio tests can run {request.language} code")
        code = extract_code(request.response, request.language, request.extraction.value)
        if code is None:
            return CodeVerdict(CodeStatus.NO_CODE, reason=f"no {request.language} code block in the response")
        public: dict[str, Any] = {
            "language": request.language, "code": code, "stop_first": request.stop_at_first_failure,
            "cpu_s": limits.cpu_time_s, "wall_s": limits.wall_time_s, "output_bytes": limits.output_bytes,
            "memory_bytes": limits.memory_bytes,
        }
        secret = None
        expected: list[Any] = []
        if isinstance(tests, StdioTests):
            if not tests.cases or len(tests.cases) > self.config.max_tests:
                return invalid(f"tests.stdio.cases: between 1 and {self.config.max_tests} cases")
            public.update(style="stdio", inputs=[case.input for case in tests.cases])
            expected = [case.output for case in tests.cases]
            executions, total = len(tests.cases), len(tests.cases)
        elif isinstance(tests, CallTests):
            if not tests.fn.isidentifier():
                return invalid("tests.call.fn must be a Python identifier")
            if not tests.cases or len(tests.cases) > self.config.max_tests:
                return invalid(f"tests.call.cases: between 1 and {self.config.max_tests} cases")
            calls = []
            for i, case in enumerate(tests.cases):
                try:
                    args = json.loads(case.args_json or "[]")
                    kwargs = json.loads(case.kwargs_json or "{}")
                    expected.append(json.loads(case.expected_json or "null"))
                except ValueError as err:
                    return invalid(f"tests.call.cases[{i}]: invalid JSON ({err})")
                if type(args) is not list or type(kwargs) is not dict:
                    return invalid(f"tests.call.cases[{i}]: args must be a JSON array and kwargs an object")
                calls.append({"args": plain.encode(args), "kwargs": plain.encode(kwargs)})
            public.update(style="call", fn=tests.fn, calls=calls)
            executions, total = len(tests.cases), len(tests.cases)
        elif isinstance(tests, AssertTests):
            if tests.entry_point and not tests.entry_point.isidentifier():
                return invalid("tests.assert_code.entry_point must be a Python identifier")
            if not tests.code.strip() and not tests.entry_point:
                return invalid("tests.assert_code.code is empty")
            public.update(style="assert", entry_point=tests.entry_point)
            secret = tests.code
            executions, total = 1, 0
        else:
            return invalid("tests: no test kind given")
        backstop = executions * (limits.wall_time_s + 0.5) + 5.0
        memory = limits.memory_bytes
        demote_after_ms = self.config.demote_after_ms
        if request.language == "cpp":
            demote_after_ms += self.config.compile_demote_after_ms if demote_after_ms else 0
            public["compile"] = {"argv": list(self.config.cpp_argv), "cpu_s": self.config.compile_cpu_s,
                                 "wall_s": self.config.compile_wall_s,
                                 "memory_bytes": self.config.compile_memory_bytes}
            backstop += self.config.compile_wall_s
            memory = max(memory, self.config.compile_memory_bytes)
        # The run's tmpfs pages are charged to the cgroup too: room for them, so that files left by
        # the code can never starve the init into an OOM kill (that would read as our fault).
        cgroup_memory = memory + _HARNESS_OVERHEAD + self.config.tmp_bytes + self.config.shm_bytes
        return Job(request, code, limits, public, secret, total, expected, backstop, cgroup_memory,
                   demote_after_ms / 1000)

    def _execute(self, slot: _Slot, job: Job) -> CodeVerdict:
        fds: dict[str, int] = {"job": _memfd("job", json.dumps(job.public).encode())}
        if job.secret is not None:
            fds["secret"] = _memfd("tests", job.secret.encode())
        result_r, fds["result"] = os.pipe()
        control_w = -1
        if job.request.stop_at_first_failure and job.public["style"] != "assert":
            fds["control"], control_w = os.pipe()
        try:
            slot.sock.sendmsg([json.dumps({"fds": list(fds), "backstop_s": job.backstop_s,
                                           "cgroup_memory": job.cgroup_memory,
                                           "demote_after_s": job.demote_after_s}).encode()],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _fd_array(fds.values()))])
        finally:
            for fd in fds.values():
                os.close(fd)
        to_close = [result_r] + ([control_w] if control_w >= 0 else [])
        try:
            records, end = self._collect(slot, job, result_r, control_w)
        finally:
            for fd in to_close:
                os.close(fd)
        return assemble(job, records, end)

    def _collect(self, slot: _Slot, job: Job, result_r: int,
                 control_w: int) -> tuple[list[tuple[dict, list[bytes]]], dict[str, Any]]:
        deadline = time.monotonic() + job.backstop_s + 10.0
        reader = wire.FrameReader(_MAX_RECORD)
        records: list[tuple[dict, list[bytes]]] = []
        end: dict[str, Any] | None = None
        while not (reader.closed and end is not None):
            left = deadline - time.monotonic()
            if left <= 0:
                raise SandboxFault("the fork-server did not finish the run in time")
            watched = ([] if reader.closed else [result_r]) + ([] if end is not None else [slot.sock])
            for fd in select.select(watched, [], [], left)[0]:
                if fd is slot.sock:
                    message = slot.sock.recv(1 << 16)
                    if not message:
                        raise SandboxFault("the fork-server exited")
                    end = json.loads(message)
                    continue
                for header, blobs in reader.feed(result_r):
                    records.append((header, blobs))
                    if control_w >= 0 and header.get("t") == "exec":
                        ok = case_outcome(job, header, blobs).status is CodeStatus.PASSED
                        try:
                            os.write(control_w, b"G" if ok else b"S")
                        except BrokenPipeError:
                            pass
        if end.get("error"):
            raise SandboxFault(end["error"])
        return records, end


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def _fd_array(fds: Any) -> bytes:
    return array.array("i", list(fds)).tobytes()


def _remove_stale_groups(parents: dict[str, str]) -> None:
    """Cgroups left by a runner process that no longer exists (a crash): kill and remove them.
    Slots are found in any hierarchy, nested (<group>/slot<i>) or flat (<group>-slot<i>, v1 cpu),
    and removed from all (slot_paths), the unified group first (cgroup.kill); nested slots in v1
    cpu, the layout before the flat one, go too."""
    stale: set[tuple[str, int]] = set()
    nested: list[str] = []
    for parent in parents.values():
        for entry in os.listdir(parent):
            owner = _GROUP.fullmatch(entry)
            if owner is None or int(owner[2]) == os.getpid() or os.path.exists(f"/proc/{owner[2]}"):
                continue
            if owner[3] is not None:
                stale.add((owner[1], int(owner[3])))
                continue
            for slot in os.listdir(f"{parent}/{entry}"):
                if re.fullmatch(r"slot\d+", slot):
                    stale.add((entry, int(slot[4:])))
                    nested.append(f"{parent}/{entry}/{slot}")
    for group, index in sorted(stale):
        SlotCgroup(slot_paths(parents, group, index)).remove()
    for path in nested:  # removed above unless in the old layout; then its group goes with it
        SlotCgroup({"old": path}).remove()


def _remove_stale_root_dirs() -> None:
    """Empty mount points left in the temp dir by a runner process that no longer exists."""
    base = tempfile.gettempdir()
    for entry in os.listdir(base):
        owner = re.fullmatch(r"verirl-sandbox-root-(\d+)-\w+", entry)
        if owner and not os.path.exists(f"/proc/{owner[1]}"):
            try:
                os.rmdir(os.path.join(base, entry))
            except OSError:
                pass  # not empty or not ours to remove: leave it


# ---------------------------------------------------------------- from facts to a verdict
