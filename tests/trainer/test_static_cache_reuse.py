"""One static KV cache per batch size kept across `generate` calls (trainer/rollout/static_cache_reuse.py).

On the CPU with the tiny model and the "static" cache: generations with kept caches equal those with a
new cache per call, over calls of other prompt lengths, completion lengths, batch sizes and sampling;
the kept cache is the same object from call to call (reset in place, not reallocated), at most two batch
sizes are kept, and turning `keep_decode_state` off drops them. (The CUDA graphs kept with them:
tests/trainer/test_graphed_decode.py, on a GPU.)
"""

from __future__ import annotations

import torch

from trainer.rollout import SamplingConfig
from trainer.rollout.hf_engine import HFEngine
from trainer.rollout.static_cache_reuse import StaticCaches, reused_static_caches

PADDED = ["7+5=", "a much longer prompt, padded less: 3*4=", "x"]
EVEN = ["1+1=", "2+2="]
CALLS = [(PADDED, 2, 12, 1.0), (PADDED, 2, 12, 1.0), (EVEN, 3, 8, 0.0), (PADDED, 2, 20, 1.0), (EVEN, 1, 6, 1.0),
         (PADDED, 2, 12, 0.0)]


def _model(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


def _run(engine, calls):
    out, caches = [], []
    for prompts, n, tokens, temperature in calls:
        groups = engine.generate(prompts, n, SamplingConfig(max_tokens=tokens, temperature=temperature, seed=5))
        out.append([(c.token_ids, c.logprobs) for g in groups for c in g.completions])
        caches.append(dict(engine.static_caches.by_batch))
    return out, caches


def test_kept_caches_generate_what_new_ones_do(tiny_dir):
    model, tokenizer = _model(tiny_dir)
    fresh = HFEngine(model, tokenizer, cache="static", sampler="fused", gqa_decode=True)
    fresh.keep_decode_state = False
    expected, none = _run(fresh, CALLS)
    assert all(c == {} for c in none)
    kept = HFEngine(model, tokenizer, cache="static", sampler="fused", gqa_decode=True)
    got, caches = _run(kept, CALLS)
    for a, b in zip(got, expected):
        assert [ids for ids, _ in a] == [ids for ids, _ in b]
        for (_, x), (_, y) in zip(a, b):
            torch.testing.assert_close(torch.tensor(x), torch.tensor(y), rtol=1e-5, atol=1e-5)
    # 6 rows (calls 1-4, 6), then 2 rows (call 5): one cache each, reset and handed back again
    assert caches[0][6] is caches[1][6] is caches[2][6] is caches[3][6] is caches[5][6]
    assert set(caches[4]) == {6, 2}
    assert kept.static_caches.made == 2 and kept.static_caches.reused == len(CALLS) - 2
    kept.keep_decode_state = False
    kept.generate(EVEN, 1, SamplingConfig(max_tokens=2, temperature=0.0))
    assert kept.static_caches.by_batch == {}


def test_at_most_capacity_batch_sizes_are_kept(tiny_dir):
    model, tokenizer = _model(tiny_dir)
    engine = HFEngine(model, tokenizer, cache="static", sampler="fused")
    for n in (1, 2, 3, 2):
        engine.generate(EVEN, n, SamplingConfig(max_tokens=3, temperature=0.0))
    assert list(engine.static_caches.by_batch) == [6, 4]  # 2 rows went first; 4 was used last


def test_other_caches_are_left_to_the_library(tiny_dir):
    model, tokenizer = _model(tiny_dir)
    caches = StaticCaches()
    with reused_static_caches(model, caches):
        model.generate(**tokenizer(["1+1="], return_tensors="pt"), max_new_tokens=3, do_sample=False)  # dynamic cache
        model.generate(**tokenizer(["1+1="], return_tensors="pt"), max_new_tokens=3, do_sample=False,
                       cache_implementation="static")
    assert "_prepare_static_cache" not in vars(model)
    assert caches.made == 1 and list(caches.by_batch) == [1]
    engine = HFEngine(model, tokenizer, cache="dynamic", sampler="fused")
    engine.generate(EVEN, 2, SamplingConfig(max_tokens=3, temperature=0.0))
    assert engine.static_caches.by_batch == {}


def test_a_one_chunk_prefill_generates_the_same_and_keeps_its_cache(tiny_dir):
    """The engine's graphed prefill on CUDA is the library's chunked prefill with one chunk (through the
    compiled call there); here, eagerly: the same tokens as the usual prefill, from a kept, reset cache."""
    model, tokenizer = _model(tiny_dir)
    enc = tokenizer(PADDED, return_tensors="pt", padding=True, padding_side="left")
    kwargs = dict(max_new_tokens=10, do_sample=False, cache_implementation="static", pad_token_id=0)
    expected = model.generate(**enc, **kwargs)
    caches = StaticCaches()
    with reused_static_caches(model, caches):
        for _ in range(2):
            got = model.generate(**enc, **kwargs, prefill_chunk_size=enc["input_ids"].shape[1])
            assert torch.equal(got, expected)
    assert caches.made == 1 and caches.reused == 1
