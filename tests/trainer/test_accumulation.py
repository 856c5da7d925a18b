"""Gradient accumulation: one micro-batch of 8 and eight of 1 give the same gradient, for every
aggregation (the loss divides by totals of the optimizer-step batch, never of the micro-batch)."""

from __future__ import annotations

import pytest
import torch

from trainer.grpo import Rollouts, accumulate_gradients, collate, no_grad_logprobs
from trainer.losses import AGGREGATIONS, BatchScale, GRPOLoss, LossSettings
from trainer.rollout import Completion, Group


def rollouts(vocab: int, pad: int) -> tuple[Rollouts, torch.Tensor]:
    """2 prompts x 4 completions of different lengths (some prompts and completions shorter)."""
    g = torch.Generator().manual_seed(0)
    groups = []
    for b, plen in enumerate((5, 3)):
        prompt = tuple(torch.randint(5, vocab, (plen,), generator=g).tolist())
        comps = []
        for length in (6, 2, 4, 1):
            ids = tuple(torch.randint(5, vocab, (length,), generator=g).tolist())
            comps.append(Completion(ids, "", tuple((-torch.rand(length, generator=g)).tolist()), "stop"))
        groups.append(Group(f"p{b}", prompt, tuple(comps)))
    r = collate(groups, pad)
    adv = torch.randn(r.mask.shape, generator=g) * r.mask
    return r, adv


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_one_by_eight_equals_eight_by_one(tiny_dir, aggregation):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    model.train()
    r, adv = rollouts(model.config.vocab_size, 1)
    r = Rollouts(*(t.double() if t.is_floating_point() else t for t in r._fields()))
    adv = adv.double()
    # old log-probs a little off the current ones, so ratios differ from 1 and some clip
    old = no_grad_logprobs(model, r, 1.0, 8)[0] + 0.1 * torch.randn(r.mask.shape, dtype=torch.float64) * r.mask
    ref = old - 0.05 * r.mask
    loss_fn = GRPOLoss(LossSettings(aggregation=aggregation, beta=0.1, is_level="token"))
    part = torch.arange(8)
    scale = BatchScale(tokens=float(r.mask.sum()), sequences=8.0, max_tokens=8)

    grads, losses = [], []
    for micro in (8, 1, 3):  # 3: a last micro-batch of 2 (no divisibility needed)
        model.zero_grad(set_to_none=True)
        losses.append(accumulate_gradients(model, loss_fn, r, old, ref, adv, part, micro, scale, 1.0, {}))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0
    for g, loss in zip(grads[1:], losses[1:]):
        assert loss == pytest.approx(losses[0], rel=1e-9, abs=1e-12)
        torch.testing.assert_close(g, grads[0], rtol=1e-7, atol=1e-10)
