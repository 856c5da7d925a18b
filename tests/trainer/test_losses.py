"""Loss parts against hand-computed values: clipping at both bounds, aggregations, KL, IS cap."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import (AGGREGATIONS, IS_CORRECTIONS, BatchScale, GRPOLoss, LossSettings, kl_k1, kl_k3,
                            ppo_clip, token_logprobs)

log = math.log


# (ratio, advantage, expected per-token loss, clipped_low, clipped_high) with eps_low 0.2, eps_high 0.28
CLIP_TABLE = [
    (1.0, 1.0, -1.0, False, False),
    (1.5, 1.0, -1.28, False, True),     # A > 0: capped at 1 + eps_high
    (0.5, 1.0, -0.5, False, False),     # A > 0, ratio low: unclipped (min picks ratio * A)
    (0.5, -1.0, 0.8, True, False),      # A < 0: floored at 1 - eps_low
    (1.5, -1.0, 1.5, False, False),     # A < 0, ratio high: unclipped (pessimistic)
    (1.1, 2.0, -2.2, False, False),     # inside the range
]


@pytest.mark.parametrize("ratio,adv,expected,low,high", CLIP_TABLE)
def test_ppo_clip_table(ratio, adv, expected, low, high):
    logp = torch.tensor([[log(ratio)]], requires_grad=True)
    terms = ppo_clip(logp, torch.zeros(1, 1), torch.tensor([[adv]]), 0.2, 0.28)
    assert terms.loss.item() == pytest.approx(expected, rel=1e-5)
    assert (terms.clipped_low.item(), terms.clipped_high.item()) == (low, high)
    terms.loss.sum().backward()
    assert (logp.grad.item() == 0.0) == (low or high)  # an active clip stops the gradient


def test_aggregations_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    scale = BatchScale(tokens=4, sequences=2, max_tokens=5)
    assert AGGREGATIONS["token"](loss, mask, scale).item() == pytest.approx(10 / 4)
    assert AGGREGATIONS["sequence"](loss, mask, scale).item() == pytest.approx((6 / 3 + 4 / 1) / 2)
    assert AGGREGATIONS["constant"](loss, mask, scale).item() == pytest.approx(10 / (2 * 5))


def test_kl_k3_nonnegative_and_zero_at_equality():
    torch.manual_seed(0)
    logp, ref = torch.randn(64, 16), torch.randn(64, 16)
    assert (kl_k3(logp, ref) >= 0).all()
    assert torch.equal(kl_k3(logp, logp), torch.zeros_like(logp))
    assert kl_k3(torch.tensor([0.0]), torch.tensor([log(2.0)])).item() == pytest.approx(2 - log(2) - 1)
    assert kl_k1(torch.tensor([log(2.0)]), torch.tensor([0.0])).item() == pytest.approx(log(2))
    # clamped: a huge log-ratio gives a finite value
    assert torch.isfinite(kl_k3(torch.tensor([-1000.0]), torch.tensor([0.0]))).all()


def test_is_weight_capped_token_and_sequence():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    engine = torch.tensor([[log(0.5), log(0.1), 0.0]])  # token ratios 2, 10 (capped at 3), 1
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert IS_CORRECTIONS["token"](old, engine, mask, 3.0).tolist()[0] == pytest.approx([2.0, 3.0, 0.0])
    # sequence ratio 2 * 10 = 20 -> 3, on every real token
    assert IS_CORRECTIONS["sequence"](old, engine, mask, 3.0).tolist()[0] == pytest.approx([3.0, 3.0, 0.0])
    assert IS_CORRECTIONS["none"](old, engine, mask, 3.0).tolist()[0] == [1.0, 1.0, 1.0]


def test_loss_with_kl_and_is_weight():
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)
    ref = torch.tensor([[log(2.0), 0.0]])
    engine = torch.tensor([[log(0.5), 0.0]])                # IS weight 2 on token 0
    adv = torch.tensor([[1.0, 1.0]])
    mask = torch.ones(1, 2)
    loss_fn = GRPOLoss(LossSettings(beta=0.1, kl="k3", aggregation="token", is_level="token", is_cap=3.0))
    loss, stats = loss_fn(logp, logp.detach(), engine, ref, adv, mask, BatchScale(2, 1, 2))
    k3 = 2 - log(2) - 1
    assert loss.item() == pytest.approx(((-1 * 2 + 0.1 * k3) + (-1 * 1)) / 2)
    assert float(stats["kl"]) == pytest.approx(k3)


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="aggregation"):
        GRPOLoss(LossSettings(aggregation="mean"))


def test_token_logprobs_temperature_and_entropy():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]]])      # [1, 2, V=4]
    logp, ent = token_logprobs(logits, torch.tensor([[1, 0]]), 2.0, entropy=True)
    assert logp[0, 0].item() == pytest.approx(-log(4))
    z = math.e + 3                                                              # logits / 2 = [1, 0, 0, 0]
    assert logp[0, 1].item() == pytest.approx(1 - log(z))
    assert ent[0, 0].item() == pytest.approx(log(4))
    assert token_logprobs(logits, torch.tensor([[1, 0]]), 1.0)[1] is None
