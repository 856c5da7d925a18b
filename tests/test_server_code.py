"""Code through the service: a real server on port 0 with the real sandbox (root, as in CI).

What is checked here is the service's part: validation naming the field, proto <-> verdict
conversion of every field, the bounded code queue (back-pressure, cancellation), the start-up
modes (a sandbox that cannot start answers UNAVAILABLE and says why), and `verirl eval` code
lines. The sandbox's own guarantees are tested in tests/code/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import os
import threading
import time
from pathlib import Path

import grpc
import pytest

from verifier_service import code_backend, evaluate
from verifier_service.cli import build_parser
from verifier_service.code import SandboxUnavailable
from verifier_service.config import ServerConfig
from verifier_service.proto import verifier_pb2 as pb
from verifier_service.proto import verifier_pb2_grpc as pb_grpc
from verifier_service.server import create_server

from ci_rules import require_root

require_root("the sandbox", module=True)

C = pb.CodeResult
CONFIG = ServerConfig(address="127.0.0.1:0", math_workers=1, code_slots=2, max_tests_per_item=8,
                      max_string_bytes=20_000, cache_size=0)
HUMANEVAL = Path(__file__).parent / "fixtures" / "humaneval_slice.jsonl.gz"


@pytest.fixture(scope="module")
def server():
    server, _port = create_server(CONFIG)
    yield server
    server.stop(0)


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.VerifierStub(channel)


def stdio(*cases: tuple[str, str], whitespace: int = 0) -> pb.CodeTests:
    return pb.CodeTests(stdio=pb.StdioTests(cases=[pb.StdioCase(input=i, output=o) for i, o in cases],
                                            whitespace=whitespace))


def py(id_: str, code: str, tests: pb.CodeTests, **fields) -> pb.CodeItem:
    return pb.CodeItem(id=id_, language="python", response=f"Here it is:\n```python\n{code}\n```", tests=tests,
                       **fields)


DOUBLE = "print(int(input()) * 2)"


def test_passing_and_failing_python_with_per_test_outcomes(stub):
    items = [py("ok", DOUBLE, stdio(("2", "4"), ("5", "10"))),
             py("bad", DOUBLE, stdio(("2", "4"), ("3", "7"), ("4", "8"))),
             py("crash", "raise SystemExit(3)", stdio(("", "")))]
    ok, bad, crash = stub.RunCode(pb.RunCodeRequest(items=items), timeout=60).results
    assert (ok.id, ok.status, ok.judged, ok.correct, ok.score, ok.passed, ok.total) == ("ok", C.PASSED, True, True,
                                                                                      1.0, 2, 2)
    assert [(t.index, t.status) for t in ok.tests] == [(0, C.PASSED), (1, C.PASSED)]
    assert ok.extracted == DOUBLE + "\n" and ok.stdout == "10\n" and ok.peak_memory_bytes > 0
    assert ok.cpu_time_s > 0 and ok.elapsed_ms > 0 and not ok.stdout_truncated
    assert (bad.status, bad.judged, bad.correct, bad.passed, bad.total) == (C.FAILED, True, False, 2, 3)
    assert math.isclose(bad.score, 2 / 3)
    assert [t.status for t in bad.tests] == [C.PASSED, C.FAILED, C.PASSED]
    assert "expected '7'" in bad.tests[1].detail and bad.reason == bad.tests[1].detail
    assert crash.status == C.RUNTIME_ERROR and crash.judged and "exit code 3" in crash.reason


def test_cpp_stdio_and_the_other_test_styles(stub, server):
    cpp = pb.CodeItem(id="cpp", language="cpp", extraction=pb.WHOLE,
                      response="#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<'\\n';}",
                      tests=stdio(("1 2", "3"), ("40 2", "42")))
    asserts = py("assert", "def add(a, b):\n    return a + b",
                 pb.CodeTests(assert_code=pb.AssertTests(code="def check(f):\n    assert f(1, 2) == 3\n",
                                                         entry_point="add")))
    call = py("call", "def add(a, b=0):\n    return a + b", pb.CodeTests(call=pb.CallTests(fn="add", cases=[
        pb.CallCase(args_json="[1, 2]", expected_json="3"),
        pb.CallCase(args_json="[1]", kwargs_json='{"b": 5}', expected_json="7")])))
    results = stub.RunCode(pb.RunCodeRequest(items=[cpp, asserts, call]), timeout=120).results
    assert [(r.id, r.status) for r in results] == [("cpp", C.PASSED), ("assert", C.PASSED), ("call", C.FAILED)]
    assert results[0].passed == 2 and "main()" in results[0].extracted
    assert [t.status for t in results[2].tests] == [C.PASSED, C.FAILED] and results[2].score == 0.5


def test_an_infinite_loop_times_out_while_math_is_answered(stub):
    spin = py("spin", "while True:\n    pass", stdio(("", "")), limits=pb.CodeLimits(cpu_time_s=1.0))
    pending = stub.RunCode.future(pb.RunCodeRequest(items=[spin]), timeout=60)
    time.sleep(0.2)
    start = time.monotonic()
    answer = stub.CheckMath(pb.CheckMathRequest(items=[pb.MathItem(id="m", gold="4", response="\\boxed{4}")]),
                            timeout=10).results[0]
    assert answer.status == pb.MathResult.CORRECT and time.monotonic() - start < 1.0
    [result] = pending.result().results
    assert result.status == C.TIMEOUT and result.judged and not result.correct
    assert "CPU time" in result.reason


def test_a_fork_bomb_gets_its_status_and_the_next_item_runs(stub):
    bomb = py("bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
              stdio(("", "")), limits=pb.CodeLimits(cpu_time_s=1.0, wall_time_s=3.0))
    after = py("after", DOUBLE, stdio(("21", "42")))
    bombed, ok = stub.RunCode(pb.RunCodeRequest(items=[bomb, after]), timeout=60).results
    assert bombed.judged and bombed.status in (C.TIMEOUT, C.RUNTIME_ERROR), bombed
    assert ok.status == C.PASSED


def test_verify_stream_mixes_math_and_code(stub):
    requests = [pb.VerifyRequest(code=py("c-ok", DOUBLE, stdio(("1", "2")))),
                pb.VerifyRequest(math=pb.MathItem(id="m-ok", gold="3", response="3")),
                pb.VerifyRequest(code=py("c-bad", DOUBLE, stdio(("1", "3")))),
                pb.VerifyRequest(code=pb.CodeItem(id="c-invalid", language="python", response="x")),
                pb.VerifyRequest(code=pb.CodeItem(id="c-rust", language="rust", response="x", tests=stdio(("", "")))),
                pb.VerifyRequest(math=pb.MathItem(id="m-bad", gold="3", response="4"))]
    responses = list(stub.Verify(iter(requests), timeout=60))
    by_id = {getattr(r, r.WhichOneof("result")).id: getattr(r, r.WhichOneof("result")) for r in responses}
    assert len(responses) == len(requests) == len(by_id)
    assert by_id["c-ok"].status == C.PASSED and by_id["c-bad"].status == C.FAILED
    assert by_id["m-ok"].status == pb.MathResult.CORRECT and by_id["m-bad"].status == pb.MathResult.INCORRECT
    invalid = by_id["c-invalid"]
    assert (invalid.status, invalid.judged) == (C.INVALID_ARGUMENT, False) and invalid.reason.startswith("code.tests:")
    rust = by_id["c-rust"]
    assert (rust.status, rust.judged) == (C.UNAVAILABLE, False) and "'rust' is not run by this server" in rust.reason


def test_code_metrics(server, stub):
    stub.RunCode(pb.RunCodeRequest(items=[py("m", DOUBLE, stdio(("1", "2")))]), timeout=60)
    text = server.metrics.text()
    for needle in ('verirl_items_total{kind="code",status="PASSED"}', 'verirl_item_seconds_bucket{kind="code"',
                   "verirl_code_queue_depth 0.0", "verirl_code_running"):
        assert needle in text, needle


def test_server_info_in_full_mode(stub):
    info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
    assert list(info.capabilities) == ["math", "code:python", "code:cpp"]
    assert (info.sandbox_mode, list(info.sandbox_missing), info.code_slots) == ("full", [], 2)
    limits = info.limits
    assert (limits.code_cpu_time_s, limits.max_code_cpu_time_s) == (2.0, 60.0)
    assert (limits.code_memory_bytes, limits.max_code_memory_bytes) == (256 << 20, 4 << 30)
    assert limits.max_tests_per_item == 8


def item_with(**changes) -> pb.CodeItem:
    item = py("x", DOUBLE, stdio(("1", "2")))
    for path, value in changes.items():
        target, name = item, path
        *parents, name = path.split("__")
        for parent in parents:
            target = getattr(target, parent)
        if isinstance(value, list):
            getattr(target, name).extend(value)
        else:
            setattr(target, name, value)
    return item


NAN = float("nan")


@pytest.mark.parametrize("item, message", [
    (pb.CodeItem(id="x", language="python", response="x"), "items[0].tests: required"),
    (item_with(language=""), "items[0].language: required"),
    (item_with(tests__stdio__cases=[pb.StdioCase()] * 8), "items[0].tests.stdio.cases: 9 cases exceed "
                                                           "max_tests_per_item (8)"),
    (py("x", DOUBLE, stdio()), "items[0].tests.stdio.cases: at least one case"),
    (item_with(limits__cpu_time_s=-1.0), "items[0].limits.cpu_time_s: must be a finite number >= 0"),
    (item_with(limits__wall_time_s=NAN), "items[0].limits.wall_time_s: must be a finite number >= 0"),
    (item_with(limits__memory_bytes=1 << 40), "items[0].limits.memory_bytes: 1099511627776 is over the server's"),
    (item_with(response="x" * 20_001), "items[0].response: exceeds max_string_bytes (20000)"),
    (item_with(extraction=42), "items[0].extraction: not a valid CodeExtraction (42)"),
    (item_with(tests__stdio__whitespace=9), "items[0].tests.stdio.whitespace: not a valid Whitespace"),
    (pb.CodeItem(language="cpp", response="x", tests=pb.CodeTests(assert_code=pb.AssertTests(code="assert 1"))),
     "items[0].tests.assert_code: only stdio tests can run cpp code"),
    (py("x", "", pb.CodeTests(assert_code=pb.AssertTests(entry_point="not a name"))),
     "items[0].tests.assert_code.entry_point: must be a Python identifier"),
    (py("x", "", pb.CodeTests(call=pb.CallTests(fn="f", cases=[pb.CallCase(args_json="[1")]))),
     "items[0].tests.call.cases[0].args_json: not JSON"),
    (py("x", "", pb.CodeTests(call=pb.CallTests(fn="f", cases=[pb.CallCase(kwargs_json="[]")]))),
     "items[0].tests.call.cases[0].kwargs_json: must be a JSON dict"),
    (py("x", "", pb.CodeTests(call=pb.CallTests(fn="1f", cases=[pb.CallCase()]))), "items[0].tests.call.fn"),
])
def test_malformed_code_items_name_the_field(stub, item, message):
    with pytest.raises(grpc.RpcError) as error:
        stub.RunCode(pb.RunCodeRequest(items=[item]), timeout=10)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(message), error.value.details()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


SLEEP = "import time\ntime.sleep(0.5)\nprint(1)"


@pytest.mark.slow
def test_full_code_queue_is_resource_exhausted_and_a_gone_caller_cancels_its_items():
    server, port = create_server(CONFIG.replace(code_slots=1, queue_capacity=3))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VerifierStub(channel)
            sleeper = py("s", SLEEP, stdio(("", "1")))
            busy = stub.RunCode.future(pb.RunCodeRequest(items=[sleeper] * 3), timeout=30)
            wait_for(lambda: server.code.queue.stats()[1] >= 1)  # 2 threads per slot: up to 2 taken, 1+ queued
            with pytest.raises(grpc.RpcError) as error:
                stub.RunCode(pb.RunCodeRequest(items=[sleeper] * 3), timeout=10)
            assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "queue_capacity is 3" in error.value.details()
            assert [r.status for r in busy.result().results] == [C.PASSED] * 3
            # A caller that goes away: its items not yet taken by a thread never run.
            metric = server.metrics.items.labels("code", "PASSED")
            before = metric._value.get()
            with pytest.raises(grpc.RpcError) as error:
                stub.RunCode(pb.RunCodeRequest(items=[sleeper] * 3), timeout=0.2)
            assert error.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            wait_for(lambda: server.code.queue.stats() == (0, 0))
            assert metric._value.get() - before <= 2  # the third was cancelled while queued
    finally:
        server.stop(0)


def fork_server_pids(server) -> list[int]:
    return [slot.process.pid for slot in server.code.runner._slots]


def test_stop_waits_for_a_running_item_and_leaves_no_fork_servers():
    server, port = create_server(CONFIG.replace(code_slots=1))
    pids = fork_server_pids(server)
    assert pids
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        pending = pb_grpc.VerifierStub(channel).RunCode.future(
            pb.RunCodeRequest(items=[py("s", SLEEP, stdio(("", "1")))]), timeout=30)
        wait_for(lambda: server.code.queue.stats()[1] == 1)
        stopper = threading.Thread(target=server.stop, args=(5.0,))
        stopper.start()
        assert pending.result().results[0].status == C.PASSED
        stopper.join(30)
    assert server.wait(0)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("sandbox", ["off", "full-but-unavailable"])
def test_a_server_without_the_sandbox_answers_unavailable_and_says_why(sandbox, monkeypatch, caplog):
    def refuse(self):
        raise SandboxUnavailable("missing protections: seccomp syscall filter (test)")

    if sandbox != "off":
        monkeypatch.setattr(code_backend.CodeRunner, "start", refuse)
    caplog.set_level(logging.INFO, logger="verifier_service.code_backend")
    server, port = create_server(CONFIG.replace(sandbox="off" if sandbox == "off" else "full"))
    try:
        assert server.code is None
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VerifierStub(channel)
            [result] = stub.RunCode(pb.RunCodeRequest(items=[py("c", DOUBLE, stdio(("1", "2")))]), timeout=10).results
            info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5)
    finally:
        server.stop(0)
    assert (result.status, result.judged) == (C.UNAVAILABLE, False)
    assert (info.sandbox_mode, info.code_slots, list(info.capabilities)) == ("off", 0, ["math"])
    assert info.limits.max_code_cpu_time_s == 0
    if sandbox == "off":
        assert "sandbox off" in result.reason and list(info.sandbox_missing) == []
    else:
        assert "could not start" in result.reason and "seccomp syscall filter (test)" in result.reason
        assert ["seccomp syscall filter (test)" in m for m in info.sandbox_missing] == [True]
        [loud] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "CODE SANDBOX NOT STARTED" in loud.getMessage() and "seccomp" in loud.getMessage()


def test_serve_flags_and_config_checks():
    args = build_parser(["serve"]).parse_args(["serve", "--sandbox", "weak", "--code-slots", "3"])
    assert (args.sandbox, args.code_slots) == ("weak", 3)
    assert build_parser(["serve"]).parse_args(["serve"]).sandbox == "full"
    with pytest.raises(ValueError, match="sandbox must be one of full, weak, off"):
        ServerConfig(sandbox="none")
    with pytest.raises(ValueError, match="code_slots"):
        ServerConfig(code_slots=-1)


# ---------------------------------------------------------------------------- verirl eval

def humaneval_lines() -> list[dict]:
    rows = [json.loads(line) for line in gzip.open(HUMANEVAL, "rt")]
    lines = []
    for row in rows:
        good = f"```python\n{row['prompt']}{row['canonical_solution']}\n```"
        broken = f"```python\n{row['prompt']}    return None\n```"
        for tag, response in (("good", good), ("broken", broken)):
            lines.append({"id": f"{row['task_id']}/{tag}", "kind": "code", "language": "python", "response": response,
                          "tests": {"assert": row["test"], "entry_point": row["entry_point"]}})
    return lines


EVAL_LINES = [
    {"id": "stdio", "kind": "code", "language": "python", "response": f"```python\n{DOUBLE}\n```",
     "tests": {"stdio": [{"input": "2", "output": "4"}, {"input": "3", "output": "7"}]}},
    {"id": "tokens", "kind": "code", "language": "python", "response": "print(1,   2)", "extraction": "WHOLE",
     "tests": {"stdio": [{"input": "", "output": "1 2"}], "whitespace": "TOKENS"}, "limits": {"cpu_time_s": 1}},
    {"id": "call", "kind": "code", "language": "python", "response": "```python\ndef f(xs, k=1):\n    return "
     "[x * k for x in xs]\n```", "tests": {"call": {"fn": "f", "cases": [
         {"args": [[1, 2]], "expected": [1, 2]}, {"args": [[1]], "kwargs": {"k": 3}, "expected": [3]}]}}},
    {"id": "math", "response": "\\boxed{2}", "gold": "2"},
]
BAD_LINES = [
    ({"id": "no-tests", "kind": "code", "language": "python", "response": "x"}, "'tests' is missing"),
    ({"id": "two", "kind": "code", "language": "python", "response": "x", "tests": {"stdio": [], "assert": "x"}},
     "'tests' must have exactly one of stdio, assert, call"),
    ({"id": "no-output", "kind": "code", "language": "python", "response": "x", "tests": {"stdio": [{"input": ""}]}},
     "'tests.stdio[0].output' is missing"),
    ({"id": "args", "kind": "code", "language": "python", "response": "x",
      "tests": {"call": {"fn": "f", "cases": [{"args": 1, "expected": 1}]}}}, "'tests.call.cases[0].args' must be"),
    ({"id": "expected", "kind": "code", "language": "python", "response": "x",
      "tests": {"call": {"fn": "f", "cases": [{"args": []}]}}}, "'tests.call.cases[0].expected' is missing"),
    ({"id": "limit", "kind": "code", "language": "python", "response": "x", "tests": {"assert": "assert 1"},
      "limits": {"cpu": 1}}, "'limits.cpu' is not a limit"),
    ({"id": "negative", "kind": "code", "language": "python", "response": "x", "tests": {"assert": "assert 1"},
      "limits": {"cpu_time_s": -1}}, "'limits.cpu_time_s' must be >= 0"),
    ({"id": "language", "kind": "code", "response": "x", "tests": {"assert": "assert 1"}}, "'language' is missing"),
    ({"id": "null", "kind": "code", "language": None, "response": "x", "tests": {"assert": "x"}},
     "'language' is missing"),
    ({"id": "type", "kind": "code", "language": "python", "response": 3, "tests": {"assert": "x"}},
     "'response' must be a string, got int"),
    ({"id": "bool", "kind": "code", "language": "python", "response": "x", "tests": {"assert": "x"},
      "limits": {"cpu_time_s": True}}, "'limits.cpu_time_s' must be a number, got bool"),
    ({"id": "too-many", "kind": "code", "language": "python", "response": "x",
      "tests": {"stdio": [{"output": ""}] * 300}}, "max_tests_per_item (256)"),  # refused by the server
]


def _eval_args(*argv: object) -> argparse.Namespace:
    """`verirl eval`'s arguments through its real parser, so every flag has its default."""
    parser = argparse.ArgumentParser()
    evaluate.add_eval_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def test_verirl_eval_code_lines_with_the_embedded_server(tmp_path, capsys):
    lines = EVAL_LINES + humaneval_lines() + [line for line, _ in BAD_LINES]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = _eval_args(source, "-o", target, "--workers", 1, "--batch-size", 8, "--no-progress", "--timeout", 120)
    assert evaluate.run_eval(args) == 0
    out = {o["id"]: o["result"] for o in map(json.loads, target.read_text().splitlines())}
    assert len(out) == len(lines)
    stdio_ = out["stdio"]
    assert (stdio_["status"], stdio_["passed"], stdio_["total"], stdio_["score"]) == ("FAILED", 1, 2, 0.5)
    assert [t["status"] for t in stdio_["tests"]] == ["PASSED", "FAILED"] and "expected '7'" in stdio_["tests"][1]["detail"]
    assert set(stdio_) == set(evaluate.RESULT_KEYS["code"])
    assert out["tokens"]["status"] == "PASSED" and out["call"]["status"] == "PASSED" and out["call"]["total"] == 2
    assert out["math"]["status"] == "CORRECT"
    for task in {line["id"].rsplit("/", 1)[0] for line in humaneval_lines()}:
        assert out[f"{task}/good"]["status"] == "PASSED", out[f"{task}/good"]
        assert out[f"{task}/broken"]["status"] in ("FAILED", "RUNTIME_ERROR"), out[f"{task}/broken"]
    for line, reason in BAD_LINES:
        result = out[line["id"]]
        assert (result["status"], result["judged"]) == ("INVALID_ARGUMENT", False)
        assert result["reason"].startswith("line ") and reason in result["reason"], result
    summary = capsys.readouterr().out
    assert "PASSED=5" in summary and f"INVALID_ARGUMENT={len(BAD_LINES)}" in summary


def test_eval_starts_the_sandbox_only_for_code_lines(tmp_path, monkeypatch):
    code, plain = tmp_path / "code.jsonl", tmp_path / "math.jsonl"
    code.write_text('{"response": "1", "gold": "1"}\n{"kind": "code", "response": "x"}\n')
    plain.write_text('{"response": "code", "gold": "1", "note": "kind \\"code\\""}\n{bad json "code"\n')
    assert evaluate._has_code_lines(code) and not evaluate._has_code_lines(plain)
    seen = []
    monkeypatch.setattr("verifier_service.server.start_sandbox", lambda config: seen.append(config.sandbox) or (
        None, code_backend.SandboxState("off")))
    for path in (plain, code):
        args = _eval_args(path, "-o", tmp_path / "out.jsonl", "--workers", 1, "--batch-size", 8, "--no-progress",
                          "--timeout", 30)
        assert evaluate.run_eval(args) == 0
    assert seen == ["off", "full"]
