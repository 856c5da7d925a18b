"""Gradient accumulation: one micro-batch of 8 and eight of 1 give the same gradient, for every
aggregation (the loss divides by totals of the optimizer-step batch, never of the micro-batch)."""

from __future__ import annotations

import pytest
import torch

from trainer.batches import (Rollouts, accumulate_gradients, collate, micro_batches, no_grad_logprobs,
                             sequence_logprobs)
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


def test_micro_batches_group_rows_by_length_and_drop_their_padding(tiny_dir):
    """Rows go longest first, similar lengths together, each micro-batch cut to the columns it uses;
    the log-probs are those of the whole padded batch."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    r, _ = rollouts(model.config.vocab_size, 1)  # prompts 5 and 3 tokens; completions 6, 2, 4, 1 in each group
    got = [(mb.rows.tolist(), mb.left, mb.t) for mb in micro_batches(r, torch.arange(8), 3, align=1)]
    # prompt + completion lengths: rows 0-3: 11, 7, 9, 6; rows 4-7: 9, 5, 7, 4 (P = 5, T = 6)
    assert got == [([0, 2, 4], 0, 6), ([1, 6, 3], 0, 4), ([5, 7], 2, 2)]
    # widths 11, 9, 5 rounded up to multiples of 4 on the completion side, past the batch's T = 6 if need be
    aligned = [(mb.left, mb.t) for mb in micro_batches(r, torch.arange(8), 3, align=4)]
    assert aligned == [(0, 7), (0, 7), (2, 5)]
    # align 0: grouped the same way, never cut
    assert [(mb.rows.tolist(), mb.left, mb.t) for mb in micro_batches(r, torch.arange(8), 3, align=0)] == \
        [([0, 2, 4], 0, 6), ([1, 6, 3], 0, 6), ([5, 7], 0, 6)]
    assert [mb.rows.tolist() for mb in micro_batches(r, torch.tensor([7, 5]), 8)] == [[5, 7]]
    assert micro_batches(r, torch.arange(0), 8) == []
    r = Rollouts(*(t.double() if t.is_floating_point() else t for t in r._fields()))
    with torch.no_grad():
        whole = sequence_logprobs(model, r, 1.0)[0]
    for micro in (3, 8):  # at the default alignment (16) every micro-batch is extended past T
        torch.testing.assert_close(no_grad_logprobs(model, r, 1.0, micro)[0], whole, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("is_level", ["token", "sequence"])
def test_on_policy_update_uses_its_own_forward_as_the_old_log_probs(tiny_dir, is_level):
    """old_logp None (one optimizer step per batch): the same loss, gradient and metric sums as the
    separate no-grad pass at the same weights, and the entropies of that pass."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    r, adv = rollouts(model.config.vocab_size, 1)
    r = Rollouts(*(t.double() if t.is_floating_point() else t for t in r._fields()))
    adv = adv.double()
    old, entropy = no_grad_logprobs(model, r, 0.7, 8)
    loss_fn = GRPOLoss(LossSettings(is_level=is_level, is_cap=2.0))
    part = torch.arange(8)
    scale = BatchScale(tokens=float(r.mask.sum()), sequences=8.0, max_tokens=8)
    runs = []
    for given in (old, None):
        model.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        loss = accumulate_gradients(model, loss_fn, r, given, None, adv, part, 3, scale, 0.7, sums)
        runs.append((loss, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), sums))
    (loss_a, grad_a, sums_a), (loss_b, grad_b, sums_b) = runs
    assert grad_a.abs().sum() > 0
    assert loss_b == pytest.approx(loss_a, rel=1e-9)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-9, atol=1e-12)
    assert sums_b["ratio"] == pytest.approx(float(r.mask.sum()))  # ratio 1 on every token
    for key in ("clip_low", "clip_high", "is_weight", "ratio"):
        assert sums_b[key] == pytest.approx(sums_a[key], rel=1e-9, abs=1e-12)
    assert "entropy" not in sums_a
    assert sums_b["entropy"] == pytest.approx(float((entropy * r.mask).sum()), rel=1e-9)


def test_log_probs_of_a_padded_batch_are_those_of_each_row_alone(tiny_dir):
    """Every row through the model by itself, without padding, gives the same completion log-probs as
    the padded batch (rows shifted to the left, causal attention only, logits gathered per row)."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    r, _ = rollouts(model.config.vocab_size, 1)
    r = Rollouts(*(t.double() if t.is_floating_point() else t for t in r._fields()))
    T = r.mask.shape[1]
    with torch.no_grad():
        batch, ent = sequence_logprobs(model, r, 0.8, entropy=True)
        for i in range(len(r.mask)):
            real = r.input_ids[i][r.attention_mask[i].bool()]
            n = int(r.mask[i].sum())
            logp_all = torch.log_softmax(model(input_ids=real[None]).logits[0, -n - 1:-1] / 0.8, -1)
            alone = logp_all.gather(-1, real[-n:, None]).squeeze(-1)
            # float32 rounding inside the model (its rotary tables) differs with the batch's shape: 1e-7
            torch.testing.assert_close(batch[i, :n], alone, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(ent[i, :n], -(logp_all.exp() * logp_all).sum(-1), rtol=1e-6, atol=1e-6)
            assert (batch[i, n:] == 0).all() and n < T + 1
