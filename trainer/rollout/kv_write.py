"""A kept static cache's writes: a decode step's keys and values in one kernel, one position counter.

transformers' `StaticLayer.update` writes a layer's new keys and values with two `index_copy_` at
`arange(n) + cumulative_length`, then advances that layer's own counter (a 0-d device tensor). In the
compiled decode step (64 rows of the ~0.5B shape on an H100, 2026-11-27) that became, per layer, a
kernel for the keys' write fused with their rotary embedding (4.2-4.5 us, the time of a pass over the
whole ~10 MB cache rather than over the new keys), one for the values' (1.0 us), and, at the end of
the step, one one-element kernel per layer for its counter (24 of 1.1-1.4 us): about 0.17 ms of a
1.62 ms step with the gaps between kernels.

`lean_cache_writes(cache)` gives one cache (the engine's kept caches, static_cache_reuse.py) an
`update` that does the same with less:
  * one-position updates (decode steps) go to `write_kv`, a torch custom op whose CUDA kernel writes
    the keys and the values of every (row, head) at the counter's slot in one launch (the counter is
    read on the device: no host sync, the same op in every captured step); longer ones (a prompt's
    forward) use `index_copy_` as the library does;
  * all layers share one counter, advanced once per forward, by the last layer's update. Every
    layer's `cumulative_length` is that tensor, so `get_seq_length`, `reset` and the graphs' counter
    save and restore (graphed_decode.py) see the usual values.
This assumes what plain decoder stacks do: every layer updates the cache once per forward, in layer
order (the caches are kept only for plain full-attention StaticCaches of decoder-only models). The
layers' tensors are made as the library makes them: `early_initialization` when the cache is made
(static_cache_reuse.py, and the library for a chunked prefill), else `lazy_initialization` at the
prompt forward.

`write_kv(keys, values, key, value, position)`: keys/values [B, H, L, D] (written in place), key/value
[B, H, 1, D], position a 0-d int64 tensor on the same device (the slot). On CUDA with Triton one kernel;
elsewhere two `index_copy_`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import types
from typing import Any

import torch

__all__ = ["lean_cache_writes", "lean_update", "write_kv"]


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def write_kernel(keys_ptr, values_ptr, key_ptr, value_ptr, position_ptr, heads, length,
                     sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, snk_b, snk_h, snv_b, snv_h,
                     dim_k: tl.constexpr, dim_v: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr):
        row = tl.program_id(0)
        b, h = row // heads, row % heads
        position = tl.load(position_ptr)
        if position < length:  # a full cache is left as it is (the library's index_copy_ would fail)
            dk = tl.arange(0, BLOCK_K)
            key = tl.load(key_ptr + b * snk_b + h * snk_h + dk, mask=dk < dim_k)
            tl.store(keys_ptr + b * sk_b + h * sk_h + position * sk_l + dk, key, mask=dk < dim_k)
            dv = tl.arange(0, BLOCK_V)
            value = tl.load(value_ptr + b * snv_b + h * snv_h + dv, mask=dv < dim_v)
            tl.store(values_ptr + b * sv_b + h * sv_h + position * sv_l + dv, value, mask=dv < dim_v)

    return write_kernel


def _triton_ok(tensor: torch.Tensor) -> bool:
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"  # the CPU tests run the kernel so
    return (tensor.is_cuda or interpreted) and importlib.util.find_spec("triton") is not None


@torch.library.custom_op("verirl::write_kv", mutates_args=("keys", "values"))
def write_kv(keys: torch.Tensor, values: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             position: torch.Tensor) -> None:
    batch, heads, length, dim_k = keys.shape
    if not _triton_ok(keys) or keys.stride(3) != 1 or values.stride(3) != 1:
        slot = position.reshape(1)
        keys.index_copy_(2, slot, key)
        values.index_copy_(2, slot, value)
        return
    if key.stride(3) != 1 or value.stride(3) != 1:
        key, value = key.contiguous(), value.contiguous()
    from triton import next_power_of_2
    dim_v = values.shape[3]
    _kernel()[(batch * heads,)](
        keys, values, key, value, position, heads, length,
        keys.stride(0), keys.stride(1), keys.stride(2), values.stride(0), values.stride(1), values.stride(2),
        key.stride(0), key.stride(1), value.stride(0), value.stride(1),
        dim_k=dim_k, dim_v=dim_v, BLOCK_K=next_power_of_2(dim_k), BLOCK_V=next_power_of_2(dim_v))


@write_kv.register_fake
def _(keys, values, key, value, position):
    return None


def lean_update(self: Any, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
            **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """`Cache.update` of a cache given `lean_cache_writes` (see the module docstring)."""
    layers = self.layers
    layer = layers[layer_idx]
    if not layer.is_initialized:  # eager prompt forward: the library's tensors, then the shared counter
        layer.lazy_initialization(key_states, value_states)
        if layer_idx > 0:
            layer.cumulative_length = layers[0].cumulative_length
    counter = layer.cumulative_length
    length = key_states.shape[-2]
    if length == 1:
        write_kv(layer.keys, layer.values, key_states, value_states, counter)
    else:
        position = torch.arange(length, device=counter.device) + counter
        layer.keys.index_copy_(2, position, key_states)
        layer.values.index_copy_(2, position, value_states)
    if layer_idx == len(layers) - 1:
        counter.add_(length)
    return layer.keys, layer.values


def lean_cache_writes(cache: Any) -> bool:
    """Give `cache` (a plain, not offloaded StaticCache: static_cache_reuse.plain_static_cache) the
    update of the module docstring. Returns whether it did."""
    if getattr(cache, "offloading", False) or not cache.layers:
        return False
    layers = cache.layers
    if all(layer.is_initialized for layer in layers):  # made for a chunked prefill: share the first counter
        for layer in layers[1:]:
            layer.cumulative_length = layers[0].cumulative_length
    elif any(layer.is_initialized for layer in layers):
        return False
    cache.update = types.MethodType(lean_update, cache)
    return True
