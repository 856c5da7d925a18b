"""PRM faults (issue 5): a PRM process killed mid-request, and a forward pass past its deadline.

A real server on port 0 with a small but slow PRM (a 3,500-token chain takes seconds on a CPU),
so a request is reliably inside the PRM process when the test kills it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from prm_models import build_prm, require_torch
from verifier_service.client import VerifierClient
from verifier_service.config import ServerConfig
from verifier_service.server import create_server

pytestmark = pytest.mark.slow

LONG = {"problem": "Repeat the word.", "steps": ["word " * 700]}           # ~3,500 tokens
SHORT = {"problem": "What is 2+3?", "steps": ["2+3 = 5", "The answer is 5."]}


@pytest.fixture(scope="module")
def slow_prm(tmp_path_factory):
    require_torch()
    # hidden 512 x 8 layers: a pass of three 3,500-token chains is tens of seconds of CPU, far past the
    # deadline test's 1.5 s also on a quiet machine (hidden 256 x 4 layers finished in time on one)
    return build_prm(tmp_path_factory.mktemp("prm") / "slow", "token_classification", seed=6, hidden=512, layers=8,
                     max_position_embeddings=4096, max_length=4096)


def _serve(directory, timeout_s):
    config = ServerConfig(address="127.0.0.1:0", math_workers=1, sandbox="off",
                          prm={"dir": str(directory), "device": "cpu", "batch_tokens": 16384,
                               "timeout_s": timeout_s})
    server, port = create_server(config)
    return server, VerifierClient(f"127.0.0.1:{port}", timeout=120)


def _wait_for(condition, what, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _in_thread(fn, *args):
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the test's thread by result()
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()

    def result():
        thread.join(120)
        if "error" in out:
            raise out["error"]
        return out["value"]
    return result


def test_killed_prm_process_fails_only_its_request_and_restarts(slow_prm):
    from verifier_service.prm import PRMScorer

    server, client = _serve(slow_prm, timeout_s=120)
    try:
        engine = server.prm.engine
        first_pid = engine.pid
        long_call = _in_thread(client.score_steps, [{"id": "victim", **LONG}, {"id": "victim2", **LONG}])
        _wait_for(lambda: engine.stats()[1] > 0, "the long chain to be inside the PRM process")
        short_call = _in_thread(client.score_steps, [{"id": "bystander", **SHORT}])
        _wait_for(lambda: engine.stats()[0] == 1, "the short chain to queue behind it")
        os.kill(first_pid, signal.SIGKILL)

        for victim in long_call():
            assert (victim.status, victim.judged, victim.step_scores) == ("INTERNAL_ERROR", False, ())
            assert "died" in victim.reason and "restarted" in victim.reason
        [bystander] = short_call()
        expected = PRMScorer(str(slow_prm), device="cpu").score(SHORT["problem"], SHORT["steps"])
        assert (bystander.status, bystander.judged) == ("OK", True)
        assert list(bystander.step_scores) == pytest.approx(expected, abs=1e-5)
        assert engine.pid != first_pid and engine.restarts == 1
        [again] = client.score_steps([{"id": "after", **SHORT}])
        assert again.status == "OK"
    finally:
        client.close()
        server.stop(0)


def test_forward_past_deadline_is_timeout_not_zero(slow_prm):
    server, client = _serve(slow_prm, timeout_s=1.5)
    try:
        engine = server.prm.engine
        first_pid = engine.pid
        # one pass of three long chains: seconds of CPU, over the 1.5 s deadline on any machine
        long_call = _in_thread(client.score_steps, [{"id": f"late{i}", **LONG} for i in range(3)])
        _wait_for(lambda: engine.stats()[1] > 0, "the long chains to be inside the PRM process")
        [queued] = client.score_steps([{"id": "queued", **SHORT}])  # waits behind them, then for the restart
        for late in long_call():
            assert (late.status, late.judged, late.step_scores, late.score) == ("TIMEOUT", False, (), 0.0)
            assert "did not answer before the deadline" in late.reason
        assert (queued.status, queued.judged) == ("TIMEOUT", False)
        assert "not scored within the PRM deadline (1.5 s)" in queued.reason
        _wait_for(lambda: engine.restarts == 1, "the hung forward's process to be replaced")
        assert engine.pid != first_pid
    finally:
        client.close()
        server.stop(0)
