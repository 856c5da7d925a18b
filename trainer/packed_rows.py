"""A micro-batch's rows packed into one sequence without padding, for the trainer's log-prob and update
passes (`algo.pack_rows`).

Why: a micro-batch of GRPO rows is padded to its longest prompt and completion. On an H100 with the
issue's 0.36B benchmark model, a 128-row micro-batch of 316 columns held 49% real tokens: the update
ran at 45% MFU over every position it processed and 22% over the real tokens (docs/benchmarks.md,
fourth session of 2026-11-26). Packed, the model sees only real tokens.

How: the rows' real tokens are concatenated into one sequence [1, N] with position ids restarting at
each row, and attention is restricted to each row by variable-length flash attention
(`torch.nn.attention.varlen.varlen_attn`, causal, grouped-query heads as they are), registered
through transformers' AttentionInterface; the row boundaries (`cu_seq_lens_q`, `max_length_q`) reach
it as the forward's keyword arguments, the names transformers' own flash-attention path uses. Where
that kernel does not run (the CPU, float32, a torch without it), the same attention is computed one
row at a time with sdpa: slower, so such models run padded unless `force` (the tests).

Only a model running transformers' sdpa attention without sliding windows is packed; any other runs
padded (batches.sequence_logprobs).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Iterator

import torch

__all__ = ["NAME", "Packed", "can_pack", "pack", "packing", "packed_attention", "packing_model"]

NAME = "verirl_packed_rows"
FLASH_DTYPES = (torch.float16, torch.bfloat16)  # what the variable-length flash kernel takes
_PACKING: contextvars.ContextVar[Any] = contextvars.ContextVar("verirl_packing", default=None)


@functools.cache
def _varlen() -> tuple[Any, dict[str, bool]]:
    """torch's variable-length attention (None where this torch has none) and the keyword it needs for
    grouped-query heads (torch 2.11 takes them as they are; later versions ask for `enable_gqa`)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, {}
    return varlen_attn, ({"enable_gqa": True} if "enable_gqa" in inspect.signature(varlen_attn).parameters else {})


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature, for one packed sequence: query [1, H, N, d],
    key/value [1, kv, N, d]; causal within each row of `cu_seq_lens_q`. Returns [1, N, H, d]."""
    if dropout:
        raise ValueError("algo.pack_rows: attention dropout is not supported by packed rows")
    cu, longest = kwargs["cu_seq_lens_q"], kwargs["max_length_q"]
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))                        # [N, heads, d]
    varlen, gqa = _varlen()
    if varlen is not None and q.is_cuda and q.dtype in FLASH_DTYPES:
        out = varlen(q, k, v, cu, cu, longest, longest, scale=scaling, window_size=(-1, 0), **gqa)
    else:  # one row at a time
        bounds = cu.tolist()
        out = torch.cat([torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), is_causal=True,
            scale=scaling, enable_gqa=True).transpose(0, 1) for a, b in zip(bounds, bounds[1:])])
    return out[None], None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None  # packed rows need no mask: the row boundaries bound the attention


def can_pack(model: Any, force: bool = False) -> bool:
    """Whether `model` can run packed: sdpa attention, no sliding window, and the varlen kernel for its
    device and dtype (CUDA, fp16/bf16), or `force` (then the row-at-a-time fallback where it lacks)."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) not in ("sdpa", NAME) or not hasattr(model, "set_attn_implementation"):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    if any(t != "full_attention" for t in (getattr(config, "layer_types", None) or [])):
        return False
    weight = next(model.parameters())
    return force or (weight.device.type == "cuda" and weight.dtype in FLASH_DTYPES and _varlen()[0] is not None)


@contextlib.contextmanager
def packing(model: Any, enabled: bool = True, force: bool = False) -> Iterator[bool]:
    """While inside, batches.sequence_logprobs packs `model`'s rows (where `can_pack`). Yields whether."""
    if not enabled or not can_pack(model, force):
        yield False
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
    AttentionInterface.register(NAME, packed_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    current = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    token = _PACKING.set(model)
    try:
        yield True
    finally:
        _PACKING.reset(token)
        model.set_attn_implementation(current)


def packing_model() -> Any:
    """The model that the innermost `packing` packs, or None."""
    return _PACKING.get()


@dataclass(frozen=True)
class Packed:
    """Rows of a padded batch as one sequence: the forward's inputs and where the predictions are."""

    input_ids: torch.Tensor     # [1, N] every row's real tokens, row after row
    position_ids: torch.Tensor  # [1, N] restarting at 0 for each row
    cu_seq_lens: torch.Tensor   # [rows + 1] int32 row boundaries
    longest: int                # the longest row
    keep: torch.Tensor          # [rows, T] the position whose logits predict completion token t (clamped)


def pack(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
         completion_columns: int) -> Packed:
    """Pack left-padded prompts + right-padded completions ([n, P+T]; the real tokens of a row are
    contiguous, their position ids 0, 1, ...). One host sync (the row lengths)."""
    n, width = input_ids.shape
    P = width - completion_columns
    real = attention_mask.bool()
    lengths = attention_mask.sum(-1)
    prompt = attention_mask[:, :P].sum(-1)
    cu = torch.zeros(n + 1, dtype=torch.int32, device=input_ids.device)
    cu[1:] = lengths.cumsum(0)
    total, longest = (int(x) for x in torch.stack([lengths.sum(), lengths.max()]).tolist())
    keep = (cu[:-1] + prompt - 1)[:, None] + torch.arange(completion_columns, device=input_ids.device)
    return Packed(input_ids[real][None], position_ids[real][None], cu, longest, keep.clamp(0, max(total - 1, 0)))
