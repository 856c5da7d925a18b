"""The gRPC service end to end: a real server on port 0, a real channel, the generated stub.

Math items go through tests/slow_functions.py:math_check, which is the real check unless
the response is a command ("sleep:S", "spin", "die"): that is how items are made slow.
These servers run no code (sandbox="off"); the code path is tested in test_server_code.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from verifier_service import __version__, backends
from verifier_service.config import ServerConfig
from verifier_service.proto import verifier_pb2 as pb
from verifier_service.proto import verifier_pb2_grpc as pb_grpc
from verifier_service.server import create_server, embedded_server

S = pb.MathResult
CONFIG = ServerConfig(address="127.0.0.1:0", math_workers=2, math_timeout_s=0.5, max_math_timeout_s=1.0,
                      max_items_per_request=16, max_string_bytes=1000, metrics_port=0, replay_size=8, sandbox="off")


@pytest.fixture(scope="module", autouse=True)
def slow_math(slow_fn):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backends, "MATH_CHECK_FN", slow_fn("math_check"))
        yield


@pytest.fixture(scope="module")
def server():
    server, _port = create_server(CONFIG)
    yield server
    server.stop(0)


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.VerifierStub(channel)


def _settled(server) -> int:
    """Wait until earlier tests' leftover work (e.g. a running item of an aborted stream) is done;
    returns the pool's completed count."""
    deadline = time.monotonic() + 5
    while (stats := server.pool.stats()).in_flight or stats.queued:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return stats.completed


def _items(*pairs: tuple[str, str]) -> list[pb.MathItem]:
    return [pb.MathItem(id=f"i{n}", gold=gold, response=response) for n, (gold, response) in enumerate(pairs)]


def test_check_math_answers_in_request_order(stub):
    pairs = [("42", "42" if n % 2 else "41") for n in range(10)]
    response = stub.CheckMath(pb.CheckMathRequest(items=_items(*pairs)), timeout=10)
    assert [r.id for r in response.results] == [f"i{n}" for n in range(10)]
    assert [r.status for r in response.results] == [S.CORRECT if n % 2 else S.INCORRECT for n in range(10)]
    assert all(r.judged and r.elapsed_ms > 0 for r in response.results)
    assert [r.score for r in response.results] == [float(n % 2) for n in range(10)]


def test_second_identical_item_is_cached(stub):
    request = pb.CheckMathRequest(items=[pb.MathItem(id="c", gold="7", response="7")])
    first, second = (stub.CheckMath(request, timeout=10).results[0] for _ in range(2))
    assert not first.cached and second.cached and second.status == first.status == S.CORRECT


TOO_LONG = "9" * 1001


@pytest.mark.parametrize("request_, message", [
    (pb.CheckMathRequest(items=_items(("1", "1"), ("", "1"))), "items[1].gold: required"),
    (pb.CheckMathRequest(items=_items(("1", TOO_LONG))), "items[0].response: exceeds max_string_bytes (1000)"),
    (pb.CheckMathRequest(items=_items(*[("1", "1")] * 17)), "items: 17 items exceed max_items_per_request (16)"),
    (pb.CheckMathRequest(items=[pb.MathItem(gold="1", options=pb.MathOptions(extractors=[1, 99]))]),
     "items[0].options.extractors[1]: not a valid Extractor (99)"),
    (pb.CheckMathRequest(items=_items(("1", "1")), options=pb.MathOptions(timeout_s=-1)), "options.timeout_s"),
    (pb.CheckMathRequest(items=_items(("1", "1")), options=pb.MathOptions(precision=-2)), "options.precision"),
    (pb.CheckMathRequest(items=_items(("1", "1")), options=pb.MathOptions(rel_tol=float("nan"))), "options.rel_tol"),
])
def test_malformed_requests_name_the_field(stub, request_, message):
    with pytest.raises(grpc.RpcError) as error:
        stub.CheckMath(request_, timeout=10)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(message)


def test_runaway_item_does_not_stall_its_batch(stub):
    items = _items(("1", "spin"), *[("2", "2")] * 6)
    items[0].options.timeout_s = 0.3
    start = time.monotonic()
    results = stub.CheckMath(pb.CheckMathRequest(items=items), timeout=10).results
    assert time.monotonic() - start < 0.3 + 1.0
    assert results[0].status == S.TIMEOUT and not results[0].judged and "deadline of 0.3 s" in results[0].reason
    assert all(r.status == S.CORRECT for r in results[1:])


def test_deadline_is_capped_by_the_server(stub):
    item = pb.MathItem(id="x", gold="1", response="spin", options=pb.MathOptions(timeout_s=1000))
    start = time.monotonic()
    result = stub.CheckMath(pb.CheckMathRequest(items=[item]), timeout=10).results[0]
    assert result.status == S.TIMEOUT and "deadline of 1 s" in result.reason
    assert time.monotonic() - start < 1.0 + 0.8


def test_killed_worker_is_an_internal_error_of_that_item_only(stub):
    results = stub.CheckMath(pb.CheckMathRequest(items=_items(("3", "die"), ("3", "3"))), timeout=10).results
    assert results[0].status == S.INTERNAL_ERROR and not results[0].judged and "died" in results[0].reason
    assert results[1].status == S.CORRECT
    assert stub.CheckMath(pb.CheckMathRequest(items=_items(("4", "4"))), timeout=10).results[0].status == S.CORRECT


def test_verify_stream_answers_every_id_as_it_finishes(stub):
    requests = [pb.VerifyRequest(math=pb.MathItem(id="slow", gold="5", response="sleep:0.4"))]
    requests += [pb.VerifyRequest(math=pb.MathItem(id=f"m{n}", gold="5", response=str(n))) for n in range(8)]
    requests += [pb.VerifyRequest(math=pb.MathItem(id="bad", gold="")),
                 pb.VerifyRequest(code=pb.CodeItem(id="code")), pb.VerifyRequest(steps=pb.StepsItem(id="steps")),
                 pb.VerifyRequest(candidates=pb.CandidatesItem(id="cands"))]
    responses = list(stub.Verify(iter(requests), timeout=10))
    by_id = {getattr(r, r.WhichOneof("result")).id: r for r in responses}
    assert len(responses) == len(by_id) == len(requests)
    assert by_id["m5"].math.status == S.CORRECT and by_id["m4"].math.status == S.INCORRECT
    assert by_id["slow"].math.status == S.CORRECT
    assert responses[-1].math.id == "slow"  # out of order: the slow one finished last
    assert by_id["bad"].math.status == S.INVALID_ARGUMENT and by_id["bad"].math.reason.startswith("math.gold")
    assert by_id["code"].code.status == pb.CodeResult.UNAVAILABLE and not by_id["code"].code.judged
    assert by_id["steps"].steps.status == pb.StepsResult.UNAVAILABLE
    assert by_id["cands"].candidates.status == pb.StepsResult.UNAVAILABLE


def test_cancelled_stream_cancels_its_queued_items(stub, server):
    completed = _settled(server)
    release = threading.Event()

    def requests():
        for n in range(8):
            yield pb.VerifyRequest(math=pb.MathItem(id=f"c{n}", gold=f"{n}0", response="sleep:0.2"))
        release.wait(10)  # keep the stream open

    call = stub.Verify(requests(), timeout=10)
    next(call)
    call.cancel()
    release.set()
    assert _settled(server) - completed <= 6  # of 8: the queued ones were cancelled (2 workers, 0.2 s each)


def test_verify_rejects_an_id_open_twice(stub):
    requests = [pb.VerifyRequest(math=pb.MathItem(id="dup", gold="1", response="sleep:0.3"))] * 2
    with pytest.raises(grpc.RpcError) as error:
        list(stub.Verify(iter(requests), timeout=10))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "math.id" in error.value.details()


def test_other_kinds_answer_unavailable(stub):
    code = stub.RunCode(pb.RunCodeRequest(items=[pb.CodeItem(id="a"), pb.CodeItem(id="b")]), timeout=10)
    assert [(r.id, r.status, r.judged) for r in code.results] == [("a", pb.CodeResult.UNAVAILABLE, False),
                                                                  ("b", pb.CodeResult.UNAVAILABLE, False)]
    assert "does not run code" in code.results[0].reason
    steps = stub.ScoreSteps(pb.ScoreStepsRequest(items=[pb.StepsItem(id="s")]), timeout=10)
    assert steps.results[0].status == pb.StepsResult.UNAVAILABLE
    cands = stub.ScoreCandidates(pb.ScoreCandidatesRequest(items=[pb.CandidatesItem(id="c")]), timeout=10)
    assert cands.results[0].status == pb.StepsResult.UNAVAILABLE


def test_request_id_replays_the_recorded_response(stub, server):
    request = pb.CheckMathRequest(items=_items(("8", "sleep:0.2")), request_id="batch-1")
    first = stub.CheckMath(request, timeout=10)
    completed = _settled(server)
    start = time.monotonic()
    again = stub.CheckMath(request, timeout=10)
    assert time.monotonic() - start < 0.2
    assert again == first and not again.results[0].cached
    assert server.pool.stats().completed == completed
    other = pb.CheckMathRequest(items=_items(("8", "9")), request_id="batch-1")
    with pytest.raises(grpc.RpcError) as error:
        stub.CheckMath(other, timeout=10)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "request_id" in error.value.details()


def test_retry_while_the_first_call_runs_waits_for_it(stub, server):
    request = pb.CheckMathRequest(items=_items(("9", "sleep:0.3")), request_id="batch-2")
    completed = _settled(server)
    first = stub.CheckMath.future(request, timeout=10)
    time.sleep(0.05)
    with pytest.raises(grpc.RpcError):  # a retry that gives up early does not disturb the first call
        stub.CheckMath(request, timeout=0.05)
    again = stub.CheckMath(request, timeout=10)
    assert again == first.result() and again.results[0].status == S.CORRECT
    assert server.pool.stats().completed == completed + 1


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "verifier.v1.Verifier"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert "verifier.v1.Verifier" in {s.name for s in answer.list_services_response.service}


def test_server_info(stub):
    info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
    assert info.version == __version__ and list(info.capabilities) == ["math"]
    assert (info.math_workers, info.code_slots, info.sandbox_mode) == (2, 0, "off")
    limits = info.limits
    assert (limits.max_items_per_request, limits.max_string_bytes, limits.queue_capacity) == (16, 1000, 16384)
    assert (limits.math_timeout_s, limits.max_math_timeout_s) == (0.5, 1.0)


def test_metrics_over_http(stub, server):
    stub.CheckMath(pb.CheckMathRequest(items=_items(("1", "1"))), timeout=10)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics.port}/metrics", timeout=5).read().decode()
    for needle in ('verirl_requests_total{code="OK",rpc="CheckMath"}', 'verirl_items_total{kind="math",status="CORRECT"}',
                   'verirl_item_seconds_bucket{kind="math"', "verirl_request_seconds_bucket", "verirl_queue_depth",
                   "verirl_worker_restarts_total", "verirl_cache_hits_total", 'verirl_timeouts_total{kind="math"}',
                   'verirl_requests_total{code="INVALID_ARGUMENT",rpc="CheckMath"}'):
        assert needle in text, needle


def test_full_queue_is_resource_exhausted(slow_fn):
    server, port = create_server(CONFIG.replace(math_workers=1, queue_capacity=2, metrics_port=None))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VerifierStub(channel)
            busy = stub.CheckMath.future(pb.CheckMathRequest(items=_items(("1", "sleep:0.3"))), timeout=10)
            deadline = time.monotonic() + 5
            while server.pool.stats().in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as error:
                stub.CheckMath(pb.CheckMathRequest(items=_items(*[("1", "1")] * 3)), timeout=10)
            assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "queue_capacity is 2" in error.value.details()
            assert busy.result().results[0].status == S.CORRECT
    finally:
        server.stop(0)


def test_message_over_max_message_bytes_is_resource_exhausted():
    with embedded_server(CONFIG.replace(math_workers=1, metrics_port=None, max_message_bytes=2000)) as address:
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError) as error:
                pb_grpc.VerifierStub(channel).CheckMath(
                    pb.CheckMathRequest(items=_items(*[("1", "9" * 900)] * 3)), timeout=10)
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_stop_finishes_in_flight_work_and_leaves_no_workers():
    server, port = create_server(CONFIG.replace(math_workers=1, metrics_port=None))
    pids = server.pool.worker_pids()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.VerifierStub(channel)
        pending = stub.CheckMath.future(pb.CheckMathRequest(items=_items(("6", "sleep:0.3"))), timeout=10)
        deadline = time.monotonic() + 5
        while server.pool.stats().in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        stopper = threading.Thread(target=server.stop, args=(5.0,))
        stopper.start()
        assert pending.result().results[0].status == S.CORRECT
        stopper.join(10)
        assert server.wait(0)
        with pytest.raises(grpc.RpcError):
            stub.CheckMath(pb.CheckMathRequest(items=_items(("1", "1"))), timeout=2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_embedded_server_yields_a_loopback_address():
    with embedded_server(CONFIG.replace(math_workers=1, metrics_port=None)) as address:
        assert address.startswith("127.0.0.1:")
        with grpc.insecure_channel(address) as channel:
            result = pb_grpc.VerifierStub(channel).CheckMath(pb.CheckMathRequest(items=_items(("2", "2"))), timeout=10)
    assert result.results[0].status == S.CORRECT


def test_work_of_a_caller_that_went_away_is_cancelled():
    server, port = create_server(CONFIG.replace(math_workers=1, metrics_port=None))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VerifierStub(channel)
            items = _items(*[(str(n), "sleep:0.3") for n in range(6)])
            with pytest.raises(grpc.RpcError) as error:
                stub.CheckMath(pb.CheckMathRequest(items=items), timeout=0.15)
            assert error.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            time.sleep(0.6)
            stats = server.pool.stats()
            assert stats.queued == 0 and stats.completed == 1  # the running item finished, the rest never ran
    finally:
        server.stop(0)


def test_config_refuses_unknown_keys():
    assert ServerConfig.from_dict({"math_workers": 3}).math_workers == 3
    with pytest.raises(ValueError, match="unknown ServerConfig keys: math_wrokers"):
        ServerConfig.from_dict({"math_wrokers": 3})
    with pytest.raises(ValueError, match="math_timeout_s"):
        ServerConfig(math_timeout_s=60)


@pytest.mark.slow
def test_cli_serve_warns_off_loopback_and_drains_on_sigterm(tmp_path):
    # stderr goes to a file, not a pipe nobody reads while the server runs (a full pipe would
    # block its logging); no sandbox and a short grace keep the drain about the math path.
    stderr = (tmp_path / "stderr.txt").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "verifier_service.cli", "serve", "--address", "0.0.0.0:0", "--workers", "1",
         "--insecure-allow-remote", "--sandbox", "off", "--grace", "2"],
        stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = process.stdout.readline()
        port = int(re.search(r"listening on \S+:(\d+)", line).group(1))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            result = pb_grpc.VerifierStub(channel).CheckMath(pb.CheckMathRequest(items=_items(("5", "5"))), timeout=10)
        assert result.results[0].status == S.CORRECT
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        stderr.seek(0)
        assert "WARNING" in stderr.read()
    finally:
        process.kill()
        process.wait()
        stderr.close()
