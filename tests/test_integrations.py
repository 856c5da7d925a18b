"""Trainer adapters (TRL, verl, OpenRLHF) through the real client against a server on port 0.

Answers are bare numbers so the tests hold for any grader (they test the adapters, not
equivalence). The not-judged path uses a scripted servicer that answers TIMEOUT, since
no input makes a real grader time out deterministically.
"""

from __future__ import annotations

import asyncio
import json
from concurrent import futures

import grpc
import pytest

from verifier_service import integrations
from verifier_service.config import ServerConfig
from verifier_service.integrations import (
    completion_text, make_openrlhf_reward_func, make_verl_batch_compute_score, make_verl_compute_score, trl_reward,
    trl_reward_async,
)
from verifier_service.proto import verifier_pb2 as pb
from verifier_service.proto import verifier_pb2_grpc as pbg
from verifier_service.server import create_server


@pytest.fixture(scope="module")
def address():
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1))
    yield f"127.0.0.1:{port}"
    server.stop(None)


class TimesOut(pbg.VerifierServicer):
    """A gold of "slow" comes back TIMEOUT (not judged); the rest compare as strings."""

    def CheckMath(self, request, context):
        return pb.CheckMathResponse(results=[
            pb.MathResult(id=i.id, status="TIMEOUT", judged=False) if i.gold == "slow" else
            pb.MathResult(id=i.id, status="CORRECT" if i.response == i.gold else "INCORRECT", judged=True,
                          correct=i.response == i.gold, score=float(i.response == i.gold))
            for i in request.items])

    def GetServerInfo(self, request, context):
        return pb.ServerInfo(limits=pb.Limits(max_items_per_request=64))


@pytest.fixture
def timeout_address():
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pbg.add_VerifierServicer_to_server(TimesOut(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize("completion, text", [
    ("42", "42"),
    ([{"role": "assistant", "content": "42"}], "42"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
      {"role": "user", "content": "again"}, {"role": "assistant", "content": "b"}], "b"),
    ([{"role": "assistant", "content": [{"type": "text", "text": "4"}, {"type": "image"},
                                        {"type": "text", "text": "2"}]}], "42"),
    ([{"role": "user", "content": "no reply"}], ""),
])
def test_completion_text(completion, text):
    assert completion_text(completion) == text


def test_trl_reward_strings_and_chat(address):
    reward = trl_reward(address)
    assert reward.__name__ == "verirl_math"
    scores = reward(prompts=["p"] * 3, completions=["42", [{"role": "assistant", "content": "7"}], "41"],
                    completion_ids=None, answer=["42", "7", "42"], other_column=[1, 2, 3])
    assert scores == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="'answer'"):
        reward(prompts=["p"], completions=["1"], solution=["1"])
    reward.client.close()


def test_trl_reward_code_kind(address):
    reward = trl_reward(address, kind="code")
    tests = {"stdio": {"cases": [{"input": "", "output": "1"}]}}
    scores = reward(["p", "p"], ["```python\nprint(1)\n```", "```python\nprint(2)\n```"],
                    tests=[tests, json.dumps(tests)], language=["python", "python"])
    # A server without the sandbox answers UNAVAILABLE (not judged): None, never a silent 0.
    sandboxed = "code:python" in reward.client.server_info().capabilities
    assert scores == ([1.0, 0.0] if sandboxed else [None, None])
    reward.client.close()


def test_trl_reward_unjudged_is_none_or_zero_by_choice(timeout_address):
    for on_unjudged, expected in (("none", [1.0, None, 0.0]), ("zero", [1.0, 0.0, 0.0])):
        reward = trl_reward(timeout_address, gold_column="solution", on_unjudged=on_unjudged)
        assert reward(["p"] * 3, ["1", "1", "2"], solution=["1", "slow", "3"]) == expected
        reward.client.close()
    with pytest.raises(ValueError):
        trl_reward(timeout_address, on_unjudged="skip")


def test_trl_reward_async(address):
    async def main():
        reward = trl_reward_async(address)
        try:
            return await reward(["p", "p"], ["3", "4"], answer=["3", "5"])
        finally:
            await reward.client.close()

    assert asyncio.run(main()) == [1.0, 0.0]


def test_verl_compute_score(address, monkeypatch):
    score = make_verl_compute_score(address)
    assert score("openai/gsm8k", "12", "12") == {"score": 1.0, "judged": 1.0, "status": "CORRECT"}
    assert score("openai/gsm8k", "13", 12)["score"] == 0.0
    batch = make_verl_batch_compute_score(address)
    assert [r["score"] for r in batch(["a", "b"], ["1", "2"], ["1", "3"], [None, None])] == [1.0, 0.0]
    monkeypatch.setenv(integrations.ADDRESS_ENV, address)
    monkeypatch.setattr(integrations, "_DEFAULTS", {})
    assert integrations.compute_score("src", "5", "5", extra_info={"split": "test"})["status"] == "CORRECT"


def test_verl_unjudged_scores_zero_and_says_so(timeout_address):
    assert make_verl_compute_score(timeout_address)("src", "1", "slow") == {
        "score": 0.0, "judged": 0.0, "status": "TIMEOUT"}


def test_openrlhf_reward_func_strips_prompt(address, monkeypatch):
    reward_func = make_openrlhf_reward_func(address)
    out = reward_func(queries=["Q: 2+2? A: 4", "Q: 1+1? A: 3", "9"], prompts=["Q: 2+2? A: ", "Q: 1+1? A: ", "x"],
                      labels=["4", "2", "9"])  # the last query lacks its prompt: graded whole
    rewards = [float(r) for r in out["rewards"]]
    assert rewards == [1.0, 0.0, 1.0]
    assert [float(s) for s in out["scores"]] == rewards
    assert [float(j) for j in out["extra_logs"]["verirl_judged"]] == [1.0, 1.0, 1.0]
    monkeypatch.setenv(integrations.ADDRESS_ENV, address)
    monkeypatch.setattr(integrations, "_DEFAULTS", {})
    assert [float(r) for r in integrations.reward_func(["p1"], ["p"], ["1"])["rewards"]] == [1.0]
