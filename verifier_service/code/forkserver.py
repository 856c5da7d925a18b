"""The fork-server of one sandbox slot: a single-threaded process, started by the runner with a
clean interpreter, that forks one isolated run per request.

Why a separate process: forking the multi-threaded gRPC process is unsafe, and starting a fresh
interpreter per run costs tens of milliseconds. This process imports the harness and common
stdlib modules once, enters its own mount namespace (with the sandbox's minimal read-only root,
pivoted into) and its own empty network namespace (no interface up: no route anywhere), and
then only forks.

Why it never sees a job: what a forked child inherits is this process's memory, freed memory
included. So the job (code, inputs), the test code and the program output never pass through
here: the runner hands over memfds and pipes (SCM_RIGHTS) and this process only passes them on.
Its own messages are limits and counters.

Per run: the slot's cgroup must be empty (pids.current == 0) and gets its memory limit and a
reset peak; the run's init (sandbox_init) is cloned into fresh mount, pid, ipc and uts namespaces,
joins the cgroups itself before anything else (all but v1 cpu, which each solution process joins:
see below), then enters a fresh cgroup namespace. The fork-server enforces
the run's wall-clock backstop with cgroup.kill and reports the peak memory.

CPU-hog demotion: every run starts at full weight (cpu.shares 1024); once it has used more than
the request's `demote_after_s` of CPU the fork-server sets the slot's cpu.shares to 2, so that the
server, its math workers and the other slots' fresh runs win every contended core and the hog runs
on what is left; back to 1024 while the run has more processes than _DEMOTABLE_PIDS (why: there),
and when the run ends, so that what is killed exits at once. Only the solution processes are in the slot's v1 cpu group: the run's init stays in
this process's, at full weight, so that it still stops a demoted hog at its limits on time. The
check lives here rather than in the init because this process never runs untrusted code (the
assert style's init becomes the test process) and its descriptor of cpu.shares is one the run
never keeps (solution processes close every descriptor but their stdio and channel; the test
process closes the cgroup writers first). It costs nothing for short runs: the counter is first
read when the run could have reached the threshold (one core of quota).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

# Preloaded for the sandbox: the modules most solutions import (the rest of the stdlib is in the
# sandbox's root and imports normally). Kept short on purpose: every megabyte of this process
# costs ~0.1 ms per fork on our machines, and a run forks two or three times.
import bisect, collections, copy, functools, heapq, itertools, math, operator, random, re, string  # noqa: E401,F401
import typing  # noqa: F401

from . import harness, plain, sandbox_init, wire  # noqa: F401
from .isolation import (CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID,
                        CLONE_NEWUTS, DEMOTED_SHARES, FULL_SHARES, CgroupFds, IsolationError, SeccompProgram,
                        SlotCgroup, build_root, set_parent_death_signal, unshare)

__all__ = ["main", "FD_NAMES"]

FD_NAMES = ("job", "secret", "result", "control")
_RUN_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
_SYS_CLONE = 56
_M_ARENA_MAX = -8
# Address space a Python solution may reserve beyond its memory limit: thread stacks (8 MiB each)
# and the interpreter's own mappings. Memory actually used is bounded by the cgroup limit.
_THREAD_ALLOWANCE = 256 << 20
_LIBC_GIL = ctypes.PyDLL(None, use_errno=True)
# Demotion is for runs of one process (and the run's init, or the assert style's test process):
# a task at weight 2 that is preempted inside fork, clone or exit holds the kernel's global
# cgroup_threadgroup_rwsem for reading until it runs again, which at weight 2 on a busy machine
# is seconds; every cgroup migration (each run's start) then waits for it, and every fork and
# exit on the machine waits behind that. A fork bomb demoted that way stalled the whole server
# (docs/benchmarks.md); one that stays at full weight only costs its CPU, as before.
_DEMOTABLE_PIDS = 2
_DEMOTED_POLL_S = 0.02
# A run that keeps forking at its process limit (the slot cgroup's pids.max) is stopped once this many
# forks were refused: a program that meets the limit by accident fails its fork and handles or dies of
# it, a few refusals at most; a fork bomb that retries makes thousands a second and, at full weight
# (above), would otherwise burn its whole CPU limit. Each refusal costs about a fork (the kernel checks
# pids.max after copying the address space): 256 cost a bomb 0.3-0.7 s of CPU, 32 about 0.1 s.
# RUNTIME_ERROR, the program's fault (verdicts.py).
FORK_REFUSALS_STOP = 32
_FORK_POLL_S = 0.05  # how often a run of at most _DEMOTABLE_PIDS tasks is looked at for more
# A demoted run that has waited this long for a core since its demotion (PSI) is given up on: it would
# reach its wall clock starved and come back not judged anyway (verdicts.starved), holding its slot for
# the whole wall time (10 s by default) meanwhile. On a machine with spare cycles it never waits that long.
SHED_WAIT_S = 2.0


def _setup(config: dict[str, Any]) -> sandbox_init.InitSettings:
    """Apply the slot-wide layers (the runner decided which exist); return the init settings."""
    program = SeccompProgram(bytes.fromhex(config["seccomp_bpf"])) if config["seccomp_bpf"] else None
    cgroup: CgroupFds | None = SlotCgroup(config["cgroup_paths"]).open() if config["cgroup_paths"] else None
    # One malloc arena for all threads: glibc reserves 64 MiB of address space per extra arena,
    # which would make a handful of threads hit the address-space limit.
    _LIBC_GIL.mallopt(_M_ARENA_MAX, 1)
    with open("/proc/self/statm") as f:
        base_vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    unshare(CLONE_NEWNS | CLONE_NEWNET)
    build_root(config["root_dir"], tuple(config["extra_ro"]), config["users"])
    settings = sandbox_init.InitSettings(
        code_uid=config["code_uid"], test_uid=config["test_uid"], tmp_bytes=config["tmp_bytes"],
        shm_bytes=config["shm_bytes"], nofile=config["nofile"], nproc=config["nproc"],
        base_vm=base_vm + _THREAD_ALLOWANCE, seccomp=program, cgroup=cgroup)
    return settings


def _warm_up() -> None:
    """Run the harness's hot paths here, before any fork. Python 3.11 rewrites a function's
    bytecode in place while it warms up (quickening, specialisation): done once here instead of
    in every run, where each rewritten page would be copied (copy-on-write)."""
    values = [1, -2.5, "s", None, True, [1, (2, 3)], {"k": {1, 2}}, frozenset({4}), b"b", 10 ** 80]
    read_fd, write_fd = os.pipe()
    try:
        for _ in range(60):
            plain.loads(plain.dumps(values))
            wire.write_frame(write_fd, {"ok": plain.encode(values)}, b"out")
            wire.read_frame(read_fd, 1 << 20)
            wire.write_frame(write_fd, {"call": "f", "args": plain.encode(values)})
            wire.FrameReader(1 << 20).feed(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    replies = iter([{"names": {"f": {"fn": "f"}, "c": 3}}] + [{"ok": plain.encode(v)} for v in values] * 10)
    tests = "assert f(1) == 1\nassert c == 3\nfor v in range(5):\n    assert f(v) is not None or True\n"
    for _ in range(10):
        harness.run_tests(tests, "", lambda request: next(replies, {"ok": 1}), False)


def _clone_init(flags: int) -> int:
    """fork() with new namespaces in one step (the child is pid 1 of its pid namespace), saving
    the second fork a separate unshare would need. A raw clone(2) skips glibc's and Python's
    at-fork handlers, which is safe here: this process has one thread, the GIL is held through the
    call (PyDLL) and no lock is taken. The child must not use glibc's cached thread id (raise,
    abort, pthread_kill): it never does; its own children are made by os.fork as usual."""
    pid = _LIBC_GIL.syscall(ctypes.c_long(_SYS_CLONE), ctypes.c_ulong(flags | signal.SIGCHLD), None, None, None, None)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone")
    return pid


def _init_child(settings: sandbox_init.InitSettings, fds: sandbox_init.RunFds) -> None:
    """The run's init right after clone (never returns): join the cgroups first (but v1 cpu, which
    only the solution processes join: the init keeps full CPU weight while a hog is demoted), then run."""
    status = 1
    try:
        set_parent_death_signal(signal.SIGKILL)  # if this fork-server dies, the run goes with it
        if settings.cgroup is not None:
            for fd in settings.cgroup.procs:
                os.write(fd, b"0")  # before anything else runs in this tree
        unshare(CLONE_NEWCGROUP)  # after joining: the run's cgroup is the root it sees
        socket.sethostname("sandbox")
        status = sandbox_init.init_main(settings, fds)
    finally:
        os._exit(status & 0xFF)


def _wait_empty(cgroup: CgroupFds | None, timeout: float) -> int:
    """Kill the slot's tree and wait until no process is left; the number left at the timeout."""
    if cgroup is None:
        return 0
    deadline = time.monotonic() + timeout
    while (left := cgroup.pids()) and time.monotonic() < deadline:
        cgroup.kill_all()
        time.sleep(0.002)
    return left


def _wait_run(pidfd: int, cgroup: CgroupFds | None, backstop_s: float,
              demote_after_s: float) -> tuple[str, bool, int]:
    """Wait for the run's init to exit, at most `backstop_s`. Once the run has used more than
    `demote_after_s` of CPU (0: never), its slot runs at the lowest weight while it has at most
    _DEMOTABLE_PIDS tasks, at full weight otherwise (checked every _DEMOTED_POLL_S). The init
    sets full weight before it kills an execution's processes: they are not demoted again, the
    next execution's are. A run with more tasks than that is checked as often for forks refused
    at its process limit, and given up on at FORK_REFUSALS_STOP; a demoted run that waited
    SHED_WAIT_S for a core since its demotion is given up on too. Returns (why it ended: "exit",
    "backstop", "forks" or "shed"; demoted at any time; forks refused if it ended for them, else 0)."""
    deadline = time.monotonic() + backstop_s
    watch = cgroup is not None and demote_after_s > 0
    base = cgroup.cpu_usec() if watch else 0
    refused_base = cgroup.forks_refused() if cgroup is not None else 0
    demoted, past, low_for, waited_at_demotion = False, False, None, None
    while True:
        wait = deadline - time.monotonic()
        if wait <= 0:
            return "backstop", demoted, 0
        tasks = cgroup.pids() if cgroup is not None else 0
        if cgroup is not None:
            if tasks > _DEMOTABLE_PIDS:
                refused = cgroup.forks_refused() - refused_base
                if refused >= FORK_REFUSALS_STOP:
                    return "forks", demoted, refused
                wait = min(wait, _DEMOTED_POLL_S)
            else:
                wait = min(wait, _FORK_POLL_S)
        if watch:
            past = past or (cgroup.cpu_usec() - base) / 1e6 > demote_after_s
            if not past:
                # One core of quota: the usage grows no faster than wall time (plus at most one
                # 100 ms quota period of several threads at once), so nothing to read before then.
                wait = min(wait, max(demote_after_s - (cgroup.cpu_usec() - base) / 1e6, 0.005))
            elif tasks > _DEMOTABLE_PIDS:
                if low_for is not None:
                    cgroup.set_cpu_shares(FULL_SHARES)
                    low_for, waited_at_demotion = None, None
                wait = min(wait, _DEMOTED_POLL_S)
            else:
                members = cgroup.member_pids()
                if members != low_for:
                    cgroup.set_cpu_shares(DEMOTED_SHARES)
                    demoted, low_for = True, members
                waited = cgroup.cpu_wait_usec()
                if waited is not None:
                    waited_at_demotion = waited if waited_at_demotion is None else waited_at_demotion
                    if (waited - waited_at_demotion) / 1e6 >= SHED_WAIT_S:
                        return "shed", demoted, 0
                wait = min(wait, _DEMOTED_POLL_S)
        if select.select([pidfd], [], [], wait)[0]:
            return "exit", demoted, 0


def _serve(sock: socket.socket, settings: sandbox_init.InitSettings) -> None:
    cgroup = settings.cgroup
    while True:
        message, passed, _, _ = socket.recv_fds(sock, 1 << 16, len(FD_NAMES))
        if not message:
            return
        request = json.loads(message)
        named = dict(zip(request["fds"], passed))
        fds = sandbox_init.RunFds(**{name: named.get(name, -1) for name in FD_NAMES})
        left = _wait_empty(cgroup, 2.0)
        if left:
            for fd in passed:
                os.close(fd)
            sock.send(json.dumps({"op": "end", "error": f"{left} processes of the last run survive"}).encode())
            continue
        if cgroup is not None:
            cgroup.reset(int(request["cgroup_memory"]))
        oom_before = cgroup.oom_kills() if cgroup is not None else 0  # a running count: the run's is the rise
        waited_before = cgroup.cpu_wait_usec() if cgroup is not None else None
        cpu_before = cgroup.cpu_usec() if cgroup is not None else 0
        started = time.monotonic()
        pid = _clone_init(_RUN_NAMESPACES)
        if pid == 0:
            sock.close()
            _init_child(settings, fds)
        for fd in passed:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        ended, demoted, refused = _wait_run(pidfd, cgroup, float(request["backstop_s"]),
                                            float(request["demote_after_s"]))
        backstop = ended == "backstop"
        if demoted:  # what is left of the run is killed next: let it exit at full weight
            cgroup.set_cpu_shares(FULL_SHARES)
        if ended != "exit" and cgroup is not None:
            cgroup.kill_all()
        if backstop and cgroup is None:
            os.kill(pid, 9)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.close(pidfd)
        left = _wait_empty(cgroup, 2.0)
        reply = {"op": "end", "backstop": backstop, "status": status, "pids_left": left, "demoted": demoted,
                 "peak_memory": cgroup.peak() if cgroup else 0,
                 "oom_kills": cgroup.oom_kills() - oom_before if cgroup else 0, "forks_refused": refused,
                 "shed": ended == "shed", "cpu_s": (cgroup.cpu_usec() - cpu_before) / 1e6 if cgroup else 0.0}
        if ended in ("backstop", "shed") and waited_before is not None:  # starved? (verdicts.py)
            reply.update(elapsed_s=time.monotonic() - started,
                         waited_s=(cgroup.cpu_wait_usec() - waited_before) / 1e6)
        sock.send(json.dumps(reply).encode())


def main() -> None:
    config = json.loads(sys.argv[1])
    sock = socket.socket(fileno=int(config["sock_fd"]))
    try:
        settings = _setup(config)
    except (IsolationError, OSError) as err:
        sock.send(json.dumps({"op": "error", "message": f"{type(err).__name__}: {err}"}).encode())
        return
    sock.send(json.dumps({"op": "ready", "pid": os.getpid()}).encode())
    _warm_up()
    # Everything allocated so far is shared with every run: keep the collector off it, so that
    # neither this process nor its children dirty (copy) those pages by scanning them.
    gc.freeze()
    _serve(sock, settings)


if __name__ == "__main__":
    main()
