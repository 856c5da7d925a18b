"""Advantage functions against hand-computed values; zero-variance groups filtered by std."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.advantages import ADVANTAGES, AdvantageInput

EPS = 1e-6


def inp(rewards, valid=None, T=2, **kw) -> AdvantageInput:
    r = torch.tensor(rewards, dtype=torch.float32)
    v = torch.ones_like(r, dtype=torch.bool) if valid is None else torch.tensor(valid)
    return AdvantageInput(r, v, torch.ones(r.numel(), T), eps=EPS, **kw)


# (name, rewards [B, G], expected per-completion advantage [B*G]); population std
TABLE = [
    ("grpo", [[0.0, 1.0]], [-1.0, 1.0]),
    ("grpo", [[1.0, 0.0, 0.0, 0.0]], [3 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)]),
    ("grpo", [[0.0, 2.0], [1.0, 1.0]], [-1.0, 1.0, 0.0, 0.0]),
    ("dr_grpo", [[0.0, 1.0, 1.0, 1.0]], [-0.75, 0.25, 0.25, 0.25]),
    ("dr_grpo", [[0.0, 2.0], [1.0, 1.0]], [-1.0, 1.0, 0.0, 0.0]),
    # batch std of {0, 2, 1, 1} = sqrt(0.5)
    ("grpo_batch_std", [[0.0, 2.0], [1.0, 1.0]], [-1 / math.sqrt(0.5), 1 / math.sqrt(0.5), 0.0, 0.0]),
]


@pytest.mark.parametrize("name,rewards,expected", TABLE)
def test_outcome_table(name, rewards, expected):
    adv = ADVANTAGES[name](inp(rewards))
    assert adv.tokens[:, 0].tolist() == pytest.approx(expected, abs=1e-4)
    assert torch.equal(adv.tokens[:, 0], adv.tokens[:, 1])  # the same for every token


def test_advantage_zero_on_padding():
    i = inp([[0.0, 1.0]], T=3)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = ADVANTAGES["grpo"](AdvantageInput(i.rewards, i.valid, mask, eps=EPS))
    assert torch.allclose(adv.tokens, torch.tensor([[-1.0, -1.0, 0.0], [1.0, 0.0, 0.0]]), atol=1e-4)


def test_zero_std_filtered_by_std_not_mean():
    # all-0.5 has mean 0.5 (neither 0 nor 1) and still no signal; {0,1} has signal
    adv = ADVANTAGES["grpo"](inp([[0.5, 0.5], [0.0, 1.0], [1.0, 1.0]]))
    assert adv.zero_std.tolist() == [True, False, True]
    assert adv.keep(True).tolist() == [False, False, True, True, False, False]
    assert adv.keep(False).all()


def test_excluded_rewards_take_no_part():
    # the 5.0 is excluded (could not judge): stats over {0, 1} only, its advantage 0
    adv = ADVANTAGES["grpo"](inp([[0.0, 1.0, 5.0]], valid=[[True, True, False]]))
    assert adv.tokens[:, 0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)
    assert adv.valid.tolist() == [True, True, False]
    # one valid member left: no relative signal
    assert ADVANTAGES["grpo"](inp([[0.0, 1.0]], valid=[[True, False]])).zero_std.tolist() == [True]


def test_process_supervision_by_hand():
    # one group, two completions of 4 tokens; steps end at tokens (1, 3) and (2,)
    nan = float("nan")
    step_rewards = torch.tensor([[[1.0, 0.0], [0.0, nan]]])            # [B=1, G=2, S=2]
    step_ends = torch.tensor([[[1, 3], [2, -1]]])
    i = inp([[0.0, 0.0]], T=4, step_rewards=step_rewards, step_ends=step_ends)
    adv = ADVANTAGES["process"](i)
    # group steps {1, 0, 0}: mean 1/3, std sqrt(2)/3 -> normalised {sqrt2, -1/sqrt2, -1/sqrt2}
    hi, lo = 2 / math.sqrt(2), -1 / math.sqrt(2)
    expected = [[hi + lo, hi + lo, lo, lo],   # tokens 0-1: both steps end at/after; 2-3: only the second
                [lo, lo, lo, 0.0]]            # token 3 is after the last step's end
    assert torch.allclose(adv.tokens, torch.tensor(expected), atol=1e-4)
    assert not adv.zero_std.item()


def test_outcome_process_mix():
    step_rewards = torch.tensor([[[1.0], [0.0]]])
    step_ends = torch.tensor([[[0], [0]]])
    i = inp([[1.0, 0.0]], T=1, step_rewards=step_rewards, step_ends=step_ends, process_weight=0.5)
    adv = ADVANTAGES["outcome_process"](i)
    assert adv.tokens[:, 0].tolist() == pytest.approx([1.0 + 0.5, -1.0 - 0.5], abs=1e-4)


def test_process_needs_step_rewards():
    with pytest.raises(ValueError, match="step rewards"):
        ADVANTAGES["process"](inp([[0.0, 1.0]]))
