"""The split-KV Triton kernel for the grouped-query decode step (trainer/rollout/decode_kernel.py).

On the CPU it runs under Triton's interpreter (TRITON_INTERPRET=1, in a child process: the variable
chooses the interpreter when the kernels are first built): against torch's sdpa over the same folded
query in float32, for one and several splits, masks with left padding, a masked tail, a split with no
key to attend, and head sizes that are not powers of two; and through the transformers engine, the same
generations as with sdpa. On a GPU (`gpu` tests): bf16 against float64, and inside a compiled, CUDA-graphed
function."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.triton_interpreter import run_interpreted
from trainer.rollout.decode_kernel import BLOCK_N, TARGET_PROGRAMS, split_count

pytest.importorskip("triton")


def test_split_count_fills_the_gpu_with_whole_key_blocks():
    assert split_count(64, 2, 320) == 3  # 128 (row, KV head) pairs: 3 programs each reach 264
    assert split_count(512, 2, 320) == 1
    assert split_count(1, 1, 100) == 2  # never more programs than key blocks
    assert split_count(1, 1, 100_000) == TARGET_PROGRAMS
    assert split_count(4, 2, BLOCK_N) == 1


@pytest.mark.slow
def test_kernel_equals_sdpa_under_the_interpreter():
    out = run_interpreted("""
        import torch
        from trainer.rollout.decode_kernel import available, gqa_decode, split_count
        g = torch.Generator().manual_seed(0)
        cases = [(3, 2, 7, 64, 200), (2, 1, 4, 16, 5), (5, 2, 2, 48, 130), (1, 2, 1, 32, 700)]
        for batch, kv, groups, dim, length in cases:
            q = torch.randn(batch, kv, groups, dim, generator=g)
            k = torch.randn(batch, kv, length, dim, generator=g)
            v = torch.randn(batch, kv, length, dim, generator=g)
            assert available(q.device)
            mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)
            mask[0, ..., : (2 * length) // 3] = False  # left padding: the first splits see no key at all
            mask[-1, ..., length - 2:] = False  # an unfilled tail, as in a static cache
            for m in (mask, None):
                expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3)
                got = gqa_decode(q, k, v, m, 0.3)
                assert got.shape == expected.shape and got.dtype == expected.dtype
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            # masked slots are never read: NaN there (a reused cache's stale slots could hold anything)
            hidden = ~mask[:, 0, 0, :, None].unsqueeze(1).expand_as(k)
            dirty = gqa_decode(q, k.masked_fill(hidden, float("nan")), v.masked_fill(hidden, float("nan")), mask, 0.3)
            torch.testing.assert_close(dirty, torch.nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, scale=0.3), rtol=1e-5, atol=1e-5)
            # a sliced mask (strides of the longer one) and a query folded from a strided [B, H, 1, D] view
            heads = torch.randn(batch, 1, kv * groups, dim + 8, generator=g)[..., :dim].transpose(1, 2)
            folded = heads.reshape(batch, kv, groups, dim)
            assert not folded.is_contiguous()  # a view, not a copy
            long_mask = torch.cat([mask, torch.zeros(batch, 1, 1, 9, dtype=torch.bool)], -1)[..., :length]
            torch.testing.assert_close(gqa_decode(folded, k, v, long_mask, 0.3),
                torch.nn.functional.scaled_dot_product_attention(folded, k, v, attn_mask=long_mask, scale=0.3),
                rtol=1e-5, atol=1e-5)
            shared = mask[-1:]  # one row's mask for every row
            torch.testing.assert_close(gqa_decode(q, k, v, shared, 0.3),
                torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=shared, scale=0.3),
                rtol=1e-5, atol=1e-5)
            print("ok", batch, kv, groups, dim, length, split_count(batch, kv, length))
    """)
    assert out.count("ok") == 4
    assert "ok 1 2 1 32 700 11" in out  # many splits


@pytest.mark.slow
def test_engine_generates_the_same_with_the_kernel_under_the_interpreter(tiny_dir):
    out = run_interpreted(f"""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trainer.rollout import SamplingConfig
        from trainer.rollout.hf_engine import HFEngine
        model = AutoModelForCausalLM.from_pretrained({str(tiny_dir)!r}, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained({str(tiny_dir)!r})
        prompts = ["7+5=", "a longer prompt: 3*4="]
        sampling = SamplingConfig(max_tokens=10, temperature=1.0, seed=3)
        runs = []
        for kernel in ("sdpa", "split_kv"):
            engine = HFEngine(model, tokenizer, cache="static", gqa_decode=True, decode_kernel=kernel)
            groups = engine.generate(prompts, 3, sampling)
            runs.append([(c.token_ids, c.logprobs) for g in groups for c in g.completions])
        assert [i for i, _ in runs[0]] == [i for i, _ in runs[1]]
        worst = max(abs(x - y) for (_, a), (_, b) in zip(*runs) for x, y in zip(a, b))
        assert worst < 1e-4, worst
        print("same", worst)
    """)
    assert "same" in out


def test_the_kernel_is_not_chosen_where_it_cannot_run(tiny_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from trainer.rollout.gqa_attention import NAME, decode_attention
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    with decode_attention(model, "split_kv") as switched:  # a CPU model: sdpa's decode call instead
        assert switched and model.config._attn_implementation == NAME
    with pytest.raises(ValueError, match="rollout.hf_decode_kernel"):
        with decode_attention(model, "flash"):
            pass


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_kernel_on_the_gpu_in_bf16_and_under_cuda_graphs():
    from trainer.rollout.decode_kernel import gqa_decode
    g = torch.Generator(device="cuda").manual_seed(0)
    for batch, length in ((64, 320), (256, 320), (8, 2048)):
        q = torch.randn(batch, 2, 7, 64, generator=g, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(batch, 2, length, 64, generator=g, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        mask = torch.ones(batch, 1, 1, length, dtype=torch.bool, device="cuda")
        mask[:, ..., :17] = False
        mask[::2, ..., length - 40:] = False
        exact = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                                                 attn_mask=mask, scale=0.125)
        sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.125)
        ours = gqa_decode(q, k, v, mask, 0.125)
        assert (ours.double() - exact).abs().max() <= 1.5 * (sdpa.double() - exact).abs().max() + 1e-3
        compiled = torch.compile(lambda a, b, c, m: gqa_decode(a, b, c, m, 0.125) * 2, mode="reduce-overhead",
                                 fullgraph=True)
        for _ in range(3):  # recorded, then replayed as a CUDA graph
            torch.testing.assert_close(compiled(q, k, v, mask), ours * 2)
