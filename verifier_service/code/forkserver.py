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
reset peak; a child joins the cgroup itself, enters fresh mount, pid, ipc, uts and cgroup
namespaces and forks the run's init (sandbox_init), then waits for it. The fork-server enforces
the run's wall-clock backstop with cgroup.kill and reports the peak memory.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from typing import Any

# Preloaded for the sandbox: its root holds the stdlib, but importing costs time in every run.
import array, bisect, collections, copy, dataclasses, datetime, decimal, fractions, functools  # noqa: E401,F401
import hashlib, heapq, itertools, math, operator, random, re, statistics, string, typing  # noqa: E401,F401
import unittest  # noqa: F401

from . import harness, plain, sandbox_init, wire  # noqa: F401
from .isolation import (CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID,
                        CLONE_NEWUTS, CgroupFds, IsolationError, SeccompProgram, SlotCgroup, build_root,
                        seccomp_bpf, set_parent_death_signal, unshare)

__all__ = ["main", "FD_NAMES"]

FD_NAMES = ("job", "secret", "result", "control")
_RUN_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP


def _setup(config: dict[str, Any]) -> tuple[sandbox_init.InitSettings, list[str]]:
    """Apply the slot-wide layers; return the init settings and the protections that are lost."""
    missing: list[str] = []
    try:
        program: SeccompProgram | None = SeccompProgram(seccomp_bpf())
    except (ImportError, OSError, RuntimeError) as err:
        program = None
        missing.append(f"seccomp syscall filter ({err})")
    cgroup: CgroupFds | None = None
    if config["cgroup_paths"]:
        cgroup = SlotCgroup(config["cgroup_paths"]).open()
    else:
        missing.append("cgroups: no memory, pids or CPU-quota limit on the process tree, no exact CPU "
                       "accounting (RLIMIT_CPU per process, whole seconds), no whole-tree kill")
    with open("/proc/self/statm") as f:
        base_vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    unshare(CLONE_NEWNS | CLONE_NEWNET)
    build_root(config["root_dir"], tuple(config["extra_ro"]), config["users"])
    settings = sandbox_init.InitSettings(
        code_uid=config["code_uid"], test_uid=config["test_uid"], tmp_bytes=config["tmp_bytes"],
        shm_bytes=config["shm_bytes"], nofile=config["nofile"], nproc=config["nproc"],
        base_vm=base_vm + (64 << 20), seccomp=program, cgroup=cgroup)
    return settings, missing


def _run_child(settings: sandbox_init.InitSettings, fds: sandbox_init.RunFds) -> None:
    """The first child of a run (never returns): join the cgroup, new namespaces, fork the init."""
    status = 1
    try:
        if settings.cgroup is not None:
            for fd in settings.cgroup.procs:
                os.write(fd, b"0")  # before anything else runs in this tree
        unshare(_RUN_NAMESPACES)
        pid = os.fork()
        if pid == 0:
            init_status = 1
            try:
                set_parent_death_signal(9)  # if the first child is killed, the whole namespace goes
                socket.sethostname("sandbox")
                init_status = sandbox_init.init_main(settings, fds)
            finally:
                os._exit(init_status)
        for fd in (fds.job, fds.secret, fds.result, fds.control):
            if fd >= 0:
                os.close(fd)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
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
        pid = os.fork()
        if pid == 0:
            sock.close()
            _run_child(settings, fds)
        for fd in passed:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        backstop = not select.select([pidfd], [], [], float(request["backstop_s"]))[0]
        if backstop and cgroup is not None:
            cgroup.kill_all()
        if backstop and cgroup is None:
            os.kill(pid, 9)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.close(pidfd)
        left = _wait_empty(cgroup, 2.0)
        reply = {"op": "end", "backstop": backstop, "status": status, "pids_left": left,
                 "peak_memory": cgroup.peak() if cgroup else 0}
        sock.send(json.dumps(reply).encode())


def main() -> None:
    config = json.loads(sys.argv[1])
    sock = socket.socket(fileno=int(config["sock_fd"]))
    try:
        settings, missing = _setup(config)
    except (IsolationError, OSError) as err:
        sock.send(json.dumps({"op": "error", "message": f"{type(err).__name__}: {err}"}).encode())
        return
    sock.send(json.dumps({"op": "ready", "missing": missing, "pid": os.getpid()}).encode())
    _serve(sock, settings)


if __name__ == "__main__":
    main()
