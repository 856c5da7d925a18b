"""The worker pool: deadlines by SIGKILL, crash recovery, back-pressure, cache, clean shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifier_service.cache import content_key
from verifier_service.errors import QueueFull, ServiceClosed
from verifier_service.math import MathOptions, MathStatus
from verifier_service.workers import Job, OutcomeStatus, WorkerPool

SLACK_S = 0.5  # allowed lateness of a TIMEOUT on a loaded 2-core machine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2, queue_capacity=64, cache_size=100) as pool:
        yield pool


def test_math_check_round_trip(pool):
    outcome = pool.run(Job("verifier_service.math:check", ("42", "42", MathOptions())))
    assert outcome.status is OutcomeStatus.OK
    assert outcome.value.status is MathStatus.CORRECT
    assert outcome.elapsed_ms > 0 and not outcome.cached


@pytest.mark.parametrize("name", ["spin", "big_power", "sympy_factor"])
def test_runaway_check_times_out_and_pool_serves_on(pool, slow_fn, name):
    restarts = pool.stats().restarts
    start = time.monotonic()
    outcome = pool.run(Job(slow_fn(name), (), timeout_s=0.3))
    elapsed = time.monotonic() - start
    assert outcome.status is OutcomeStatus.TIMEOUT
    assert "deadline of 0.3 s" in outcome.reason
    assert 0.3 <= elapsed < 0.3 + SLACK_S
    assert pool.run(Job(slow_fn("echo"), ("next",))).value == "next"
    _wait_for(lambda: pool.stats().restarts == restarts + 1)


def test_kill_9_mid_check_is_internal_to_that_item(pool, slow_fn, tmp_path: Path):
    marker = tmp_path / "pid"
    victim = pool.submit(Job(slow_fn("report_then_sleep"), (str(marker), 30.0), timeout_s=60))
    _wait_for(marker.exists)
    _wait_for(lambda: marker.read_text() != "")
    bystander = pool.submit(Job(slow_fn("report_then_sleep"), (str(tmp_path / "other"), 0.3), timeout_s=5))
    os.kill(int(marker.read_text()), signal.SIGKILL)
    outcome = victim.result(timeout=5)
    assert outcome.status is OutcomeStatus.WORKER_DIED
    assert "died during the check" in outcome.reason and "-9" in outcome.reason
    assert bystander.result(timeout=5).value == "slept"
    assert pool.run(Job(slow_fn("echo"), (1,))).value == 1
    assert pool.stats().worker_deaths >= 1


def test_raising_and_unpicklable_results_fail_cleanly(pool, slow_fn):
    raised = pool.run(Job(slow_fn("boom")))
    assert raised.status is OutcomeStatus.FAILED and raised.reason == "ValueError: boom"
    unpicklable = pool.run(Job(slow_fn("unpicklable")))
    assert unpicklable.status is OutcomeStatus.FAILED and "cannot be pickled" in unpicklable.reason
    bad_args = pool.run(Job(slow_fn("echo"), (lambda: None,)))
    assert bad_args.status is OutcomeStatus.FAILED and "arguments" in bad_args.reason
    assert pool.run(Job(slow_fn("echo"), ("ok",))).value == "ok"


def test_cache_by_content(pool, slow_fn):
    job = Job(slow_fn("pid"), (), cache_key=content_key("test", "pid"))
    first, second = pool.run(job), pool.run(job)
    assert not first.cached and second.cached and second.value == first.value
    refused = Job(slow_fn("pid"), (), cache_key=content_key("test", "refused"), cacheable=lambda value: False)
    assert not pool.run(refused).cached and not pool.run(refused).cached
    timed_out = Job(slow_fn("spin"), (), timeout_s=0.1, cache_key=content_key("test", "spin"))
    assert [pool.run(timed_out).status for _ in range(2)] == [OutcomeStatus.TIMEOUT] * 2


def test_content_key_separates_parts():
    assert content_key("ab", "c") != content_key("a", "bc")
    same = "x" * 10
    assert content_key(same, same) == content_key("x" * 10, "".join(["x"] * 10))
    assert content_key("m", MathOptions(precision=2)) != content_key("m", MathOptions())


def test_queue_full_is_typed_and_atomic(slow_fn):
    with WorkerPool(1, queue_capacity=2) as small:
        running = small.submit(Job(slow_fn("report_then_sleep"), (os.devnull, 0.5)))
        _wait_for(lambda: small.stats().in_flight == 1)
        with pytest.raises(QueueFull, match="queue_capacity is 2"):
            small.submit_many([Job(slow_fn("echo"), (i,)) for i in range(3)])
        assert small.stats().queued == 0  # all or nothing
        queued = small.submit_many([Job(slow_fn("echo"), (i,)) for i in range(2)])
        with pytest.raises(QueueFull):
            small.submit(Job(slow_fn("echo"), (9,)))
        assert queued[1].cancel()  # a cancelled job that has not started is skipped
        assert running.result().value == "slept" and queued[0].result().value == 0


def test_waiting_submit_gets_room(slow_fn):
    with WorkerPool(1, queue_capacity=1) as small:
        small.submit(Job(slow_fn("report_then_sleep"), (os.devnull, 0.2)))
        _wait_for(lambda: small.stats().in_flight == 1)
        small.submit(Job(slow_fn("echo"), (1,)))
        late = small.submit(Job(slow_fn("echo"), (2,)), wait_s=5.0)
        assert late.result(timeout=5).value == 2


def test_recycling_replaces_workers(slow_fn):
    with WorkerPool(1, recycle_after=2) as small:
        pids = [small.run(Job(slow_fn("pid"))).value for _ in range(3)]
        assert pids[0] == pids[1] != pids[2]


def test_close_drains_then_leaves_no_processes(slow_fn):
    small = WorkerPool(2)
    pids = small.worker_pids()
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    finishing = small.submit(Job(slow_fn("report_then_sleep"), (os.devnull, 0.3)))
    stuck = small.submit(Job(slow_fn("spin"), (), timeout_s=30))
    _wait_for(lambda: small.stats().in_flight == 2)
    small.close(grace_s=1.0)
    assert finishing.result(timeout=1).value == "slept"
    assert stuck.result(timeout=1).status is OutcomeStatus.SHUTDOWN
    assert not any(_alive(pid) for pid in pids + small.worker_pids())
    with pytest.raises(ServiceClosed):
        small.submit(Job(slow_fn("echo"), (1,)))


ORPHAN_SCRIPT = """
import os, signal, sys, time
from verifier_service.workers import Job, WorkerPool
if __name__ == "__main__":
    pool = WorkerPool(1)
    pool.submit(Job(sys.argv[1], (), timeout_s=60))
    time.sleep(0.3)
    print(pool.worker_pids()[0], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_busy_worker_dies_with_a_killed_server(slow_fn, tmp_path: Path):
    script = tmp_path / "server.py"
    script.write_text(ORPHAN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script), slow_fn("spin")], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr
    worker = int(done.stdout.split()[0])
    _wait_for(lambda: not _running(worker), timeout=5)


def test_a_runaway_among_queued_jobs_times_out_alone(slow_fn):
    """Jobs queued behind a runaway keep their own deadlines and are answered by the
    replacement worker."""
    with WorkerPool(1, queue_capacity=64) as pool:
        jobs = [Job(slow_fn("echo"), (i,), timeout_s=5.0) for i in range(3)]
        jobs.append(Job(slow_fn("spin"), (), timeout_s=0.3))
        jobs += [Job(slow_fn("echo"), (i,), timeout_s=5.0) for i in range(4, 7)]
        start = time.monotonic()
        outcomes = [future.result() for future in pool.submit_many(jobs)]
        assert [o.status for o in outcomes] == [OutcomeStatus.OK] * 3 + [OutcomeStatus.TIMEOUT] + [OutcomeStatus.OK] * 3
        assert [o.value for o in outcomes if o.status is OutcomeStatus.OK] == [0, 1, 2, 4, 5, 6]
        assert time.monotonic() - start < 0.3 + SLACK_S + 1.0  # + the replacement's start
        assert pool.stats().timeouts == 1 and pool.stats().in_flight == 0


def test_an_unpicklable_job_among_others_fails_alone(slow_fn):
    with WorkerPool(1, queue_capacity=64) as pool:
        jobs = [Job(slow_fn("echo"), ("a",)), Job(slow_fn("echo"), (lambda: None,)), Job(slow_fn("echo"), ("c",))]
        outcomes = [future.result() for future in pool.submit_many(jobs)]
        assert [o.status for o in outcomes] == [OutcomeStatus.OK, OutcomeStatus.FAILED, OutcomeStatus.OK]
        assert outcomes[0].value == "a" and outcomes[2].value == "c" and "arguments" in outcomes[1].reason


def test_a_worker_dying_among_queued_jobs_fails_only_its_job(slow_fn, tmp_path: Path):
    with WorkerPool(1, queue_capacity=64) as pool:
        jobs = [Job(slow_fn("echo"), ("a",)), Job(slow_fn("die")), Job(slow_fn("echo"), ("c",))]
        outcomes = [future.result() for future in pool.submit_many(jobs)]
        assert [o.status for o in outcomes] == [OutcomeStatus.OK, OutcomeStatus.WORKER_DIED, OutcomeStatus.OK]
        assert outcomes[2].value == "c"
