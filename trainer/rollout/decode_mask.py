"""The attention mask of a static-cache decode step, made in two tensor operations.

With a static cache, `generate` builds each step's 4D mask before the compiled forward
(`prepare_inputs_for_generation` calls the model's `create_masks_for_generate`, or the library's).
The library's function is general (sliding windows, packed sequences, custom mask functions, every
attention backend): on the host it is Python over a dozen small tensor operations, about 0.15 ms of
each step on our 2-core CPU (cProfile) and 8-9 kernel launches on a GPU, for a mask that is trivial at
a decode step. There the query is the newest position, so the causal part only hides the cache slots
not written yet, which lie past the 2D padding mask `generate` keeps ([B, tokens so far]); the mask is
that padding mask, False-padded to the cache's length: [B, 1, 1, max_cache_len], bool, as the library's
sdpa mask is; without padding (`generate` then drops the mask) it is the slots written so far and the
new one (tests/trainer/test_decode_mask.py checks both equal to the library's at every step of a real
`generate`).

`lean_decode_masks` installs this as the model's `create_masks_for_generate` (the hook the library
looks up on the model) while the transformers engine decodes with our grouped-query attention, whose
decode call reads exactly that mask (gqa_attention.py). Anything else (a prompt's forward, a sliding
or chunked layer, a cache other than transformers' StaticCache, mask functions, a model with its own
`create_masks_for_generate`) goes to the function that was there.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

__all__ = ["causal_step_mask", "decode_step_mask", "lean_decode_masks"]


def decode_step_mask(attention_mask: torch.Tensor, cache_length: int) -> torch.Tensor:
    """[B, 1, 1, cache_length] bool: the 2D padding mask [B, n] (n <= cache_length) padded with False."""
    mask = attention_mask.bool()[:, None, None, :]
    return torch.nn.functional.pad(mask, (0, cache_length - attention_mask.shape[-1]), value=False)


def causal_step_mask(written: torch.Tensor, cache_length: int, batch: int) -> torch.Tensor:
    """[batch, 1, 1, cache_length] bool for rows without padding: slots 0..written (the `written` cached
    tokens, a 0-d device tensor, and the new one)."""
    slots = torch.arange(cache_length, device=written.device)
    return (slots <= written).expand(batch, 1, 1, cache_length)


def _full_attention_layers(config: Any) -> bool:
    """Every layer is plain causal attention (no sliding window, no chunks, a causal model)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if not getattr(text, "is_causal", True) or getattr(text, "attention_chunk_size", None) is not None:
        return False
    types = getattr(text, "layer_types", None)
    if types is not None:
        return set(types) == {"full_attention"}
    return getattr(text, "sliding_window", None) is None


def _lean(library: Callable[..., Any], config: Any) -> Callable[..., Any]:
    from transformers.cache_utils import StaticCache, StaticLayer
    keyed = getattr(config.get_text_config() if hasattr(config, "get_text_config") else config, "layer_types",
                    None) is not None  # the library returns {layer type: mask} for such configs

    def create(config: Any, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
               past_key_values: Any, position_ids: torch.Tensor | None = None,
               or_mask_function: Any = None, and_mask_function: Any = None,
               block_sequence_ids: Any = None, **kwargs: Any) -> Any:
        decode = (inputs_embeds.shape[1] == 1 and (attention_mask is None or attention_mask.ndim == 2)
                  and or_mask_function is None and and_mask_function is None and block_sequence_ids is None
                  and type(past_key_values) is StaticCache  # all StaticLayer: a full-attention config
                  and type(past_key_values.layers[0]) is StaticLayer)
        mask = None
        if decode:
            first = past_key_values.layers[0]
            length = first.max_cache_len
            if attention_mask is not None and attention_mask.shape[-1] <= length:
                mask = decode_step_mask(attention_mask, length)
            elif attention_mask is None and first.is_initialized and torch.is_tensor(first.cumulative_length):
                # no padding (`generate` drops an all-ones mask): the slots written so far and the new one
                mask = causal_step_mask(first.cumulative_length, length, inputs_embeds.shape[0])
        if mask is not None:
            return {"full_attention": mask} if keyed else mask
        return library(config=config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                       past_key_values=past_key_values, position_ids=position_ids,
                       or_mask_function=or_mask_function, and_mask_function=and_mask_function,
                       block_sequence_ids=block_sequence_ids, **kwargs)

    return create


@contextlib.contextmanager
def lean_decode_masks(model: Any, enabled: bool = True) -> Iterator[bool]:
    """While inside, `generate`'s static-cache decode steps get `decode_step_mask` (see the module
    docstring). Yields whether it was installed: not for models with a mask function of their own or
    layers other than plain causal attention."""
    config = getattr(model, "config", None)
    own = hasattr(model, "create_masks_for_generate")  # the library has none of its own on the model
    if not enabled or config is None or own or not _full_attention_layers(config):
        yield False
        return
    from transformers.masking_utils import create_masks_for_generate
    model.create_masks_for_generate = _lean(create_masks_for_generate, config)
    try:
        yield True
    finally:
        del model.create_masks_for_generate
