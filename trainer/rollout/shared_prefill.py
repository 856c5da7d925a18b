"""A group's prompt forward run once: the prompt's keys and values computed for one row of each group.

GRPO samples n completions of each prompt, and the engine hands `generate` each prompt n times over
(n rows next to each other). `generate`'s prompt forward then computes the same keys, values and
last logits n times: at 64 rows of 64 tokens of the ~0.5B shape on an H100 that forward took 7.4 ms
of a ~430 ms call, and for long prompts it is the bulk of the call (vLLM shares such prompt blocks
through its prefix cache). `shared_prompt_prefill(model, group, caches)` installs the model's
`_prefill` (the library's prompt-forward step of `generate`) while inside: for a kept static cache of
rows in groups of `group` identical prompts, it runs the library's `_prefill` on every group's first
row, into a view of the cache holding only those rows (`keys[::group]`: the same storage), then copies
their cached positions to the group's other rows and repeats the logits. Everything else (decode
steps, sampling, the cache `generate` goes on with) is unchanged.

It applies only where it is exact: a plain StaticCache kept by the engine (static_cache_reuse.py) with
lean writes (kv_write.py: one position counter, shared by the view), initialised (static_cache_reuse.py
makes its tensors when it makes the cache), rows a multiple of `group`, and no model inputs other than
token ids, the mask and position ids. The engine guarantees the grouping (it repeats the prompts
itself); `generate`'s own `num_return_sequences` groups rows the same way.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

import torch

from trainer.rollout.kv_write import lean_cache_writes, lean_update
from trainer.rollout.static_cache_reuse import StaticCaches, plain_static_cache

__all__ = ["cache_view", "shared_prompt_prefill"]

_SLICED = ("attention_mask", "position_ids")  # [rows, ...] model inputs taken from each group's first row
_KNOWN = frozenset(_SLICED + ("past_key_values", "use_cache", "logits_to_keep", "cache_position"))


def cache_view(cache: Any, group: int) -> Any:
    """A StaticCache over every `group`-th row of `cache`: its layers' tensors are strided views of
    `cache`'s, its position counter the same tensor; made once per group size and kept on `cache` (a
    CUDA graph of a prompt forward keys on it by identity). `view.viewed` is `cache`."""
    views = vars(cache).setdefault("_verirl_views", {})
    view = views.get(group)
    if view is None:
        view = copy.copy(cache)
        vars(view).pop("_verirl_views", None)
        view.layers = []
        for layer in cache.layers:
            part = copy.copy(layer)
            part.keys, part.values = layer.keys[::group], layer.values[::group]
            part.batch_size = part.keys.shape[0]
            view.layers.append(part)
        lean_cache_writes(view)  # its own update: the writes go to the view's layers
        view.viewed = cache
        views[group] = view
    return view


def _applies(cache: Any, group: int, rows: int, model_kwargs: dict) -> bool:
    return (group > 1 and rows % group == 0 and plain_static_cache(cache)
            and getattr(getattr(cache, "update", None), "__func__", None) is lean_update
            and all(layer.is_initialized for layer in cache.layers)
            and cache.layers[0].keys.shape[0] == rows and model_kwargs.keys() <= _KNOWN
            and all(model_kwargs.get(name) is None or model_kwargs[name].shape[0] == rows for name in _SLICED))


def _shared(library: Any, group: int, caches: StaticCaches) -> Any:
    def _prefill(input_ids: torch.Tensor, generation_config: Any, model_kwargs: dict,
                 is_first_iteration: bool = True) -> Any:
        cache = model_kwargs.get("past_key_values")
        rows = input_ids.shape[0]
        if not (is_first_iteration and caches.holds(cache) and _applies(cache, group, rows, model_kwargs)):
            return library(input_ids, generation_config, model_kwargs, is_first_iteration=is_first_iteration)
        firsts = dict(model_kwargs)
        for name in _SLICED:
            if firsts.get(name) is not None:
                firsts[name] = firsts[name][::group]
        firsts["past_key_values"] = cache_view(cache, group)
        outputs = library(input_ids[::group], generation_config, firsts, is_first_iteration=True)
        caches.shared_prefills += 1
        # each group's first row to its others, over the prompt's positions (the rest of the cache is zeroed)
        length = input_ids.shape[1]
        targets, sources = [], []
        for layer in cache.layers:
            for tensor in (layer.keys, layer.values):
                grouped = tensor.unflatten(0, (-1, group))[:, :, :, :length]
                targets.append(grouped[:, 1:])
                sources.append(grouped[:, :1].expand_as(grouped[:, 1:]))
        torch._foreach_copy_(targets, sources)
        fields = dict(outputs)  # a new output: a replayed graph's output object is reused by the next replay
        fields["logits"] = outputs.logits.repeat_interleave(group, dim=0)
        fields["past_key_values"] = cache
        return type(outputs)(**fields)

    return _prefill


@contextlib.contextmanager
def shared_prompt_prefill(model: Any, group: int, caches: StaticCaches | None) -> Iterator[bool]:
    """While inside, `generate`'s prompt forward on `model` is shared within groups of `group` rows where
    it applies (see the module docstring). Yields whether it was installed (not for group 1, without
    kept caches, for encoder-decoder models, or where the model has its own `_prefill`)."""
    config = getattr(model, "config", None)
    if (group <= 1 or caches is None or not caches.lean_writes or "_prefill" in vars(model)
            or getattr(config, "is_encoder_decoder", False) or not hasattr(model, "_prefill")):
        yield False
        return
    model._prefill = _shared(model._prefill, group, caches)
    try:
        yield True
    finally:
        del model._prefill
