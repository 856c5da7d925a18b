"""algo.compile_layers: the decoder layers compiled for the trainer's passes (trainer/compiled_layers.py)."""

from __future__ import annotations

import pytest
import torch

from trainer.compiled_layers import CompiledLayers, decoder_layers
from trainer.config import load_config

from test_grpo import ROOT, SEVEN, assert_learned


def _tiny_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=50, max_position_embeddings=64)
    return Qwen2ForCausalLM(config)


def _loss_and_grads(model, ids, mask):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    loss = -(logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0] * mask[:, 1:]).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.slow
def test_compiled_layers_give_the_eager_loss_and_gradients_and_detach_after():
    model = _tiny_model().train()
    ids = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as the trainer's rollouts
    eager_loss, eager_grads = _loss_and_grads(model, ids, mask)
    layers = CompiledLayers(model, enabled=True)
    for length in (12, 9):  # a second shape: compiled again, not wrong
        with layers.active():
            assert all(layer._compiled_call_impl is not None for layer in decoder_layers(model))
            loss, grads = _loss_and_grads(model, ids[:, :length], mask[:, :length])
        want_loss, want_grads = _loss_and_grads(model, ids[:, :length], mask[:, :length])
        assert torch.allclose(loss, want_loss, rtol=1e-4, atol=1e-4)
        for name, grad in want_grads.items():
            assert torch.allclose(grads[name], grad, rtol=1e-3, atol=1e-5), name
    assert eager_loss == _loss_and_grads(model, ids, mask)[0]
    assert all(layer._compiled_call_impl is None for layer in decoder_layers(model))  # generation runs eager


def test_disabled_does_nothing_and_a_model_without_layers_is_refused():
    model = _tiny_model()
    with CompiledLayers(model, enabled=False).active():
        assert all(layer._compiled_call_impl is None for layer in decoder_layers(model))
    with pytest.raises(ValueError, match="algo.compile_layers"):
        CompiledLayers(torch.nn.Linear(2, 2), enabled=True)


@pytest.mark.slow
def test_grpo_reward_rises_with_compiled_layers(tmp_path, seven_data, verifier_address):
    from trainer.grpo import train
    steps = 8
    cfg = load_config(ROOT / "configs/demo.yaml", SEVEN + [
        f"steps={steps}", "rollout.engine=hf", f"out_dir={tmp_path}", f"data.path={seven_data}",
        f"reward.address={verifier_address}", "algo.compile_layers=true"])
    train(cfg)
    assert_learned(tmp_path, steps)
