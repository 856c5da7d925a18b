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


def test_step_scores_to_process_advantages():
    """The recipe's glue: step scores and step ends (chars) -> [B, G, S] tensors -> token advantages."""
    import torch

    from trainer.advantages import ADVANTAGES, AdvantageInput
    from trainer.batches import collate
    from trainer.grpo import step_tensors
    from trainer.rewards import Scored
    from trainer.rollout import Completion, Group
    from trainer.tiny import build_tokenizer
    tok = build_tokenizer()
    texts = ["1+1=2\n#### 2", "1+1=3\n#### 3"]
    completions = tuple(Completion(tuple(tok(t, add_special_tokens=False).input_ids), t, (0.0,) * len(t), "stop")
                        for t in texts)
    groups = [Group("q", (5, 6), completions)]
    steps = [split_steps(t, "\n") for t in texts]
    scored = Scored(rewards=[1.0, 0.0], valid=[True, True], step_scores=[(1.0, 1.0), (0.0, 0.0)],
                    step_char_ends=[tuple(e for _, e in s) for s in steps])
    r = collate(groups, tok.pad_token_id)
    step_rewards, step_ends = step_tensors(scored, groups, tok, r.mask.shape[1])
    assert step_ends.tolist() == [[[4, 11], [4, 11]]]          # "1+1=2" ends at char 4; "#### 2" at 11
    adv = ADVANTAGES["process"](AdvantageInput(torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool),
                                               r.mask, step_rewards, step_ends))
    # steps {1, 1, 0, 0} normalise to {+1, +1, -1, -1}: tokens of step 1 get 2 (both steps at/after), step 2 get 1
    assert adv.tokens[0, :5].tolist() == pytest.approx([2.0] * 5, abs=1e-4)
    assert adv.tokens[0, 5:12].tolist() == pytest.approx([1.0] * 7, abs=1e-4)  # the newline belongs to step 2
    assert adv.tokens[1, :5].tolist() == pytest.approx([-2.0] * 5, abs=1e-4)
