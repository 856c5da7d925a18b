"""Rewards through a real verifier server: weights, per-check statuses, and checks that could not
judge (the steps check without a PRM answers UNAVAILABLE) excluded or penalised, never a silent 0."""

from __future__ import annotations

import pytest

from tasks.types import Problem
from trainer.rewards import RewardSettings, score_completions, split_steps, step_token_ends
from verifier_service.client import VerifierClient

PROBLEMS = [Problem(id="a", prompt="2+2?", gold="4"), Problem(id="b", prompt="3+4?", gold="7", checks=("math", "steps"))]


@pytest.fixture(scope="module")
def client(verifier_address):
    with VerifierClient(verifier_address) as c:
        yield c


def test_math_rewards_and_statuses(client):
    scored = score_completions(client, [PROBLEMS[0]] * 3, ["4", "5", "\\boxed{4}"], RewardSettings(math=2.0))
    assert scored.rewards == [2.0, 0.0, 2.0]
    assert scored.valid == [True, True, True]
    assert scored.statuses["math"] == {"CORRECT": 2, "INCORRECT": 1}
    assert scored.check_means["math"] == pytest.approx(2 / 3)
    assert scored.unjudged == 0


@pytest.mark.parametrize("policy,expected_reward,expected_valid", [("exclude", 0.0, False), ("penalize", -1.0, True)])
def test_unjudged_is_counted_and_excluded_or_penalised(client, policy, expected_reward, expected_valid):
    settings = RewardSettings(math=1.0, steps=1.0, unjudged=policy, penalty=-1.0)
    scored = score_completions(client, PROBLEMS, ["4", "3 + 4 = 7\n#### 7"], settings)
    assert scored.unjudged == 1                          # no PRM on the server: steps not judged
    assert scored.statuses["steps"] == {"UNAVAILABLE": 1}
    assert scored.rewards == [1.0, expected_reward]
    assert scored.valid == [True, expected_valid]


def test_split_steps_and_token_ends():
    from trainer.tiny import build_tokenizer
    text = "1 + 2 = 3\n\n3 * 2 = 6\n#### 6\n"
    steps = split_steps(text, "\n")
    assert [s for s, _ in steps] == ["1 + 2 = 3", "3 * 2 = 6", "#### 6"]
    assert [text[:e].endswith(s) for s, e in steps] == [True] * 3
    tok = build_tokenizer()
    ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert step_token_ends(ids, [e for _, e in steps], tok) == [e - 1 for _, e in steps]  # char-level: 1 token a char
