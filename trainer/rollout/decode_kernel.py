"""A split-KV ("flash-decoding") Triton kernel for the grouped-query decode step's attention.

At 64 rows of the ~0.5B Qwen2 shape, torch's memory-efficient kernel took 22 us per layer and decode
step on an H100 (24 layers: ~0.5 ms of a 2.3 ms step; docs/benchmarks.md, sixth session) to read ~9 MB
of KV cache, which takes ~3 us: it runs one thread block per (row, KV head), 128 blocks on 132 SMs,
each walking the whole cache alone, with a 64-row query tile for the 7 query heads folded onto a KV
head. Here the keys of each (row, KV head) are split across `splits` programs (Dao et al.'s
flash-decoding, 2023): each computes a partial softmax-weighted sum over its slice (online softmax),
and a second kernel combines the partials by their log-sum-exps. The query tile is 16 rows (tl.dot's
minimum), not 64. Where one program per (row, KV head) is enough (many rows, or a short cache) it
writes the output itself and there is no second kernel.

Tried (2026-11-27, H100, 64 rows of the ~0.5B shape): the combine done by the last of a pair's programs
to finish (a per-thread GPU fence, the block's barrier, an acquire-release ticket counter) instead of
by the second kernel. The partial kernel went from 7.1 to 11.4 us per layer against 7.1 + 2.7 for the
two kernels: slower, so not kept (docs/benchmarks.md).

`gqa_decode(q, k, v, mask, scale)`: q [B, KV, G, D] (a KV head's G query heads folded), k/v [B, KV, L,
D], mask None or bool [B, 1, 1, L] (True: attend; transformers' sdpa mask); returns [B, KV, G, D] in q's
dtype. A torch custom op (`verirl::gqa_decode`), so transformers' compiled decode step and its CUDA
graphs call it as one opaque op. `available(device)` says whether it can run (CUDA and Triton, or Triton's
interpreter for the CPU tests).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

__all__ = ["available", "gqa_decode", "split_count"]

TARGET_PROGRAMS = 264  # two programs per SM of an H100 (132 SMs) before the keys are split further
BLOCK_N = 64  # keys per inner step


def split_count(batch: int, kv_heads: int, length: int) -> int:
    """Programs per (row, KV head): enough for TARGET_PROGRAMS in all, at least one block of keys each."""
    wanted = -(-TARGET_PROGRAMS // max(1, batch * kv_heads))
    return max(1, min(wanted, -(-length // BLOCK_N)))


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def partial_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, acc_ptr, lse_ptr, out_ptr, scale, length, chunk,
                       sq_b, sq_h, sq_g, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, sm_b, sm_l, so_b, so_h, so_g,
                       groups: tl.constexpr, dim: tl.constexpr, splits: tl.constexpr, has_mask: tl.constexpr,
                       BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
        b, h, s = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        kv_heads = tl.num_programs(1)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, BLOCK_D)
        q = tl.load(q_ptr + b * sq_b + h * sq_h + g[:, None] * sq_g + d[None, :],
                    mask=(g[:, None] < groups) & (d[None, :] < dim), other=0.0)
        m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_G], tl.float32)
        acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
        start = s * chunk
        end = tl.minimum(start + chunk, length)
        for n0 in range(start, end, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            inside = n < end
            valid = inside
            if has_mask:
                valid = valid & (tl.load(mask_ptr + b * sm_b + n * sm_l, mask=inside, other=0) != 0)
            # a block of masked keys (cache slots not written yet, left padding) is skipped unread: a
            # static cache's decode step attends over the cache's whole length, most of it unwritten early on
            if tl.max(valid.to(tl.int32), 0) > 0:
                k = tl.load(k_ptr + b * sk_b + h * sk_h + n[:, None] * sk_l + d[None, :],
                            mask=valid[:, None] & (d[None, :] < dim), other=0.0)
                scores = tl.dot(q, tl.trans(k)).to(tl.float32) * scale  # [BLOCK_G, BLOCK_N]
                scores = tl.where(valid[None, :], scores, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(scores, 1))
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no key seen yet: nothing to rescale
                p = tl.exp(scores - m_safe[:, None])
                alpha = tl.exp(m_i - m_safe)
                v = tl.load(v_ptr + b * sv_b + h * sv_h + n[:, None] * sv_l + d[None, :],
                            mask=valid[:, None] & (d[None, :] < dim), other=0.0)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
                l_i = l_i * alpha + tl.sum(p, 1)
                m_i = m_new
        seen = l_i > 0  # a split whose keys are all masked adds nothing
        normalised = acc / tl.where(seen, l_i, 1.0)[:, None]
        if splits == 1:  # the program saw the whole row: the output itself, no combine
            tl.store(out_ptr + b * so_b + h * so_h + g[:, None] * so_g + d[None, :],
                     normalised.to(out_ptr.dtype.element_ty), mask=(g[:, None] < groups) & (d[None, :] < dim))
        else:
            row = ((b * kv_heads + h) * splits + s) * BLOCK_G + g
            tl.store(acc_ptr + row[:, None] * BLOCK_D + d[None, :], normalised)
            tl.store(lse_ptr + row, tl.where(seen, m_i + tl.log(tl.where(seen, l_i, 1.0)), float("-inf")))

    @triton.jit
    def combine_kernel(acc_ptr, lse_ptr, out_ptr, so_b, so_h, so_g,
                       groups: tl.constexpr, dim: tl.constexpr, splits: tl.constexpr,
                       BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
        """out = sum over splits of softmax(lse)_s x (split s's normalised output)."""
        b, h = tl.program_id(0), tl.program_id(1)
        kv_heads = tl.num_programs(1)
        sp = tl.arange(0, BLOCK_S)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, BLOCK_D)
        rows = ((b * kv_heads + h) * splits + sp[:, None]) * BLOCK_G + g[None, :]  # [BLOCK_S, BLOCK_G]
        lse = tl.load(lse_ptr + rows, mask=sp[:, None] < splits, other=float("-inf"))
        top = tl.max(lse, 0)
        weight = tl.exp(lse - tl.where(top == float("-inf"), 0.0, top)[None, :])
        total = tl.sum(weight, 0)
        weight = weight / tl.where(total > 0, total, 1.0)[None, :]
        part = tl.load(acc_ptr + rows[:, :, None] * BLOCK_D + d[None, None, :],
                       mask=(sp < splits)[:, None, None], other=0.0)  # [BLOCK_S, BLOCK_G, BLOCK_D]
        out = tl.sum(part * weight[:, :, None], 0)
        tl.store(out_ptr + b * so_b + h * so_h + g[:, None] * so_g + d[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=(g[:, None] < groups) & (d[None, :] < dim))

    return partial_kernel, combine_kernel


def available(device: torch.device | str) -> bool:
    """Whether the kernel can run on `device`: CUDA with Triton, or the CPU under TRITON_INTERPRET=1."""
    if not (torch.device(device).type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return importlib.util.find_spec("triton") is not None


@torch.library.custom_op("verirl::gqa_decode", mutates_args=())
def gqa_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               scale: float) -> torch.Tensor:
    batch, kv_heads, groups, dim = q.shape
    length = k.shape[2]
    splits = split_count(batch, kv_heads, length)
    chunk = -(-length // splits)
    chunk = -(-chunk // BLOCK_N) * BLOCK_N  # whole key blocks per program
    splits = -(-length // chunk)
    partial_kernel, combine_kernel = _kernels()
    from triton import next_power_of_2
    block_g, block_d = max(16, next_power_of_2(groups)), max(16, next_power_of_2(dim))
    partials = batch * kv_heads * splits * block_g if splits > 1 else 1  # one split: the output directly
    acc = torch.empty(partials, block_d, dtype=torch.float32, device=q.device)
    lse = torch.empty(partials, dtype=torch.float32, device=q.device)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if q.stride(3) != 1 or k.stride(3) != 1 or v.stride(3) != 1:
        q, k, v = (t.contiguous() for t in (q, k, v))
    has_mask = mask is not None
    mask_arg = mask.view(torch.uint8) if has_mask else q  # a bool tensor read as bytes; unused without a mask
    # a mask of one row serves all (broadcast over the batch)
    sm_b, sm_l = (mask.stride(0) if mask.shape[0] > 1 else 0, mask.stride(3)) if has_mask else (0, 0)
    partial_kernel[(batch, kv_heads, splits)](
        q, k, v, mask_arg, acc, lse, out, scale, length, chunk,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), sm_b, sm_l, out.stride(0), out.stride(1), out.stride(2),
        groups=groups, dim=dim, splits=splits, has_mask=has_mask, BLOCK_G=block_g, BLOCK_D=block_d, BLOCK_N=BLOCK_N)
    if splits > 1:
        combine_kernel[(batch, kv_heads)](
            acc, lse, out, out.stride(0), out.stride(1), out.stride(2),
            groups=groups, dim=dim, splits=splits, BLOCK_G=block_g, BLOCK_D=block_d,
            BLOCK_S=max(2, next_power_of_2(splits)))
    return out


@gqa_decode.register_fake
def _(q, k, v, mask, scale):
    return torch.empty_like(q, memory_format=torch.contiguous_format)
