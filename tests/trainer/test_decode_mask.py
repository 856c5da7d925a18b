"""The static-cache decode mask (trainer/rollout/decode_mask.py): the library's mask at every decode
step of a real `generate`, the library's function everywhere else. (The same generations with and
without the lean decode steps: test_decode_inputs.py.)"""

from __future__ import annotations

import pytest
import torch

from trainer.rollout import SamplingConfig
from trainer.rollout.decode_mask import _lean, causal_step_mask, decode_step_mask, lean_decode_masks
from trainer.rollout.hf_engine import HFEngine

PROMPTS = ["7+5=", "a much longer prompt, padded less: 3*4=", "x"]
EVEN = ["7+5=", "3*4=", "9-2="]  # one length: no padding, and `generate` drops the all-ones mask


def _model(tiny_dir, **config):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float64, **config)
    return model, AutoTokenizer.from_pretrained(tiny_dir)


def test_decode_step_mask_pads_the_padding_mask():
    got = decode_step_mask(torch.tensor([[0, 1, 1], [1, 1, 1]]), 5)
    assert got.shape == (2, 1, 1, 5) and got.dtype == torch.bool
    assert got[:, 0, 0].tolist() == [[False, True, True, False, False], [True, True, True, False, False]]


@pytest.mark.parametrize("cache,prompts", [("static", PROMPTS), ("static", EVEN), ("dynamic", PROMPTS)])
def test_the_library_mask_at_every_step_of_generate(tiny_dir, cache, prompts):
    """Both functions run on every call `generate` makes (prompt and decode steps, left-padded rows or
    none): their masks are equal; the dynamic cache makes no mask before the forward."""
    from transformers import masking_utils
    model, tokenizer = _model(tiny_dir)
    library = masking_utils.create_masks_for_generate
    lean = _lean(library, model.config)
    seen = []

    def both(**kwargs):
        expected = library(**kwargs)
        got = lean(**kwargs)
        seen.append((kwargs["inputs_embeds"].shape[1], expected, got))
        return expected

    model.create_masks_for_generate = both  # an own function: the engine's context leaves it in place
    HFEngine(model, tokenizer, cache=cache, gqa_decode=True).generate(
        prompts, 2, SamplingConfig(max_tokens=6, temperature=1.0, seed=1))
    if cache == "dynamic":  # the library makes no 4D mask before the forward for a dynamic cache
        assert seen == []
        return
    decode = [(e, g) for q, e, g in seen if q == 1]
    assert len(decode) >= 5 and len(seen) == len(decode) + 1  # the prompt's call, then the decode steps
    for expected, got in decode:
        assert isinstance(expected, dict) and expected.keys() == got.keys() == {"full_attention"}
        e, g = expected["full_attention"], got["full_attention"]
        assert e.dtype == g.dtype == torch.bool and e.shape == g.shape
        assert torch.equal(e, g)
    # unwritten cache slots (and left padding) are masked: the comparison has teeth
    assert sum(not e["full_attention"].all() for e, _ in decode) >= len(decode) - 1
    (q, expected, got), = [s for s in seen if s[0] > 1]
    e, g = expected["full_attention"], got["full_attention"]  # the prompt's forward: the library's own mask
    assert (e is None and g is None) or torch.equal(e, g)  # (None without padding: sdpa's is_causal)


def test_causal_step_mask():
    got = causal_step_mask(torch.tensor(2), 5, 2)
    assert got.shape == (2, 1, 1, 5) and got[:, 0, 0].tolist() == [[True, True, True, False, False]] * 2


def test_left_alone_where_it_does_not_apply(tiny_dir):
    model, _ = _model(tiny_dir)
    with lean_decode_masks(model) as installed:
        assert installed and callable(model.create_masks_for_generate)
    assert not hasattr(model, "create_masks_for_generate")
    with lean_decode_masks(model, enabled=False) as installed:
        assert not installed
    sliding, _ = _model(tiny_dir, layer_types=["sliding_attention"] * 2, sliding_window=4, use_sliding_window=True)
    with lean_decode_masks(sliding) as installed:
        assert not installed
    own = lambda **kwargs: None  # noqa: E731 - a model's own mask function stays
    model.create_masks_for_generate = own
    with lean_decode_masks(model) as installed:
        assert not installed and model.create_masks_for_generate is own
