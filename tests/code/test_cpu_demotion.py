"""CPU-hog demotion and starvation (forkserver.py, verdicts.py), through the real sandbox.

A run past `demote_after_ms` of CPU gets cpu.shares 2 until it ends (while it has at most two
tasks: a forking run is not demoted, forkserver.py says why); a wall-clock stop of a
run that spent most of its wall time waiting for a core (PSI) is not judged. Starvation is made
here, not hoped for: the program runs demoted from its first millisecond while busy processes of
the test, at full weight, take both cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from verifier_service.code import CodeStatus, runner as runner_module
from verifier_service.code.isolation import cgroup_parents, slot_paths

from ci_rules import unavailable
from sandbox_helpers import run_assert, run_py, start_runner

LOOP = "while True:\n    pass\n"
STARVED = "not judged: starved of CPU"


def _shares(runner, index: int) -> int:
    with open(f"{runner._slots[index].cgroup.paths['cpu']}/cpu.shares") as f:
        return int(f.read())


def _in_thread(fn):
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


def _busy_processes(count: int) -> list[subprocess.Popen]:
    """Full-weight CPU hogs of the test itself (in the test's own cpu cgroup, beside the slots')."""
    return [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"]) for _ in range(count)]


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.kill()
        p.wait()


def _watch_shares(runner, run, every: float):
    """Run `run` in a thread; the (slot 0, slot 1) cpu.shares pairs seen while it ran, and its verdict."""
    thread, out = _in_thread(run)
    seen = set()
    while thread.is_alive():
        seen.add((_shares(runner, 0), _shares(runner, 1)))
        time.sleep(every)
    thread.join()
    return seen, out[0]


@pytest.fixture(scope="module")
def pair():
    r = start_runner(slots=2, demote_after_ms=100)
    yield r
    r.close()


def test_busy_loop_is_demoted_and_restored_at_its_end(pair):
    """On an idle machine a demoted loop still gets the spare cycles and reaches its CPU limit. Other
    jobs on the machine can starve it (a correct "not judged" verdict, but not the case under test):
    tried up to three times; under CI, which runs nothing else, starving every time is a failure."""
    for attempt in range(3):
        assert _shares(pair, 0) == _shares(pair, 1) == 1024
        seen, verdict = _watch_shares(pair, lambda: run_py(pair, LOOP, cpu_time_s=0.6, wall_time_s=2.2), 0.02)
        assert any(2 in s for s in seen), seen
        # restored when the run ends (what is killed exits at full weight), starved or not
        assert _shares(pair, 0) == _shares(pair, 1) == 1024
        if not (verdict.status is CodeStatus.SANDBOX_ERROR and verdict.reason.startswith(STARVED)):
            break
    else:
        unavailable(f"other jobs keep this machine's cores busy ({verdict.reason}): the idle case cannot be checked")
    assert verdict.status is CodeStatus.TIMEOUT and verdict.reason.startswith("CPU time over the limit"), verdict
    assert 0.6 <= verdict.cpu_time_s < 0.8, verdict
    for _ in range(2):  # a short run in each slot: at full weight, and not demoted
        assert run_py(pair, "print(input())", "1\n", "1\n").status is CodeStatus.PASSED
    assert _shares(pair, 0) == _shares(pair, 1) == 1024


def test_honest_program_beside_demoted_hogs_finishes_quickly():
    runner = start_runner(slots=3)  # demoted past the default 200 ms; the honest program stays far below
    try:
        hogs = [_in_thread(lambda: run_py(runner, LOOP, cpu_time_s=3.0, wall_time_s=8.0)) for _ in range(2)]
        deadline = time.monotonic() + 5
        while sorted(_shares(runner, i) for i in range(3)) != [2, 2, 1024] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(_shares(runner, i) for i in range(3)) == [2, 2, 1024]
        # ~60 ms of CPU with the interpreter's start: at full weight against two demoted hogs it
        # gets a core at once (other jobs of the machine take at most their fair share)
        code = "s = 0\nfor i in range(10 ** 6):\n    s += i\nprint(s)\n"
        start = time.monotonic()
        verdict = run_py(runner, code, expected=f"{sum(range(10 ** 6))}\n")
        elapsed = time.monotonic() - start
        assert verdict.status is CodeStatus.PASSED, verdict
        assert elapsed < 1.0, (elapsed, verdict.cpu_time_s)
        for thread, _ in hogs:
            thread.join()
    finally:
        runner.close()


def test_sleeping_program_still_times_out(pair):
    verdict = run_py(pair, "import time\ntime.sleep(30)\n", cpu_time_s=0.2, wall_time_s=1.0)
    assert verdict.status is CodeStatus.TIMEOUT and "wall-clock" in verdict.reason, verdict


@pytest.fixture
def starving():
    """One slot, demoted from the start, while three full-weight processes fill both cores; needs PSI."""
    runner = start_runner(slots=1, demote_after_ms=1)
    if runner.notes:
        runner.close()
        unavailable("no PSI on this kernel: " + "; ".join(runner.notes))
    busy = _busy_processes(3)
    try:
        yield runner
    finally:
        _stop(busy)
        runner.close()


def test_a_starved_demoted_run_is_given_up_on_before_its_wall_clock(starving):
    """A demoted program that keeps waiting for a core is stopped once it has waited
    forkserver.SHED_WAIT_S, not at its 20 s wall clock: the same "not judged", its slot freed sooner."""
    from verifier_service.code.forkserver import SHED_WAIT_S
    start = time.monotonic()
    verdict = run_py(starving, LOOP, cpu_time_s=10.0, wall_time_s=20.0)
    took = time.monotonic() - start
    assert verdict.status is CodeStatus.SANDBOX_ERROR and verdict.reason.startswith(STARVED), verdict
    assert "given up on at the lowest CPU weight" in verdict.reason and not verdict.judged, verdict
    assert SHED_WAIT_S <= took < 12.0, took


def test_starved_programs_are_not_judged_sleepers_still_time_out(starving):
    """Demoted from the start while three full-weight processes fill both cores: a correct program
    that needs 0.3 s of CPU cannot get it within its 2 s wall clock. That is not its fault:
    SANDBOX_ERROR, not TIMEOUT. Each style reports it the same way. A program that sleeps under the
    same load waits for no core once asleep, so its wall-clock stop stays TIMEOUT; it is run at full
    weight (demoted after the default 200 ms of CPU), since a program demoted from its first
    millisecond may starve before it reaches its sleep, and is then rightly not judged either (CI
    saw that once)."""
    work = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\nprint('ok')\n"
    verdict = run_py(starving, work, expected="ok\n", cpu_time_s=0.5, wall_time_s=1.5)
    assert verdict.status is CodeStatus.SANDBOX_ERROR and verdict.reason.startswith(STARVED), verdict
    assert not verdict.judged and verdict.cpu_time_s < 0.3
    verdict = run_assert(starving, "def f():\n" + "".join("    " + line + "\n" for line in work.splitlines()),
                         "f()\nassert True\n", cpu_time_s=0.5, wall_time_s=1.5)
    assert verdict.status is CodeStatus.SANDBOX_ERROR and verdict.reason.startswith(STARVED), verdict
    full_weight = start_runner(slots=1)
    try:
        verdict = run_py(full_weight, "import time\ntime.sleep(30)\n", cpu_time_s=0.5, wall_time_s=1.5)
    finally:
        full_weight.close()
    assert verdict.status is CodeStatus.TIMEOUT and "wall-clock" in verdict.reason, verdict


def test_stale_flat_cpu_groups_of_a_dead_owner_are_removed():
    parents = cgroup_parents()
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"verirl-{dead.pid}-0"
    paths = slot_paths(parents, owner, 0)
    old_layout = f"{parents['cpu']}/verirl-{dead.pid}-1/slot0"  # nested v1 cpu slot, as before the flat layout
    for path in (*paths.values(), old_layout):
        os.makedirs(path)
    sleeper = subprocess.Popen(["sleep", "60"])
    for name in ("unified", "cpu"):
        with open(f"{paths[name]}/cgroup.procs", "w") as f:
            f.write(str(sleeper.pid))
    try:
        runner_module._remove_stale_groups(parents)
        assert sleeper.wait(timeout=5) == -9
        assert not any(os.path.exists(p) for p in (*paths.values(), old_layout, os.path.dirname(old_layout),
                                                    os.path.dirname(paths["memory"])))
        assert all(os.path.isdir(p) for p in parents.values())
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_cpu_weight_descriptor_is_not_reachable_from_the_program(pair):
    """Neither the solution process nor the assert style's test process holds a descriptor of
    cpu.shares (or of any cgroup file that writes)."""
    probe = ("import os\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n"
             "        print(fd, os.readlink(f'/proc/self/fd/{fd}'))\n    except OSError:\n        pass\n")
    verdict = run_py(pair, probe)
    assert verdict.stdout and "cpu.shares" not in verdict.stdout and "cgroup.procs" not in verdict.stdout, verdict
    tests = ("import os\nlinks = []\nfor fd in os.listdir('/proc/self/fd'):\n    try:\n"
             "        links.append(os.readlink(f'/proc/self/fd/{fd}'))\n    except OSError:\n        pass\n"
             "assert links and not any('cpu.shares' in l or 'cgroup.procs' in l or 'cgroup.kill' in l"
             " for l in links), links\n")
    verdict = run_assert(pair, "x = 1\n", tests)
    assert verdict.status is CodeStatus.PASSED, verdict


def test_forking_run_is_not_demoted(pair):
    """A demoted task preempted inside fork or exit holds a global kernel lock that every cgroup
    migration waits for: a run with more than two tasks stays at full weight."""
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    seen, verdict = _watch_shares(pair, lambda: run_py(pair, bomb, cpu_time_s=0.5, wall_time_s=2.0), 0.01)
    assert seen == {(1024, 1024)}, seen
    # at full weight, and stopped for forking at its process limit (test_sandbox_attacks.test_fork_bomb)
    assert verdict.status is CodeStatus.RUNTIME_ERROR, verdict
