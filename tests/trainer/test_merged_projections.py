"""Merged q/k/v and gate/up projections while sampling (trainer/rollout/merged_projections.py): the same
model outputs, the model's parameters and state_dict untouched, weights refreshed on every entry, one
compiled graph, and the same generations through the transformers engine."""

from __future__ import annotations

import pytest
import torch

from trainer.rollout import SamplingConfig
from trainer.rollout.merged_projections import _Part, merged_projections


def _model(dtype=torch.float64):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    return Qwen2ForCausalLM(config).to(dtype).eval()


def test_outputs_parameters_and_state_dict_are_the_same_inside():
    model = _model()
    ids = torch.randint(0, 40, (3, 7))
    expected = model(ids).logits
    parameters = list(model.named_parameters())
    keys = list(model.state_dict())
    with torch.no_grad(), merged_projections(model) as replaced:
        assert replaced == 2 * (3 + 2)  # q/k/v and gate/up of two layers
        assert isinstance(model.model.layers[0].self_attn.k_proj, _Part)
        got = model(ids).logits
        assert list(model.named_parameters()) == parameters  # the same Parameter objects, the same names
        assert list(model.state_dict()) == keys
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert type(model.model.layers[0].self_attn.k_proj) is torch.nn.Linear  # put back
    assert type(model.model.layers[1].mlp.up_proj) is torch.nn.Linear


def test_weights_are_copied_again_on_every_entry():
    model = _model()
    ids = torch.randint(0, 40, (2, 5))
    with torch.no_grad(), merged_projections(model):
        model(ids)
    with torch.no_grad():  # an optimizer step, say
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    expected = model(ids).logits
    with torch.no_grad(), merged_projections(model):
        torch.testing.assert_close(model(ids).logits, expected, rtol=1e-12, atol=1e-12)


def test_modules_are_put_back_after_an_error():
    model = _model()
    with pytest.raises(RuntimeError, match="boom"), merged_projections(model):
        raise RuntimeError("boom")
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear


def test_disabled_and_unmergeable_sets_are_left_alone():
    model = _model()
    with merged_projections(model, enabled=False) as replaced:
        assert replaced == 0 and type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    model.model.layers[0].self_attn.v_proj.to(torch.float32)  # one projection of another dtype: that set stays
    with merged_projections(model) as replaced:
        assert replaced == 2 * (3 + 2) - 3
        assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear
        assert isinstance(model.model.layers[0].mlp.gate_proj, _Part)


def test_one_compiled_graph_with_the_merged_projections():
    model = _model(torch.float32)
    ids = torch.randint(0, 40, (2, 6))
    expected = model(ids).logits
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # a graph break would raise
    with torch.no_grad(), merged_projections(model):
        got = compiled(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_engine_generates_the_same_with_merged_projections(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.rollout.hf_engine import HFEngine
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    prompts = ["7+5=", "a longer prompt: 3*4="]
    sampling = SamplingConfig(max_tokens=12, temperature=1.0, seed=3)
    runs = []
    for merged in (False, True):
        for cache in ("dynamic", "static"):
            groups = HFEngine(model, tokenizer, cache=cache, merged=merged).generate(prompts, 3, sampling)
            runs.append([(c.token_ids, c.logprobs) for g in groups for c in g.completions])
    for run in runs[2:]:
        assert [ids for ids, _ in run] == [ids for ids, _ in runs[0]]
        for (_, a), (_, b) in zip(run, runs[0]):
            assert a == pytest.approx(b, abs=1e-9)
