"""A group's prompt forward run once (trainer/rollout/shared_prefill.py).

On the CPU with the tiny model and kept static caches: the engine generates the same tokens and
log-probs with the shared prompt forward as without (both samplers, greedy and sampled, padded
prompts, one prompt), from the first call of a batch size on (its cache is made initialised); a cache
view is strided over the same storage with the same counter and is kept on its cache; nothing is
installed or shared where it does not apply. On a GPU the graphed prompt forward through
the view: tests/trainer/test_graphed_decode.py."""

from __future__ import annotations

import pytest
import torch

from trainer.rollout import SamplingConfig
from trainer.rollout.hf_engine import HFEngine
from trainer.rollout.shared_prefill import cache_view, shared_prompt_prefill
from trainer.rollout.static_cache_reuse import StaticCaches

PROMPTS = ["7+5=", "a longer prompt: 3*4=", "x"]


def _model(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


@pytest.mark.parametrize("sampler", ["fused", "library"])
def test_shared_prompt_forward_generates_the_same(tiny_dir, sampler):
    model, tokenizer = _model(tiny_dir)
    runs, engines = [], []
    for shared in (False, True):
        engine = HFEngine(model, tokenizer, cache="static", sampler=sampler, gqa_decode=True)
        engine.shared_prefill = shared
        out = []
        for temperature in (1.0, 0.0, 1.0, 0.7):
            groups = engine.generate(PROMPTS, 3, SamplingConfig(max_tokens=10, temperature=temperature, seed=4))
            out.append([(c.token_ids, c.logprobs) for g in groups for c in g.completions])
        runs.append(out)
        engines.append(engine)
    for a, b in zip(*runs):
        assert [ids for ids, _ in a] == [ids for ids, _ in b]
        for (_, x), (_, y) in zip(a, b):
            torch.testing.assert_close(torch.tensor(x), torch.tensor(y), rtol=1e-5, atol=1e-5)
    assert engines[0].static_caches.shared_prefills == 0
    assert engines[1].static_caches.shared_prefills == 4  # the first call too: its cache is made initialised


def test_a_view_is_strided_over_the_same_storage_and_counter(tiny_dir):
    model, tokenizer = _model(tiny_dir)
    engine = HFEngine(model, tokenizer, cache="static", sampler="fused")
    engine.generate(PROMPTS, 2, SamplingConfig(max_tokens=3, temperature=0.0))
    cache = engine.static_caches.by_batch[6]
    view = cache_view(cache, 2)
    assert cache_view(cache, 2) is view and view.viewed is cache and engine.static_caches.holds(view)
    for whole, part in zip(cache.layers, view.layers):
        assert part.keys.shape[0] == 3 and part.keys.data_ptr() == whole.keys.data_ptr()
        assert part.keys.stride(0) == 2 * whole.keys.stride(0)
        assert part.cumulative_length is cache.layers[0].cumulative_length
    with torch.inference_mode():  # the cache's tensors were made under it
        view.layers[0].keys[1].fill_(7.0)  # row 1 of the view is row 2 of the cache
    assert bool((cache.layers[0].keys[2] == 7.0).all())


def test_not_installed_or_not_applied_where_it_cannot_be_exact(tiny_dir):
    model, tokenizer = _model(tiny_dir)
    caches = StaticCaches()
    for group, kept in ((1, caches), (2, None), (2, StaticCaches(lean_writes=False))):
        with shared_prompt_prefill(model, group, kept) as installed:
            assert not installed and "_prefill" not in vars(model)
    engine = HFEngine(model, tokenizer, cache="static", sampler="fused")
    for _ in range(2):
        engine.generate(PROMPTS, 1, SamplingConfig(max_tokens=3, temperature=0.0))  # groups of one
    assert engine.static_caches.shared_prefills == 0
    engine.generate(PROMPTS, 2, SamplingConfig(max_tokens=3, temperature=0.0))  # groups of two: shared
    assert engine.static_caches.shared_prefills == 1
    # one prompt: its group is the whole batch, one row computed; the same draws as every row's forward
    sampling = SamplingConfig(max_tokens=6, temperature=1.0, seed=1)
    one = engine.generate(["7+5="], 4, sampling)
    assert engine.static_caches.shared_prefills == 2
    unshared = HFEngine(model, tokenizer, cache="static", sampler="fused")
    unshared.shared_prefill = False
    every = unshared.generate(["7+5="], 4, sampling)
    assert [c.token_ids for c in one[0].completions] == [c.token_ids for c in every[0].completions]
    for a, b in zip(one[0].completions, every[0].completions):
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), rtol=1e-5, atol=1e-5)
    dynamic = HFEngine(model, tokenizer, cache="dynamic", sampler="fused")
    dynamic.generate(PROMPTS, 2, SamplingConfig(max_tokens=3, temperature=0.0))
    assert dynamic.static_caches.shared_prefills == 0
