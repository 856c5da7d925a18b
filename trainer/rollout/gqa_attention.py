"""Decode-step attention for grouped-query models that reads the KV cache once per KV head.

transformers' sdpa attention copies every KV head to each of its query heads (`repeat_kv`) whenever
there is an attention mask on CUDA, and a static cache (rollout.hf_cache=static*) always has one: on
an H100, generating 256 rows with the ~0.5B Qwen2 shape (14 query heads, 2 KV heads), those copies and
the attention that reads the 7x larger result took 58% of each decode step's GPU time
(docs/benchmarks.md, third session of 2026-11-26). At a decode step the query has one position, so a
KV head's query heads can be folded into the query-position dimension: one attention call over the
KV heads as they are, [B, kv_heads, group, d] against [B, kv_heads, L, d], with the same padding mask
for the whole group (it depends on the row and the key position only). The result is the same
attention; only the kernel's shapes change.

Used by the transformers engine during `generate` only (`decode_attention`), through transformers'
own AttentionInterface: the library's generation, with another attention function. On CUDA the
call goes to torch's memory-efficient kernel, or with `kernel="split_kv"` to our split-KV Triton kernel
(decode_kernel.py). Anything other than a one-position query of a
grouped-query layer (prefill, the trainer's passes, dropout, a paged cache, position biases) goes to
transformers' sdpa function unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from trainer.rollout import DECODE_KERNELS, decode_kernel
from trainer.rollout.decode_mask import lean_decode_masks

__all__ = ["NAME", "decode_attention", "gqa_decode_attention"]

NAME = "verirl_sdpa_gqa_decode"
SPLIT_KV_NAME = "verirl_split_kv_gqa_decode"


def gqa_decode_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                         is_causal: bool | None = None, split_kv: bool = False,
                         **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [B, H, q, d], key/value [B, kv, L, d]; returns
    [B, q, H, d]. `split_kv`: the decode call goes to decode_kernel.gqa_decode where it can run."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    groups = getattr(module, "num_key_value_groups", 1)
    if (query.shape[2] != 1 or groups <= 1 or dropout or kwargs.get("position_bias") is not None
            or kwargs.get("cache") is not None or kwargs.get("output_attentions")):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    folded = query.reshape(batch, key.shape[1], groups, dim)  # head h = kv head h // groups, as repeat_kv lays out
    mask = attention_mask
    if mask is not None and mask.ndim == 4:
        mask = mask[:, :, :, : key.shape[-2]]  # [B, 1, 1, L]: the same for every query head of a row
    if split_kv and (mask is None or mask.dtype == torch.bool) and dim <= 256 and groups <= 64:
        scale = scaling if scaling is not None else dim ** -0.5
        out = decode_kernel.gqa_decode(folded, key, value, mask, scale)  # decode_attention checked it can run
        return out.reshape(batch, 1, heads, dim), None
    # on CUDA torch's memory-efficient kernel: its first choice on an H100 is cuDNN's, which took 61 us per
    # layer and step at 256 rows of the ~0.5B shape; with this one the engine decoded 10-24% faster at
    # 256 and 512 rows and as fast at 64 (docs/benchmarks.md, 2026-11-26 fifth session)
    efficient = query.is_cuda and dim % 8 == 0 and dim <= 256
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION) if efficient else contextlib.nullcontext():
        out = torch.nn.functional.scaled_dot_product_attention(folded, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, 1, heads, dim), None


def split_kv_decode_attention(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    return gqa_decode_attention(*args, split_kv=True, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    for name, function in ((NAME, gqa_decode_attention), (SPLIT_KV_NAME, split_kv_decode_attention)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, sdpa_mask)  # the masks sdpa gets, so the fallback sees the same


@contextlib.contextmanager
def decode_attention(model: Any, kernel: str = "sdpa", lean_mask: bool = True) -> Iterator[bool]:
    """While inside, a grouped-query model running transformers' sdpa attention uses
    `gqa_decode_attention`, its decode calls through torch's sdpa (`kernel` "sdpa") or the split-KV
    Triton kernel ("split_kv", decode_kernel.py; sdpa where that cannot run); any other model is left as
    it is. With `lean_mask`, static-cache decode steps also get their mask from
    decode_mask.lean_decode_masks (the same mask, in two tensor operations). Yields whether it switched."""
    if kernel not in DECODE_KERNELS:
        raise ValueError(f"rollout.hf_decode_kernel must be one of {DECODE_KERNELS}, got {kernel!r}")
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    heads, kv_heads = getattr(config, "num_attention_heads", 0), getattr(config, "num_key_value_heads", None)
    if current != "sdpa" or not kv_heads or kv_heads >= heads or not hasattr(model, "set_attn_implementation"):
        yield False
        return
    _register()
    device = getattr(model, "device", torch.device("cpu"))
    split_kv = kernel == "split_kv" and decode_kernel.available(device)
    model.set_attn_implementation(SPLIT_KV_NAME if split_kv else NAME)
    try:
        with lean_decode_masks(model, lean_mask):
            yield True
    finally:
        model.set_attn_implementation(current)
