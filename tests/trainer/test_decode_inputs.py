"""The lean decode-step bookkeeping (trainer/rollout/decode_inputs.py): at every call of real `generate`
calls, the same model inputs and model kwargs as the library's functions, and the same generations."""

from __future__ import annotations

import pytest
import torch

from trainer.rollout import SamplingConfig
from trainer.rollout.decode_inputs import lean_decode_inputs, lean_prepare, lean_update
from trainer.rollout.hf_engine import HFEngine

PADDED = ["7+5=", "a much longer prompt, padded less: 3*4=", "x"]
EVEN = ["7+5=", "3*4=", "9-2="]


def _model(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return (AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64),
            AutoTokenizer.from_pretrained(tiny_dir))


def _same(a, b) -> bool:
    """Equal values, and for tensors equal dtype, shape, strides and values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a is b or a == b


@pytest.mark.parametrize("prompts", [PADDED, EVEN])
@pytest.mark.parametrize("gqa", [True, False])
def test_the_library_inputs_at_every_step_of_generate(tiny_dir, prompts, gqa):
    """Every call `generate` makes goes to both functions (the library's on a copy of the kwargs): the
    dicts they return are equal, key order included; decode steps take the lean path."""
    model, tokenizer = _model(tiny_dir)
    library_prepare, library_update = model.prepare_inputs_for_generation, model._update_model_kwargs_for_generation
    seen = {"prepare": 0, "update": 0, "decode": 0, "prepare_fallbacks": 0, "update_fallbacks": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            seen[name] += 1
            return function(*args, **kwargs)
        return call

    prepare = lean_prepare(model, counted("prepare_fallbacks", library_prepare), model.dtype, model.device)
    update = lean_update(counted("update_fallbacks", library_update))

    def both_prepare(input_ids, **kwargs):
        expected = library_prepare(input_ids, **dict(kwargs))
        got = prepare(input_ids, **dict(kwargs))
        assert _same(expected, got), (list(expected), list(got))
        seen["prepare"] += 1
        seen["decode"] += kwargs.get("next_sequence_length") == 1
        return expected

    def both_update(outputs, model_kwargs, **kwargs):
        expected = library_update(outputs, dict(model_kwargs), **kwargs)
        got = update(outputs, dict(model_kwargs), **kwargs)
        assert _same(expected, got), (list(expected), list(got))
        seen["update"] += 1
        return expected

    model.prepare_inputs_for_generation = both_prepare
    model._update_model_kwargs_for_generation = both_update
    engine = HFEngine(model, tokenizer, cache="static", gqa_decode=gqa)  # the context sees own functions: off
    engine.generate(prompts, 2, SamplingConfig(max_tokens=6, temperature=1.0, seed=1))
    assert seen["decode"] >= 5 and seen["update"] >= 6
    # the lean functions did the work: only the prompt's call went back to the library's
    assert seen["prepare_fallbacks"] == seen["prepare"] - seen["decode"] == 1
    assert seen["update_fallbacks"] == 0


@pytest.mark.parametrize("prompts", [PADDED, EVEN])
def test_engine_generates_the_same_with_and_without_them(tiny_dir, prompts):
    """`lean_decode` (the lean masks of decode_mask.py and the inputs of decode_inputs.py) on and off:
    the same tokens and log-probs; the hooks are gone after `generate`."""
    model, tokenizer = _model(tiny_dir)
    sampling = SamplingConfig(max_tokens=10, temperature=1.0, seed=3)
    runs = []
    for lean in (False, True):
        engine = HFEngine(model, tokenizer, cache="static", gqa_decode=True, sampler="fused")
        engine.lean_decode = lean
        runs.append([(c.token_ids, c.logprobs) for g in engine.generate(prompts, 3, sampling) for c in g.completions])
    assert runs[0] == runs[1]
    assert not {"prepare_inputs_for_generation", "_update_model_kwargs_for_generation",
                "create_masks_for_generate"} & set(vars(model))


def test_installed_and_removed(tiny_dir):
    model, _ = _model(tiny_dir)
    with lean_decode_inputs(model) as installed:
        assert installed and "prepare_inputs_for_generation" in vars(model)
    assert "prepare_inputs_for_generation" not in vars(model)
    assert "_update_model_kwargs_for_generation" not in vars(model)
    with lean_decode_inputs(model, enabled=False) as installed:
        assert not installed
