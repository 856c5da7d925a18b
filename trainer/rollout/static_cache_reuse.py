"""One static KV cache per batch size, kept across `generate` calls instead of a new one each call.

With `cache_implementation="static"`, `generate` makes a new `StaticCache` at every call
(`_prepare_static_cache`), whose key and value tensors are allocated at the prompt's forward. A CUDA
graph of a decode step (graphed_decode.py) reads and writes those tensors at fixed addresses, so a new
cache means a new graph: the graph of a 64-row decode step of the ~0.5B shape took 18-34 ms of a
430-540 ms call to capture on an H100 (docs/benchmarks.md, 2026-11-27). A cache that stays where it is lets
the next call replay the graphs of the last one.

`reused_static_caches(model, caches)` installs the model's `_prepare_static_cache` (the hook
`generate` calls to make the cache) while inside: for a plain static cache of a decoder-only model
(not offloaded; with or without a chunked prefill) it hands back the cache kept in `caches` for that batch size, reset
in place (keys, values and position counters zeroed, tensors where they were), if it is at least as
long as asked for; otherwise it makes one with the library's function and keeps that. As `generate`
does itself, the length a model asks for never shrinks (the library keeps the longest so far), so a
kept cache is as long as a new one would be. `generate` sees a cache it made itself: nothing else
about the call changes (the deferred stop check, which treats a cache passed in by the caller as one to
roll back, included). A kept cache also writes its keys and values through kv_write.py's
`lean_cache_writes` (one kernel per layer and decode step, one position counter), unless the
`StaticCaches` says not to (`lean_writes`, benchmarks).
"""

from __future__ import annotations

import collections
import contextlib
from typing import Any, Iterator

from trainer.rollout.kv_write import lean_cache_writes

__all__ = ["StaticCaches", "plain_static_cache", "reused_static_caches"]


class StaticCaches:
    """The kept caches, by batch size, the most recently used last; at most `capacity` of them.
    `reused` and `made` count the calls that got a kept cache and those that made one."""

    def __init__(self, capacity: int = 2, lean_writes: bool = True):
        self.capacity = capacity
        self.lean_writes = lean_writes  # kept caches write through kv_write.lean_cache_writes
        self.by_batch: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self.reused = 0
        self.made = 0
        self.shared_prefills = 0  # prompt forwards run on one row per group (shared_prefill.py)

    def get(self, batch_size: int, max_cache_len: int, dtype: Any, device: Any) -> Any | None:
        cache = self.by_batch.get(batch_size)
        if cache is None:
            return None
        layers = cache.layers
        if not (all(layer.is_initialized for layer in layers) and layers[0].keys.shape[0] == batch_size
                and layers[0].keys.dtype == dtype and layers[0].keys.device == device
                and all(layer.max_cache_len >= max_cache_len for layer in layers)):
            return None
        self.by_batch.move_to_end(batch_size)
        return cache

    def keep(self, batch_size: int, cache: Any) -> None:
        self.by_batch[batch_size] = cache
        self.by_batch.move_to_end(batch_size)
        while len(self.by_batch) > self.capacity:
            self.by_batch.popitem(last=False)

    def holds(self, cache: Any) -> bool:
        """Whether `cache`, or the cache it is a view of (shared_prefill.cache_view), is kept."""
        cache = getattr(cache, "viewed", cache)
        return any(kept is cache for kept in self.by_batch.values())

    def clear(self) -> None:
        self.by_batch.clear()


def plain_static_cache(cache: Any) -> bool:
    """A transformers StaticCache whose layers are all plain full-attention StaticLayers."""
    from transformers.cache_utils import StaticCache, StaticLayer
    return type(cache) is StaticCache and all(type(layer) is StaticLayer for layer in cache.layers)


def _initialise(model: Any, cache: Any, batch_size: int) -> None:
    """Make a kept cache's tensors now, as the library does for a chunked prefill, rather than at the
    prompt forward: the first call's prompt forward can then be shared like the later ones'
    (shared_prefill.py needs the tensors to view), giving the same numbers in every call."""
    shape = getattr(model, "_get_static_cache_init_shape", lambda: None)()
    if shape is not None and not any(layer.is_initialized for layer in cache.layers):
        cache.early_initialization(batch_size=batch_size, num_heads=shape[0], head_dim=shape[1], dtype=model.dtype,
                                   device=model.device)


@contextlib.contextmanager
def reused_static_caches(model: Any, caches: StaticCaches | None) -> Iterator[None]:
    """While inside, `generate` on `model` gets its static caches from `caches` (see the module
    docstring). Nothing is installed without `caches`, for an encoder-decoder model, or where the
    library has no `_prepare_static_cache` or the model has its own."""
    library = getattr(type(model), "_prepare_static_cache", None)
    config = getattr(model, "config", None)
    if (caches is None or library is None or "_prepare_static_cache" in vars(model)
            or getattr(config, "is_encoder_decoder", False)):
        yield
        return

    def prepare(cache_implementation: str, batch_size: int, max_cache_len: int, prefill_chunk_size: Any,
                model_kwargs: Any) -> Any:
        plain = cache_implementation == "static"  # a chunked prefill's cache is made initialized: kept as well
        wanted = max(max_cache_len, getattr(model, "_previous_max_cache_length", -1))
        cache = caches.get(batch_size, wanted, model.dtype, model.device) if plain else None
        if cache is not None:
            cache.reset()
            model._previous_max_cache_length = max(layer.max_cache_len for layer in cache.layers)
            caches.reused += 1
            return cache
        cache = library(model, cache_implementation=cache_implementation, batch_size=batch_size,
                        max_cache_len=max_cache_len, prefill_chunk_size=prefill_chunk_size, model_kwargs=model_kwargs)
        if plain and plain_static_cache(cache) and not getattr(cache, "offloading", False):
            if caches.lean_writes:
                _initialise(model, cache, batch_size)
                lean_cache_writes(cache)
            caches.keep(batch_size, cache)
            caches.made += 1
        return cache

    model._prepare_static_cache = prepare
    try:
        yield
    finally:
        del model._prepare_static_cache
