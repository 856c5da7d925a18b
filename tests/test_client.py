"""verifier_service.client through real gRPC on loopback.

Fault-injection tests (retries, request ids, dead replicas) use a small scripted
servicer so a test can say "fail the next two calls with RESOURCE_EXHAUSTED" and
count what arrived; the tests marked `real_server` run the project's server.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from concurrent import futures

import grpc
import pytest

from verifier_service.client import (
    AsyncVerifierClient, MathItem, RetryPolicy, VerifierClient, VerifierCallError, parse_addresses,
)
from verifier_service.config import ServerConfig
from verifier_service.proto import verifier_pb2 as pb
from verifier_service.proto import verifier_pb2_grpc as pbg
from verifier_service.server import create_server

FAST = RetryPolicy(max_attempts=6, initial_backoff_s=0.02, max_backoff_s=0.2, dead_cooldown_s=0.5)


class Scripted(pbg.VerifierServicer):
    """Answers math by exact string match; can be told to fail the next calls with a code."""

    def __init__(self, max_items: int = 4, delay_s: float = 0.0):
        self.max_items = max_items
        self.delay_s = delay_s
        self.fail: list[grpc.StatusCode] = []
        self.request_ids: list[str] = []
        self.batch_sizes: list[int] = []
        self.lock = threading.Lock()

    def _maybe_fail(self, context):
        with self.lock:
            code = self.fail.pop(0) if self.fail else None
        if code is not None:
            context.abort(code, f"scripted {code.name}")

    def CheckMath(self, request, context):
        with self.lock:
            self.request_ids.append(request.request_id)
            self.batch_sizes.append(len(request.items))
        self._maybe_fail(context)
        if len(request.items) > self.max_items:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"items: {len(request.items)} > {self.max_items}")
        time.sleep(self.delay_s)
        return pb.CheckMathResponse(results=[self._math(item) for item in request.items])

    @staticmethod
    def _math(item):
        ok = item.response.strip() == item.gold.strip()
        return pb.MathResult(id=item.id, status="CORRECT" if ok else "INCORRECT", judged=True, correct=ok,
                             score=float(ok), extracted=item.response, reason=f"precision={item.options.precision}")

    def RunCode(self, request, context):
        return pb.RunCodeResponse(results=[pb.CodeResult(id=i.id, status="UNAVAILABLE") for i in request.items])

    def GetServerInfo(self, request, context):
        self._maybe_fail(context)
        return pb.ServerInfo(version="scripted", capabilities=["math"],
                             limits=pb.Limits(max_items_per_request=self.max_items))

    def Verify(self, request_iterator, context):
        for request in request_iterator:
            which = request.WhichOneof("item")
            if which == "math":
                yield pb.VerifyResponse(math=self._math(request.math))
            else:
                yield pb.VerifyResponse(code=pb.CodeResult(id=request.code.id, status="UNAVAILABLE"))


def start(servicer, port: int = 0):
    server = grpc.server(futures.ThreadPoolExecutor(8))
    pbg.add_VerifierServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, port


@pytest.fixture
def scripted():
    servicer = Scripted()
    server, port = start(servicer)
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def items(n: int):
    return [MathItem(id=str(i), response=str(i), gold=str(i if i % 3 else -1)) for i in range(n)]


def test_parse_addresses():
    assert parse_addresses("a:1, b:2,") == ("a:1", "b:2")
    assert parse_addresses(["a:1"]) == ("a:1",)
    with pytest.raises(ValueError):
        parse_addresses(" , ")


def test_chunks_larger_batch_in_order(scripted):
    servicer, address = scripted
    with VerifierClient(address, retry=FAST) as client:
        results = client.check_math(items(11))
    assert [r.id for r in results] == [str(i) for i in range(11)]
    assert [r.correct for r in results] == [bool(i % 3) for i in range(11)]
    assert sorted(servicer.batch_sizes) == [3, 4, 4]  # max_items learned from GetServerInfo
    assert len(set(servicer.request_ids)) == 3
    assert results[1].status == "CORRECT" and results[0].status == "INCORRECT" and results[0].judged


def test_chunks_by_bytes_too(scripted):
    servicer, address = scripted
    long = [MathItem(str(i), "x" * 3000, "x" * 3000) for i in range(4)]
    with VerifierClient(address, max_items_per_request=4, max_message_bytes=30_000) as client:
        assert all(r.correct for r in client.check_math(long))
    assert servicer.batch_sizes == [2, 2]  # 4 items of ~6 kB against a 15 kB budget per request


def test_items_as_dicts_and_request_options(scripted):
    _, address = scripted
    with VerifierClient(address, max_items_per_request=8, retry=FAST) as client:
        [own, default] = client.check_math(
            [{"id": 7, "response": "1", "gold": "1", "options": {"precision": 3}},
             {"id": "b", "response": "1", "gold": "2"}], options={"precision": 2})
    assert own.id == "7" and own.reason == "precision=3"
    assert default.reason == "precision=0"  # request-level options travel in the request, not the item
    assert client.check_math([]) == []


def test_bad_item_is_a_value_error_naming_the_field(scripted):
    _, address = scripted
    with VerifierClient(address, max_items_per_request=8) as client:
        with pytest.raises(ValueError, match="golden"):
            client.check_math([{"id": "1", "response": "x", "golden": "y"}])
        with pytest.raises(ValueError, match="precision"):
            client.check_math([MathItem("1", "x", "y", options={"precision": "six"})])


def test_retries_resource_exhausted_with_same_request_id(scripted):
    servicer, address = scripted
    servicer.fail = [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    with VerifierClient(address, max_items_per_request=8, retry=FAST) as client:
        assert len(client.check_math(items(3))) == 3
    assert len(servicer.request_ids) == 3 and len(set(servicer.request_ids)) == 1


def test_invalid_argument_is_not_retried(scripted):
    servicer, address = scripted
    servicer.fail = [grpc.StatusCode.INVALID_ARGUMENT] * 3
    with VerifierClient(address, max_items_per_request=8, retry=FAST) as client:
        with pytest.raises(VerifierCallError) as info:
            client.check_math(items(2))
    assert info.value.code == "INVALID_ARGUMENT" and info.value.attempts == 1
    assert len(servicer.request_ids) == 1


def test_retries_are_bounded(scripted):
    servicer, address = scripted
    servicer.fail = [grpc.StatusCode.RESOURCE_EXHAUSTED] * 100
    with VerifierClient(address, max_items_per_request=8, retry=FAST) as client:
        with pytest.raises(VerifierCallError) as info:
            client.check_math(items(2))
    assert info.value.code == "RESOURCE_EXHAUSTED" and info.value.attempts == FAST.max_attempts


def test_deadline_is_enforced():
    servicer = Scripted(delay_s=1.0)
    server, port = start(servicer)
    try:
        with VerifierClient(f"127.0.0.1:{port}", max_items_per_request=8, retry=FAST) as client:
            start_t = time.monotonic()
            with pytest.raises(VerifierCallError) as info:
                client.check_math(items(1), timeout=0.2)
            assert info.value.code == "DEADLINE_EXCEEDED"
            assert time.monotonic() - start_t < 0.8
    finally:
        server.stop(None)


def test_round_robin_skips_dead_address(scripted):
    servicer, address = scripted
    dead = f"127.0.0.1:{free_port()}"
    with VerifierClient([dead, address], max_items_per_request=8, retry=FAST) as client:
        started = time.monotonic()
        for _ in range(6):
            assert len(client.check_math(items(2))) == 2
        elapsed = time.monotonic() - started
    assert len(servicer.request_ids) == 6
    assert elapsed < 1.0  # the dead one costs a refused connection, never a backoff sleep


def test_round_robin_spreads_over_live_addresses():
    a, b = Scripted(), Scripted()
    (sa, pa), (sb, pb_) = start(a), start(b)
    try:
        with VerifierClient(f"127.0.0.1:{pa},127.0.0.1:{pb_}", max_items_per_request=8) as client:
            for _ in range(6):
                client.check_math(items(1))
        assert len(a.request_ids) == 3 and len(b.request_ids) == 3
    finally:
        sa.stop(None)
        sb.stop(None)


def test_unavailable_checker_is_mapped_per_item(scripted):
    _, address = scripted
    with VerifierClient(address, max_items_per_request=8) as client:
        [result] = client.run_code([{"id": "c1", "language": "python", "response": "print(1)",
                                     "tests": {"stdio": {"cases": [{"input": "", "output": "1"}]}}}])
    assert result.status == "UNAVAILABLE" and not result.judged and result.tests == ()


def test_verify_stream_mixed_kinds(scripted):
    _, address = scripted
    stream_items = [MathItem("m1", "2", "2"), {"kind": "code", "id": "c1", "response": "x"},
                    {"id": "m2", "response": "1", "gold": "2"}]
    with VerifierClient(address) as client:
        results = {r.id: r for r in client.verify_stream(iter(stream_items))}
        assert results["m1"].correct and results["c1"].status == "UNAVAILABLE" and not results["m2"].correct
        with pytest.raises(ValueError, match="unknown kind"):
            list(client.verify_stream([MathItem("m1", "2", "2"), {"kind": "poem", "id": "p"}]))


def test_verify_stream_stopped_early_is_cancelled(scripted):
    _, address = scripted
    endless = (MathItem(str(i), "1", "1") for i in itertools.count())
    with VerifierClient(address) as client:
        stream = client.verify_stream(endless)
        assert next(stream).correct
        stream.close()  # must cancel the call, not wait for an endless input
        assert client.check_math(items(1))[0].id == "0"


def test_server_info(scripted):
    _, address = scripted
    with VerifierClient(address) as client:
        info = client.server_info()
    assert info.version == "scripted" and info.capabilities == ("math",)
    assert info.limits.max_items_per_request == 4


def test_async_client_chunks_retries_and_streams(scripted):
    servicer, address = scripted
    servicer.fail = [grpc.StatusCode.UNAVAILABLE]

    async def main():
        async with AsyncVerifierClient(address, retry=FAST) as client:
            results = await client.check_math(items(9))
            streamed = [r.id async for r in client.verify_stream(items(3))]
            return results, streamed

    results, streamed = asyncio.run(main())
    assert [r.id for r in results] == [str(i) for i in range(9)]
    assert sorted(streamed) == ["0", "1", "2"]


def test_real_server_batches_kinds_and_stream():
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1, max_items_per_request=4,
                                              sandbox="off"))
    try:
        with VerifierClient(f"127.0.0.1:{port}") as client:
            results = client.check_math([MathItem(str(i), f"#### {i}", str(i % 5)) for i in range(10)])
            assert [r.id for r in results] == [str(i) for i in range(10)]
            assert [r.correct for r in results] == [i < 5 for i in range(10)]
            assert all(r.judged and r.status in ("CORRECT", "INCORRECT") for r in results)
            info = client.server_info()
            assert info.limits.max_items_per_request == 4 and "math" in info.capabilities
            [code] = client.run_code([{"id": "c", "language": "python", "response": "print(1)"}])
            [steps] = client.score_steps([{"id": "s", "problem": "p", "steps": ["a"]}])
            assert (code.status, code.judged) == ("UNAVAILABLE", False)
            assert (steps.status, steps.judged) == ("UNAVAILABLE", False)
            streamed = {r.id: r for r in client.verify_stream(
                [MathItem("m", "\\boxed{2}", "2"), {"kind": "code", "id": "c", "response": "x"}])}
            assert streamed["m"].correct and streamed["c"].status == "UNAVAILABLE"
            with pytest.raises(VerifierCallError) as info:
                client.check_math([MathItem("x", "1", "1", options={"timeout_s": -1})])
            assert info.value.code == "INVALID_ARGUMENT" and info.value.attempts == 1
    finally:
        server.stop(0)


def test_real_server_restart_on_same_port():
    config = ServerConfig(address="127.0.0.1:0", math_workers=1, sandbox="off")
    server, port = create_server(config)
    retry = RetryPolicy(max_attempts=40, initial_backoff_s=0.05, max_backoff_s=0.3, dead_cooldown_s=0.1)
    restarted = []
    with VerifierClient(f"127.0.0.1:{port}", retry=retry) as client:
        assert client.check_math([MathItem("a", "1", "1")])[0].correct
        server.stop(0)
        same_port = config.replace(address=f"127.0.0.1:{port}")
        timer = threading.Timer(0.3, lambda: restarted.append(create_server(same_port)))
        timer.start()
        try:
            assert [r.correct for r in client.check_math([MathItem("b", "2", "2"), MathItem("c", "2", "3")],
                                                         timeout=20)] == [True, False]
        finally:
            timer.join()
            restarted[0][0].stop(0)


def test_items_built_by_the_constructor_match_parse_dict_and_fall_back_to_it():
    """to_item tries the message constructor first (fast) and ParseDict where it refuses: both give
    the same message, JSON names and integral values keep working, and errors still name the field."""
    from google.protobuf import json_format

    from verifier_service.client_types import KINDS, to_item
    code = {"id": 7, "language": "python", "response": "print(1)",
            "tests": {"stdio": {"cases": [{"input": "", "output": "1\n"}]}},
            "limits": {"cpu_time_s": 1.0, "memory_bytes": 128 << 20}}
    expected = json_format.ParseDict({**code, "id": "7"}, pb.CodeItem())
    assert to_item(KINDS["code"], code) == expected
    # what only ParseDict reads: an int64 as a string or a whole float, a JSON (camelCase) name
    assert to_item(KINDS["code"], {**code, "limits": {"cpu_time_s": 1.0, "memory_bytes": str(128 << 20)}}) == expected
    assert to_item(KINDS["code"], {**code, "limits": {"cpu_time_s": 1.0, "memory_bytes": float(128 << 20)}}) == expected
    math = to_item(KINDS["math"], {"id": "m", "gold": "2", "response": "2", "options": {"goldIsSolution": True}})
    assert math.options.gold_is_solution
    with pytest.raises(ValueError, match="memory_bytes"):
        to_item(KINDS["code"], {**code, "limits": {"memory_bytes": "lots"}})
    with pytest.raises(ValueError, match="surrogate"):
        to_item(KINDS["math"], {"id": "m", "gold": "2", "response": "\ud800"})
