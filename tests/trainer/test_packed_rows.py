"""Packed rows (algo.pack_rows): a micro-batch's rows as one sequence without padding give the same
log-probs, entropies and gradients as the padded rows; models that cannot be packed are left alone."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.test_accumulation import rollouts
from trainer.batches import Rollouts, accumulate_gradients, no_grad_logprobs, sequence_logprobs
from trainer.losses import BatchScale, GRPOLoss, LossSettings
from trainer.packed_rows import can_pack, pack, packing


def _model(tiny_dir):
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)


def _double(r: Rollouts) -> Rollouts:
    return Rollouts(*(t.double() if t.is_floating_point() else t for t in r._fields()))


def _padded_and_packed_gradients(model, r, adv, old, micro, temperature):
    """The GRPO loss's gradient over all 8 rows, padded and then packed (forced: the CPU fallback)."""
    loss_fn = GRPOLoss(LossSettings())
    scale = BatchScale(tokens=float(r.mask.sum()), sequences=8.0, max_tokens=8)
    grads = []
    for pack_rows in (False, True):
        model.zero_grad(set_to_none=True)
        with packing(model, enabled=pack_rows, force=True):
            accumulate_gradients(model, loss_fn, r, old, None, adv, torch.arange(8), micro, scale, temperature, {})
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0
    return grads


def test_pack_lays_rows_end_to_end():
    ids = torch.tensor([[0, 5, 6, 7, 0], [8, 9, 1, 0, 0]])    # P = 3 (left-padded), T = 2 (right-padded)
    attn = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    packed = pack(ids, attn, (attn.cumsum(-1) - 1).clamp(min=0), 2)
    assert packed.input_ids.tolist() == [[5, 6, 7, 8, 9, 1]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1, 2]]
    assert packed.cu_seq_lens.tolist() == [0, 3, 6] and packed.longest == 3
    # row 0: prompt 5 6, completion 7 -> position 1 predicts it; row 1: prompt 8 9 1, no completion
    assert packed.keep.tolist() == [[1, 2], [5, 5]]


def test_packed_rows_give_the_padded_log_probs_and_gradients(tiny_dir):
    model = _model(tiny_dir)
    r, adv = rollouts(model.config.vocab_size, 1)
    r, adv = _double(r), adv.double()
    with torch.no_grad():
        padded, padded_ent = sequence_logprobs(model, r, 0.9, entropy=True)
        with packing(model, force=True) as packed_on:
            assert packed_on and model.config._attn_implementation != "sdpa"
            packed, packed_ent = sequence_logprobs(model, r, 0.9, entropy=True)
    assert model.config._attn_implementation == "sdpa"  # restored
    assert padded.abs().sum() > 0
    torch.testing.assert_close(packed, padded, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(packed_ent, padded_ent, rtol=1e-9, atol=1e-9)

    old = no_grad_logprobs(model, r, 0.9, 8)[0] + 0.05 * r.mask
    padded_grad, packed_grad = _padded_and_packed_gradients(model, r, adv, old, 3, 0.9)
    torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-8, atol=1e-12)


def test_only_models_that_can_be_packed_are(tiny_dir):
    model = _model(tiny_dir)
    assert not can_pack(model)              # the CPU has no variable-length kernel: padded unless forced
    assert can_pack(model, force=True)
    model.config.use_sliding_window, model.config.sliding_window = True, 4
    assert not can_pack(model, force=True)  # sliding windows: not packed
    with packing(model, force=True) as packed_on:
        assert not packed_on


def test_attention_dropout_is_refused_by_name(tiny_dir):
    from trainer.packed_rows import packed_attention
    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match="algo.pack_rows"):
        packed_attention(None, q, q, q, None, dropout=0.1, cu_seq_lens_q=torch.tensor([0, 3]), max_length_q=3)


@pytest.mark.gpu
def test_packed_rows_on_cuda_use_the_variable_length_kernel(tiny_dir):
    """On CUDA the rows run through torch's variable-length flash attention (bf16): the same log-probs
    and gradient as the padded rows, to bf16 precision. (Skipped without a GPU by the `gpu` marker.)"""
    assert not can_pack(_model(tiny_dir).to("cuda"))  # float32: no flash kernel, padded
    model = _model(tiny_dir).to("cuda", torch.bfloat16)
    assert can_pack(model)
    r, adv = rollouts(model.config.vocab_size, 1)
    r, adv = r.to("cuda"), adv.to("cuda")
    loss_fn = GRPOLoss(LossSettings())
    scale = BatchScale(tokens=float(r.mask.sum()), sequences=8.0, max_tokens=8)
    results = []
    for pack_rows in (False, True):
        model.zero_grad(set_to_none=True)
        with packing(model, enabled=pack_rows) as packed_on:
            assert packed_on == pack_rows
            with torch.no_grad():
                logp = sequence_logprobs(model, r, 1.0)[0]
            accumulate_gradients(model, loss_fn, r, None, None, adv, torch.arange(8), 8, scale, 1.0, {})
        results.append((logp, torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])))
    (logp_a, grad_a), (logp_b, grad_b) = results
    torch.testing.assert_close(logp_b, logp_a, rtol=0.02, atol=0.02)
    assert torch.isfinite(grad_b).all()
    assert torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0) > 0.99


def test_packed_rows_under_gradient_checkpointing(tiny_dir):
    """configs/gsm8k_1.5b.yaml checkpoints the layers: the row boundaries still reach the attention
    when a layer's forward is recomputed in the backward."""
    model = _model(tiny_dir)
    model.gradient_checkpointing_enable()
    model.train()
    r, adv = rollouts(model.config.vocab_size, 1)
    r, adv = _double(r), adv.double()
    padded_grad, packed_grad = _padded_and_packed_gradients(model, r, adv, None, 4, 1.0)
    torch.testing.assert_close(packed_grad, padded_grad, rtol=1e-8, atol=1e-12)
