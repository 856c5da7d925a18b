"""Failover with real `verirl serve` processes: a replica killed (SIGKILL) mid-run, a server killed and
restarted on the same port. The client must answer every item exactly once, with the right status.

The in-process stop/restart case is tests/test_client.py::test_real_server_restart_on_same_port; these
kill a real process, so open connections die with a reset, not a graceful GOAWAY.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from verifier_service.client import MathItem, RetryPolicy, VerifierClient

pytestmark = pytest.mark.slow

RETRY = RetryPolicy(max_attempts=30, initial_backoff_s=0.05, max_backoff_s=0.5, dead_cooldown_s=1.0)


class Serve:
    """One `verirl serve` process (1 math worker, no sandbox); output in a file, never an unread pipe."""

    def __init__(self, log: Path, port: int = 0):
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "verifier_service.cli", "serve", "--address", f"127.0.0.1:{port}",
                 "--workers", "1", "--sandbox", "off", "--cache-size", "0", "--grace", "1"],
                stdout=out, stderr=subprocess.STDOUT)
        self.port = self._await_port()
        self.address = f"127.0.0.1:{self.port}"

    def _await_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.findall(r"listening on 127\.0\.0\.1:(\d+)", self.log.read_text(errors="replace"))
            if found:
                return int(found[-1])
            assert self.proc.poll() is None, f"verirl serve exited: {self.log.read_text()}"
            time.sleep(0.05)
        raise AssertionError(f"verirl serve did not start: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server; its math worker notices the closed pipe and exits on its own."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def serve(tmp_path):
    started: list[Serve] = []

    def start(port: int = 0) -> Serve:
        server = Serve(tmp_path / f"serve-{len(started)}.log", port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def batch(tag: str, n: int) -> tuple[list[MathItem], list[str]]:
    """n items with distinct ids; every third is wrong. Expected statuses alongside."""
    items = [MathItem(f"{tag}-{i}", f"The answer is \\boxed{{{i}/7}}", f"{i if i % 3 else i + 1}/7") for i in range(n)]
    return items, ["CORRECT" if i % 3 else "INCORRECT" for i in range(n)]


def check(results, items, expected) -> None:
    assert [r.id for r in results] == [item.id for item in items]  # each once, in order
    assert [r.status for r in results] == expected


def test_replica_killed_mid_run_only_slows_the_caller(serve):
    replicas = [serve() for _ in range(3)]
    victim = replicas[1]
    work = [batch(f"b{k}", 400) for k in range(24)]
    with VerifierClient([r.address for r in replicas], retry=RETRY, timeout=60) as client:
        check(client.check_math(work[0][0]), *work[0])  # every replica reachable before the kill
        killer = threading.Timer(0.8, victim.kill)
        killer.start()
        start = time.monotonic()
        with ThreadPoolExecutor(6) as pool:  # 6 calls in flight over 3 replicas: the victim has some
            answers = list(pool.map(lambda w: client.check_math(w[0]), work))
        elapsed = time.monotonic() - start
        killer.join()
    assert victim.proc.returncode == -signal.SIGKILL
    assert killer.finished.is_set() and elapsed > 0.8, "the work ended before the kill: make it longer"
    for results, (items, expected) in zip(answers, work):
        check(results, items, expected)
    assert all(r.proc.poll() is None for r in replicas if r is not victim)


def test_killed_server_restarted_on_same_port(serve):
    first = serve()
    items, expected = batch("r", 3000)  # one request of ~2 s on one worker: in flight at the kill
    with VerifierClient(first.address, retry=RETRY, timeout=60) as client:
        check(client.check_math(items[:3]), items[:3], expected[:3])
        restarted: list[Serve] = []

        def kill_and_restart() -> None:
            first.kill()
            time.sleep(0.5)  # the client meets a refused connection meanwhile
            restarted.append(serve(first.port))

        timer = threading.Timer(0.5, kill_and_restart)
        timer.start()
        try:
            check(client.check_math(items), items, expected)
        finally:
            timer.join()
        assert restarted and restarted[0].port == first.port
        assert first.proc.returncode == -signal.SIGKILL


def test_processes_of_a_killed_server_exit(serve):
    """A SIGKILLed server cannot stop its math workers (children of multiprocessing's forkserver): they
    must notice and exit, or every crash of a replica leaks processes."""
    server = serve()
    workers = _descendants(server.proc.pid)
    assert workers, "expected the server to have child processes"
    server.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(b")") + 2:].split()[1]), []).append(int(name))
    out, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return state[state.rindex(b")") + 2:].split()[0] != b"Z"
