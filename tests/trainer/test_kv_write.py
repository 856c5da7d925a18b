"""A kept static cache's lean writes (trainer/rollout/kv_write.py).

`write_kv` against the library's two `index_copy_` (on the CPU, and its Triton kernel under the
interpreter, strided inputs and a full cache included); a cache given `lean_cache_writes` ends a real
`generate` call with the same keys, values and counter as the library's own cache, all layers sharing
one counter, for an eager prompt forward and a chunked one; and a decode step compiled by inductor
(on the CPU, the op mutating the cache in place) gives the library's logits and cache. On a GPU: the kernel in a
CUDA graph."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.triton_interpreter import run_interpreted
from trainer.rollout.kv_write import lean_cache_writes, write_kv
from trainer.rollout.static_cache_reuse import StaticCaches, reused_static_caches


def _library_write(keys, values, key, value, position):
    keys.index_copy_(2, position.reshape(1), key)
    values.index_copy_(2, position.reshape(1), value)


def test_write_kv_writes_the_slot_of_the_counter():
    g = torch.Generator().manual_seed(0)
    keys, values = torch.randn(3, 2, 9, 8, generator=g), torch.randn(3, 2, 9, 6, generator=g)
    key = torch.randn(3, 1, 2, 8, generator=g).transpose(1, 2)  # [B, H, 1, D] as a strided view
    value = torch.randn(3, 2, 1, 6, generator=g)
    position = torch.tensor(4)
    expected_k, expected_v = keys.clone(), values.clone()
    _library_write(expected_k, expected_v, key, value, position)
    write_kv(keys, values, key, value, position)
    assert torch.equal(keys, expected_k) and torch.equal(values, expected_v)


@pytest.mark.slow
def test_the_kernel_writes_what_index_copy_does_under_the_interpreter():
    pytest.importorskip("triton")
    out = run_interpreted("""
        import torch
        from trainer.rollout.kv_write import write_kv
        g = torch.Generator().manual_seed(1)
        for batch, heads, length, dk, dv, slot in ((4, 2, 16, 64, 64, 0), (3, 1, 7, 24, 40, 6), (2, 3, 5, 8, 8, 5)):
            keys = torch.randn(batch, heads, length, dk, generator=g)
            values = torch.randn(batch, heads, length, dv, generator=g)
            key = torch.randn(batch, 1, heads, dk + 4, generator=g)[..., :dk].transpose(1, 2)  # strided
            value = torch.randn(batch, heads, 1, dv, generator=g)
            expected_k, expected_v = keys.clone(), values.clone()
            if slot < length:  # the library's index_copy_ fails past the end; the kernel leaves the cache
                expected_k.index_copy_(2, torch.tensor([slot]), key)
                expected_v.index_copy_(2, torch.tensor([slot]), value)
            write_kv(keys, values, key, value, torch.tensor(slot))
            assert torch.equal(keys, expected_k) and torch.equal(values, expected_v)
            print("ok", slot)
    """)
    assert out.count("ok") == 3


def _model(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_lean_cache_ends_a_call_as_the_librarys_does(tiny_dir, chunked):
    model, tokenizer = _model(tiny_dir)
    enc = tokenizer(["7+5=", "a longer prompt: 3*4="], return_tensors="pt", padding=True, padding_side="left")
    kwargs = dict(max_new_tokens=9, do_sample=False, cache_implementation="static", pad_token_id=0,
                  return_dict_in_generate=True)
    if chunked:  # the cache is made initialised (early_initialization): counters shared when it is kept
        kwargs.update(prefill_chunk_size=enc["input_ids"].shape[1])
    library = model.generate(**enc, **kwargs)
    caches = StaticCaches()
    with reused_static_caches(model, caches):
        for _ in range(2):  # made, then kept and reset
            lean = model.generate(**enc, **kwargs)
            assert torch.equal(lean.sequences, library.sequences)
            cache, expected = lean.past_key_values, library.past_key_values
            assert cache.update.__func__.__module__ == "trainer.rollout.kv_write"
            assert all(layer.cumulative_length is cache.layers[0].cumulative_length for layer in cache.layers)
            assert int(cache.get_seq_length()) == int(expected.get_seq_length())
            for ours, theirs in zip(cache.layers, expected.layers):
                assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)
    assert caches.made == 1 and caches.reused == 1
    off = StaticCaches(lean_writes=False)
    with reused_static_caches(model, off):
        plain = model.generate(**enc, **kwargs).past_key_values
    assert "update" not in vars(plain) and plain.layers[0].cumulative_length is not plain.layers[1].cumulative_length


def test_only_fresh_or_fully_initialised_caches_are_changed(tiny_dir):
    from transformers import StaticCache
    model, _ = _model(tiny_dir)
    cache = StaticCache(config=model.config, max_cache_len=8)
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    k = torch.zeros(1, model.config.num_key_value_heads, 1, head_dim)
    cache.layers[0].lazy_initialization(k, k)  # one layer made, the others not: left to the library
    assert not lean_cache_writes(cache) and "update" not in vars(cache)


@pytest.mark.slow
def test_the_compiled_step_writes_in_place_as_the_library_does(tiny_dir):
    """A decode step compiled by inductor (on the CPU; the op mutates the cache's tensors in place) gives
    the logits and the cache contents of the library's update."""
    from transformers import StaticCache
    model, _ = _model(tiny_dir)
    compiled = torch.compile(model.forward, fullgraph=True, dynamic=False)
    runs = []
    for lean in (False, True):
        cache = StaticCache(config=model.config, max_cache_len=16)
        assert not lean or lean_cache_writes(cache)
        with torch.inference_mode():
            model(input_ids=torch.tensor([[3, 5, 7, 9], [2, 4, 6, 8]]), past_key_values=cache, use_cache=True)
            logits = [compiled(input_ids=torch.tensor([[11 + i], [12 + i]]), position_ids=torch.full((2, 1), 4 + i),
                               past_key_values=cache, use_cache=True).logits for i in range(3)]
        runs.append((logits, cache))
    (expected, library), (got, lean) = runs
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    for ours, theirs in zip(lean.layers, library.layers):
        assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)
    assert int(lean.get_seq_length()) == int(library.get_seq_length()) == 7


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_kernel_on_the_gpu_and_in_a_cuda_graph():
    g = torch.Generator(device="cuda").manual_seed(0)
    keys = torch.randn(64, 2, 320, 64, generator=g, device="cuda", dtype=torch.bfloat16)
    values = torch.randn_like(keys)
    key = torch.randn(64, 1, 2, 64, generator=g, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    value = torch.randn(64, 2, 1, 64, generator=g, device="cuda", dtype=torch.bfloat16)
    position = torch.tensor(17, device="cuda")
    expected_k, expected_v = keys.clone(), values.clone()
    write_kv(keys, values, key, value, position)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        write_kv(keys, values, key, value, position)
    for slot in (17, 18, 319):
        position.fill_(slot)
        graph.replay()
        _library_write(expected_k, expected_v, key, value, torch.tensor(slot, device="cuda"))
    torch.testing.assert_close(keys, expected_k, rtol=0, atol=0)
    torch.testing.assert_close(values, expected_v, rtol=0, atol=0)
