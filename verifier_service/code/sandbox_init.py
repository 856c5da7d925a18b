"""The run's init: pid 1 of a fresh pid namespace, root inside the run's namespaces, running only
our code. It mounts the run's /tmp, /dev/shm and /proc, starts each solution process with the
isolation layers applied, watches it, and reports facts to the runner.

Why an init of our own: it alone decides how each execution ended (exit status, killed for CPU,
wall clock, output size, OOM) from what the kernel tells it, so nothing the solution prints or
writes can change those facts. For assert-style tests it becomes the test process once the
solution process runs (see run_assert). Solution processes run as the slot's code uid; the init is root
and not dumpable, so they can neither signal it nor read it. Between executions it kills every
other process of the namespace (kill(-1) from pid 1), so a setsid child or a double-forked daemon
does not outlive its execution; when the init exits the kernel kills the namespace, and the
fork-server's cgroup.kill backs that up.

CPU time is read from the slot cgroup (the whole tree, threads and children included) and polled
only as often as the remaining budget requires; RLIMIT_CPU is a whole-second backstop. An
execution stopped by its wall clock also reports how long its cgroup waited for a core (PSI), so
that the runner can tell a program that slept from one that was starved (verdicts.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import time
from typing import Any, Callable, NamedTuple

from . import harness, wire
from .isolation import (CLONE_NEWCGROUP, FULL_SHARES, CgroupFds, SeccompProgram, drop_privileges,
                        mount_run_filesystems, prctl_dumpable, set_oom_score_adj, set_rlimits, unshare)

__all__ = ["InitSettings", "RunFds", "init_main"]

_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
_MAX_FD = 4096
_CPP_SOURCE, _CPP_BINARY = "/tmp/.verirl/main.cpp", "/tmp/.verirl/main"


class InitSettings(NamedTuple):
    """Fixed per slot; from the fork-server's configuration, never from a request. (NamedTuple,
    not dataclass: the fork-server stays small without dataclasses' imports.)"""

    code_uid: int
    test_uid: int
    tmp_bytes: int
    shm_bytes: int
    nofile: int
    nproc: int
    base_vm: int            # address space of the preloaded interpreter (added to the memory limit)
    seccomp: SeccompProgram | None
    cgroup: CgroupFds | None


class RunFds(NamedTuple):
    job: int        # memfd: the public part of the job (code, inputs, limits)
    secret: int     # memfd with the test code (assert style) or -1; read only by the test process
    result: int     # pipe to the runner
    control: int    # pipe from the runner (go/stop after each case) or -1


class _Proc:
    """A started process: its pid, pidfd, and (for solution processes) captured stdout/stderr."""

    def __init__(self, pid: int, out: int = -1, err: int = -1, cap: int = 0) -> None:
        self.pid, self.pidfd = pid, os.pidfd_open(pid)
        self.status: int | None = None
        self.out, self.err, self.cap = out, err, cap
        self.buffers = {out: bytearray(), err: bytearray()} if out >= 0 else {}
        self.open = set(self.buffers)  # pipes not yet at end of file
        self.over = False

    def drain(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.open.discard(fd)
            os.close(fd)
            return
        room = self.cap + 1 - len(self.buffers[self.out]) - len(self.buffers[self.err])
        self.buffers[fd] += chunk[:max(room, 0)]
        if len(chunk) > room:
            self.over = True

    def output(self) -> tuple[bytes, bytes]:
        return bytes(self.buffers.get(self.out, b"")), bytes(self.buffers.get(self.err, b""))

    def clear(self) -> None:
        for buffer in self.buffers.values():
            buffer.clear()


class _Budget:
    """CPU and wall-clock limits of one execution. The cgroup's CPU counter (the whole tree) is
    read only when the limit could have been reached since the last reading: a slot has one core
    of quota, so its CPU time grows no faster than wall time, give or take one 100 ms period."""

    def __init__(self, cgroup: CgroupFds | None, cpu_s: float, wall_s: float) -> None:
        self.cg, self.cpu_s = cgroup, float(cpu_s)
        self.base = cgroup.cpu_usec() if cgroup else 0
        self.waited_base = cgroup.cpu_wait_usec() if cgroup else None
        self.started = time.monotonic()
        self.deadline = self.started + float(wall_s)
        self.used, self.read_at = 0.0, self.started

    def used_now(self) -> float:
        if self.cg is not None:
            self.used, self.read_at = (self.cg.cpu_usec() - self.base) / 1e6, time.monotonic()
        return self.used

    def spent(self, why: str) -> dict[str, float]:
        """The CPU time used; after a wall-clock stop also the wall time and how much of it the
        slot's tasks spent runnable but waiting for a core (PSI "some"), where the kernel has PSI."""
        fact = {"cpu_s": self.used_now()}
        if why == "wall" and self.waited_base is not None:
            fact.update(elapsed_s=time.monotonic() - self.started,
                        waited_s=(self.cg.cpu_wait_usec() - self.waited_base) / 1e6)
        return fact

    def check(self) -> tuple[str | None, float]:
        """("cpu" or "wall", 0) when a limit is passed, else (None, how long to wait at most)."""
        now = time.monotonic()
        left = self.deadline - now
        if left <= 0:
            return "wall", 0.0
        if self.cg is None:
            return None, left
        slack = self.cpu_s - self.used - (now - self.read_at)
        if slack <= 0:
            slack = self.cpu_s - self.used_now()
            if slack < 0:
                return "cpu", 0.0
        return None, min(left, max(0.002, slack))


class _Init:
    def __init__(self, settings: InitSettings, fds: RunFds, job: dict[str, Any]) -> None:
        self.s, self.fds, self.job = settings, fds, job
        self.kept_out: dict[int, bytes] = {}

    # ------------------------------------------------------------ starting processes

    def spawn(self, role: Callable[[], int], fd_plan: dict[int, int], cpu_s: float, memory: int,
              stack: int) -> tuple[int, bool]:
        """Fork a solution process with every layer applied; `fd_plan` maps its fds to ours.
        Returns the pid and whether it reported ready (the layers are in place: written just
        before `role` runs, so the code cannot fake a setup failure)."""
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 120
            try:
                if self.s.cgroup is not None:  # first, before its descriptor can be shuffled away
                    os.write(self.s.cgroup.cpu_procs, b"0")  # the slot's CPU quota, weight and demotion
                    unshare(CLONE_NEWCGROUP)  # that group is the root it sees, as the others are the init's
                # Copies above every target first, so that no dup2 overwrites a source still needed.
                plan = {target: fcntl.fcntl(source, fcntl.F_DUPFD, 64)
                        for target, source in {**fd_plan, 9: ready_w}.items()}
                for target in range(10):
                    if target in plan:
                        os.dup2(plan[target], target)
                    else:
                        _close_quietly(target)
                os.closerange(10, _MAX_FD)
                os.chdir("/tmp")
                set_oom_score_adj(1000)  # the OOM killer takes it first
                set_rlimits(cpu_s, memory, self.s.tmp_bytes, self.s.nofile, self.s.nproc, stack)
                drop_privileges(self.s.code_uid, self.s.code_uid)
                prctl_dumpable(True)  # its own /proc files stay its own
                os.environ.clear()
                os.environ.update(_ENV)
                if self.s.seccomp is not None:
                    self.s.seccomp.load()
                os.write(9, b"1")
                os.close(9)
                status = role()
            finally:
                os._exit(status)
        os.close(ready_w)
        ready = os.read(ready_r, 1) == b"1" if _wait_readable(ready_r, 10.0) else False
        os.close(ready_r)
        return pid, ready

    def solution(self, role: Callable[[], int], cpu_s: float, memory: int, stack: int,
                 extra: dict[int, int] | None = None, stdin: int = -1) -> tuple[_Proc, bool]:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        plan = {0: stdin if stdin >= 0 else os.open("/dev/null", os.O_RDONLY), 1: out_w, 2: err_w, **(extra or {})}
        pid, ready = self.spawn(role, plan, cpu_s, memory, stack)
        for fd in (out_w, err_w, plan[0]):
            os.close(fd)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        return _Proc(pid, out_r, err_r, int(self.job["output_bytes"])), ready

    # ------------------------------------------------------------ watching

    def watch(self, procs: list[_Proc], readers: dict[int, Callable[[], None]], done: Callable[[], bool],
              budget: _Budget) -> str:
        """Pump output and channels until `done()`, a limit, or the first process exits.
        Returns why it stopped: done, exit, cpu, wall or output."""
        while True:
            if any(p.over for p in procs):
                return "output"
            if done():
                return "done"
            over, timeout = budget.check()
            if over:
                return over
            fds = [*readers, *(fd for p in procs for fd in p.open), *(p.pidfd for p in procs if p.status is None)]
            if not fds:
                time.sleep(min(timeout, 0.01))
                continue
            for fd in select.select(fds, [], [], timeout)[0]:
                if fd in readers:
                    readers[fd]()
                    continue
                proc = next(p for p in procs if fd == p.pidfd or fd in p.open)
                if fd != proc.pidfd:
                    proc.drain(fd)
                    continue
                proc.status = os.waitpid(proc.pid, 0)[1]
                os.close(proc.pidfd)
                for out_fd in list(proc.open):
                    while out_fd in proc.open and _readable(out_fd):
                        proc.drain(out_fd)
                for reader_fd, read in readers.items():
                    if _readable(reader_fd):
                        read()
                if proc.over:
                    return "output"
                return "done" if done() else "exit"

    def send(self, channel: int, data: bytes, proc: _Proc, budget: _Budget) -> str | None:
        """Write all of `data` to the non-blocking `channel`, draining the solution's output
        meanwhile (it may be blocked on a full stdout). Returns the limit that stopped it, or None;
        a peer that is gone just ends the write (what it sent is still readable)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(channel, view):]
                continue
            except BlockingIOError:
                pass
            except OSError:
                return None
            over, timeout = budget.check()
            if over:
                return over
            for fd in select.select(list(proc.open), [channel], [], timeout)[0]:
                proc.drain(fd)
            if proc.over:
                return "output"
        return None

    def end_of(self, why: str, proc: _Proc, oom_before: int) -> dict[str, Any]:
        """Facts about how a solution process ended, for the runner."""
        oom = self.s.cgroup is not None and self.s.cgroup.oom_kills() > oom_before
        fact: dict[str, Any] = {"end": why}
        if why == "exit" and proc.status is not None:
            fact["end"] = "oom" if oom and os.WIFSIGNALED(proc.status) else "exit"
            fact["code"] = os.waitstatus_to_exitcode(proc.status)
        elif oom:
            fact["end"] = "oom"
        return fact

    def reset(self) -> None:
        """Kill every process of the namespace but this one, and reap them (as root only), at
        full CPU weight: a demoted process would take seconds to exit on a busy machine."""
        if os.geteuid() != 0:
            return
        if self.s.cgroup is not None:
            self.s.cgroup.set_cpu_shares(FULL_SHARES)
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return

    def report(self, header: dict[str, Any], *blobs: bytes) -> None:
        wire.write_frame(self.fds.result, header, *blobs)

    def go_on(self) -> bool:
        """After a failed case with stop_at_first_failure, the runner says whether to continue."""
        if not self.job["stop_first"] or self.fds.control < 0:
            return True
        return os.read(self.fds.control, 1) == b"G"

    # ------------------------------------------------------------ styles

    def memory_for(self, language: str) -> int:
        return int(self.job["memory_bytes"]) + (self.s.base_vm if language == "python" else 0)

    def compile_cpp(self) -> bool:
        spec = self.job["compile"]
        os.makedirs(os.path.dirname(_CPP_SOURCE), mode=0o755)
        with open(_CPP_SOURCE, "w") as f:
            f.write(self.job["code"])
        os.chown(os.path.dirname(_CPP_SOURCE), self.s.code_uid, self.s.code_uid)
        argv = [*spec["argv"], "-o", _CPP_BINARY, _CPP_SOURCE]
        oom0 = self.s.cgroup.oom_kills() if self.s.cgroup else 0
        proc, ready = self.solution(lambda: os.execve(argv[0], argv, _ENV), spec["cpu_s"],
                                    spec["memory_bytes"], 256 << 20)
        if not ready:
            self.report({"t": "fault", "message": "the compiler process failed to start"})
            return False
        budget = _Budget(self.s.cgroup, spec["cpu_s"], spec["wall_s"])
        why = self.watch([proc], {}, lambda: False, budget)
        spent = budget.spent(why)
        fact = self.end_of(why, proc, oom0)
        self.reset()
        ok = fact["end"] == "exit" and fact.get("code") == 0
        self.report({"t": "compile", "ok": ok, **spent, **fact}, *proc.output())
        return ok

    def run_stdio(self) -> None:
        language = self.job["language"]
        if language == "cpp" and not self.compile_cpp():
            return
        code = self.job["code"]
        role = (lambda: harness.run_program(code)) if language == "python" else \
            (lambda: os.execve(_CPP_BINARY, ["main"], _ENV))
        stack = 8 << 20 if language == "python" else int(self.job["memory_bytes"])
        for index, text in enumerate(self.job["inputs"]):
            stdin = os.memfd_create("stdin")
            data = text.encode()
            written = 0
            while written < len(data):
                written += os.pwrite(stdin, data[written:], written)
            oom0 = self.s.cgroup.oom_kills() if self.s.cgroup else 0
            proc, ready = self.solution(role, self.job["cpu_s"], self.memory_for(language), stack, stdin=stdin)
            if not ready:
                self.reset()
                self.report({"t": "fault", "message": "a solution process failed to start"})
                return
            budget = _Budget(self.s.cgroup, self.job["cpu_s"], self.job["wall_s"])
            why = self.watch([proc], {}, lambda: False, budget)
            spent = budget.spent(why)
            fact = self.end_of(why, proc, oom0)
            self.reset()
            self.report({"t": "exec", "i": index, **spent, **fact}, *proc.output())
            if not self.go_on():
                return

    def run_call(self) -> None:
        calls, fn = self.job["calls"], self.job["fn"]
        code = self.job["code"]
        index = 0
        while index < len(calls):
            mine, theirs = socket.socketpair()
            proc, ready = self.solution(lambda: harness.serve(code, 3, False), self.job["cpu_s"] * (len(calls) - index),
                                        self.memory_for("python"), 8 << 20, extra={3: theirs.fileno()})
            theirs.close()
            if not ready:
                self.reset()
                self.report({"t": "fault", "message": "a solution process failed to start"})
                return
            channel = mine.fileno()
            os.set_blocking(channel, False)
            reader = wire.FrameReader(harness.MAX_MESSAGE)
            while index < len(calls):
                replies: list[dict[str, Any]] = []
                bad: list[str] = []

                def pump() -> None:
                    try:
                        replies.extend(header for header, _ in reader.feed(channel))
                    except wire.FrameError as err:
                        bad.append(str(err))

                oom0 = self.s.cgroup.oom_kills() if self.s.cgroup else 0
                budget = _Budget(self.s.cgroup, self.job["cpu_s"], self.job["wall_s"])
                why = self.send(channel, wire.pack({"call": fn, **calls[index]}), proc, budget) or \
                    self.watch([proc], {channel: pump},
                               lambda: bool(replies or bad or reader.closed or proc.status is not None), budget)
                spent = budget.spent(why)
                out, err = proc.output()
                proc.clear()
                reply = replies[0] if replies else None
                answered = why in ("done", "exit") and reply is not None and "load_error" not in reply
                if answered:
                    self.report({"t": "exec", "i": index, **spent, "end": "reply", "reply": reply}, out, err)
                else:
                    if why not in ("done", "exit"):
                        fact = self.end_of(why, proc, oom0)
                    elif proc.status is not None:
                        fact = self.end_of("exit", proc, oom0)
                    else:
                        fact = {"end": "garbage" if bad else "closed"}
                    self.report({"t": "exec", "i": index, **spent, **fact, "load": reply or {}}, out, err)
                index += 1
                if not self.go_on() or (reply or {}).get("load_error"):
                    index = len(calls)  # a solution that does not load fails every case the same way
                if not answered or proc.status is not None:
                    break
            mine.close()
            self.reset()

    def run_assert(self) -> None:
        """Start the solution process, then become the test process: drop to the test uid, load
        the filter, read the test code (only now: the solution process never had it in memory)
        and run it, calling the solution through `exchange`, which also watches the limits."""
        code, entry, stop_first = self.job["code"], self.job["entry_point"], bool(self.job["stop_first"])
        mine, theirs = socket.socketpair()
        cg = self.s.cgroup
        oom0 = cg.oom_kills() if cg else 0
        proc, ready = self.solution(lambda: harness.serve(code, 3, True), self.job["cpu_s"],
                                    self.memory_for("python"), 8 << 20, extra={3: theirs.fileno()})
        theirs.close()
        if not ready:
            self.reset()
            self.report({"t": "fault", "message": "a solution process failed to start"})
            return
        if cg is not None:
            cg.close_writers()  # the test code must not reach the limits
        drop_privileges(self.s.test_uid, self.s.test_uid)
        prctl_dumpable(False)
        if self.s.seccomp is not None:
            self.s.seccomp.load()
        channel = mine.fileno()
        os.set_blocking(channel, False)
        reader = wire.FrameReader(harness.MAX_MESSAGE)
        budget = _Budget(cg, self.job["cpu_s"], self.job["wall_s"])

        def exchange(request: dict | None) -> dict | None:
            if request is not None:
                stop = self.send(channel, wire.pack(request), proc, budget)
                if stop:
                    raise harness.Stopped(stop)
            frames: list[dict] = []

            def pump() -> None:
                try:
                    frames.extend(header for header, _ in reader.feed(channel))
                except wire.FrameError:
                    reader.closed = True

            while not frames and not reader.closed:
                why = self.watch([proc], {channel: pump}, lambda: bool(frames) or reader.closed, budget)
                if why in ("cpu", "wall", "output"):
                    raise harness.Stopped(why)
                if why == "exit" and not frames:
                    pump()
                    break
            return frames.pop(0) if frames else None

        try:
            report = harness.run_tests(_read_all(self.fds.secret), entry, exchange, stop_first)
            why = "done"
        except harness.Stopped as stop:
            report, why = None, str(stop)
        spent = budget.spent(why)
        for fd in list(proc.open):
            while fd in proc.open and _readable(fd):
                proc.drain(fd)
        fact = self.end_of("exit" if proc.status is not None else why, proc, oom0)
        self.report({"t": "assert", **spent, "tests": report, "why": why, **fact}, *proc.output())
        # No reset: this process is no longer root; its exit ends the pid namespace and every
        # process in it (the fork-server's cgroup.kill checks).


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _wait_readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def _read_all(fd: int) -> str:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


_STYLES = {"stdio": _Init.run_stdio, "call": _Init.run_call, "assert": _Init.run_assert}


def init_main(settings: InitSettings, fds: RunFds) -> int:
    """Entry of the run's init process (pid 1). Returns its exit status."""
    null = os.open("/dev/null", os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.close(null)
    init = _Init(settings, fds, {})
    try:
        prctl_dumpable(False)
        # Our oom_score_adj stays 0 (lowering it needs CAP_SYS_RESOURCE, which root lacks here);
        # solution processes get 1000, so the OOM killer takes them first.
        mount_run_filesystems(settings.tmp_bytes, settings.shm_bytes)
        init.job = json.loads(_read_all(fds.job))
        _STYLES[init.job["style"]](init)
    except Exception as err:  # a fault of ours: reported as such (SANDBOX_ERROR), never as a verdict
        init.reset()
        init.report({"t": "fault", "message": f"{type(err).__name__}: {err}"})
        return 1
    init.report({"t": "done"})
    return 0
