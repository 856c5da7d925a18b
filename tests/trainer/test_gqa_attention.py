"""The grouped-query decode attention (trainer/rollout/gqa_attention.py): the same attention as
transformers' sdpa function at a decode step, the sdpa function itself elsewhere, and the same
generations through the transformers engine."""

from __future__ import annotations

import pytest
import torch

from trainer.rollout import SamplingConfig
from trainer.rollout.gqa_attention import NAME, decode_attention, gqa_decode_attention


class _Layer(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


def _inputs(q_len: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch, kv, groups, length, dim = 4, 2, 3, 9, 8
    query = torch.randn(batch, kv * groups, q_len, dim, generator=g, dtype=torch.float64)
    key = torch.randn(batch, kv, length, dim, generator=g, dtype=torch.float64)
    value = torch.randn(batch, kv, length, dim, generator=g, dtype=torch.float64)
    # left padding of 0-3 keys per row, as a bool mask [B, 1, q, L] (True: attend)
    mask = torch.ones(batch, 1, q_len, length, dtype=torch.bool)
    for row in range(batch):
        mask[row, :, :, :row] = False
    if q_len > 1:
        mask &= torch.ones(q_len, length, dtype=torch.bool).tril(length - q_len)
    return query, key, value, mask


def test_decode_step_equals_transformers_sdpa_attention():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    query, key, value, mask = _inputs(q_len=1)
    expected, _ = sdpa_attention_forward(_Layer(), query, key, value, mask, scaling=0.3)
    got, _ = gqa_decode_attention(_Layer(), query, key, value, mask, scaling=0.3)
    assert got.shape == expected.shape == (4, 1, 6, 8)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    got_unmasked, _ = gqa_decode_attention(_Layer(), query, key, value, None, scaling=0.3)
    torch.testing.assert_close(got_unmasked, sdpa_attention_forward(_Layer(), query, key, value, None, scaling=0.3)[0])


def test_longer_queries_go_to_transformers_sdpa_attention():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    query, key, value, mask = _inputs(q_len=5)
    torch.testing.assert_close(gqa_decode_attention(_Layer(), query, key, value, mask, scaling=0.3)[0],
                               sdpa_attention_forward(_Layer(), query, key, value, mask, scaling=0.3)[0])


def test_engine_generates_the_same_with_and_without_it(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.rollout.hf_engine import HFEngine
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # the tiny model has GQA
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    prompts = ["7+5=", "a much longer prompt, padded less: 3*4="]
    sampling = SamplingConfig(max_tokens=12, temperature=1.0, seed=3)
    runs = []
    for gqa in (False, True):
        groups = HFEngine(model, tokenizer, gqa_decode=gqa).generate(prompts, 3, sampling)
        runs.append([(c.token_ids, c.logprobs) for g in groups for c in g.completions])
    assert [ids for ids, _ in runs[0]] == [ids for ids, _ in runs[1]]
    for (_, a), (_, b) in zip(*runs):
        assert a == pytest.approx(b, abs=1e-9)
    assert model.config._attn_implementation == "sdpa"  # switched back after generate


def test_decode_attention_leaves_other_models_alone(tiny_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager")
    with decode_attention(model) as switched:
        assert not switched and model.config._attn_implementation == "eager"
    model.set_attn_implementation("sdpa")
    with decode_attention(model) as switched:
        assert switched and model.config._attn_implementation == NAME
    assert model.config._attn_implementation == "sdpa"
