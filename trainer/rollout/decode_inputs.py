"""`generate`'s per-step bookkeeping of static-cache decode steps, with fewer operations on the host.

At 64 rows of the ~0.5B shape on an H100 the decode step is bound by the host: the GPU is busy about
1.5 ms per step while the host spends 2.2-2.4 ms driving it, and every small tensor operation costs
it 10-30 us (docs/benchmarks.md, seventh session of 2026-11-26). Two of the library's per-step
functions are model methods that models may override, and they are general where a decode step with
a static cache needs little:

  * `prepare_inputs_for_generation`: besides the inputs themselves, it reads the model's dtype and
    device (walking its parameters), the config (a Python `__getattribute__` per read in transformers
    5.19), the cache's `is_compileable` (over every layer) and more, every step. `lean_prepare` builds
    the same dict (same keys in the same order, the same tensors, made the same way) for a decode step
    of a StaticCache with the keys Qwen2/Llama-style models get, and calls the library otherwise.
  * `_update_model_kwargs_for_generation`: it extends the position ids with arange + add + add + cat
    and the mask with new_ones + cat; `lean_update` makes the same tensors with add + cat and one pad.

`lean_decode_inputs` installs both on the model while the engine generates (instance attributes, the
way a model class would override them) and removes them after. tests/trainer/test_decode_inputs.py
checks them against the library's functions at every call of real `generate` calls.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

__all__ = ["lean_decode_inputs"]

# model_kwargs a decoder-only model's decode step gets from `generate` (anything else: the library's path)
_DECODE_KWARGS = frozenset({"position_ids", "logits_to_keep", "use_cache"})
_UPDATE_KWARGS = frozenset({"attention_mask", "position_ids", "logits_to_keep", "past_key_values", "use_cache"})


def _contiguous(mask: Any) -> Any:
    if isinstance(mask, dict):
        return {k: v.contiguous() if v is not None else None for k, v in mask.items()}
    return mask.contiguous() if mask is not None else None


def lean_prepare(model: Any, library: Callable[..., Any], dtype: torch.dtype,
                 device: torch.device) -> Callable[..., Any]:
    from transformers.cache_utils import StaticCache
    from transformers.masking_utils import create_masks_for_generate

    def prepare_inputs_for_generation(input_ids: torch.Tensor, next_sequence_length: int | None = None,
                                      past_key_values: Any = None, attention_mask: torch.Tensor | None = None,
                                      inputs_embeds: torch.Tensor | None = None, is_first_iteration: bool | None = False,
                                      **kwargs: Any) -> dict[str, Any]:
        if (next_sequence_length != 1 or is_first_iteration or type(past_key_values) is not StaticCache
                or not kwargs.keys() <= _DECODE_KWARGS or input_ids.device != device
                or (attention_mask is not None and attention_mask.ndim != 2)):
            return library(input_ids, next_sequence_length=next_sequence_length, past_key_values=past_key_values,
                           attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                           is_first_iteration=is_first_iteration, **kwargs)
        # the library's steps 1-5 for this case: `clone` keeps the stride the compiled step saw
        inputs = {"input_ids": input_ids[:, -1:].clone(memory_format=torch.contiguous_format),
                  "past_key_values": past_key_values}
        position_ids = kwargs.get("position_ids")
        if position_ids is not None:
            inputs["position_ids"] = (position_ids if position_ids.shape[-1] == 1 else
                                      position_ids[..., -1:].clone(memory_format=torch.contiguous_format))
        create = getattr(model, "create_masks_for_generate", create_masks_for_generate)
        mask = create(config=model.config, inputs_embeds=torch.empty((input_ids.shape[0], 1, 0), dtype=dtype,
                                                                     device=device),
                      attention_mask=attention_mask, past_key_values=past_key_values,
                      position_ids=inputs.get("position_ids"), block_sequence_ids=None, token_type_ids=None,
                      mm_token_type_ids=None, is_first_iteration=is_first_iteration)
        mask = _contiguous(mask)
        if mask is not None:
            inputs["attention_mask"] = mask
        for key, value in kwargs.items():
            if key not in inputs:
                inputs[key] = value
        return inputs

    return prepare_inputs_for_generation


def lean_update(library: Callable[..., Any]) -> Callable[..., Any]:
    def _update_model_kwargs_for_generation(outputs: Any, model_kwargs: dict[str, Any],
                                            is_encoder_decoder: bool = False,
                                            num_new_tokens: int = 1) -> dict[str, Any]:
        cache = getattr(outputs, "past_key_values", None)
        if is_encoder_decoder or num_new_tokens != 1 or cache is None or not model_kwargs.keys() <= _UPDATE_KWARGS:
            return library(outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder,
                           num_new_tokens=num_new_tokens)
        model_kwargs["past_key_values"] = cache
        position_ids = model_kwargs.get("position_ids")
        if position_ids is not None:  # the library: arange(1) + last + 1, then cat
            model_kwargs["position_ids"] = torch.cat([position_ids, position_ids[..., -1:] + 1], dim=-1)
        mask = model_kwargs.get("attention_mask")
        if mask is not None:  # the library: cat with new_ones
            model_kwargs["attention_mask"] = torch.nn.functional.pad(mask, (0, 1), value=1)
        return model_kwargs

    return _update_model_kwargs_for_generation


@contextlib.contextmanager
def lean_decode_inputs(model: Any, enabled: bool = True) -> Iterator[bool]:
    """While inside, `model` prepares decode-step inputs with `lean_prepare` and `lean_update` (see the
    module docstring). Yields whether they were installed: not for encoder-decoder models, remote code,
    or models whose class overrides either function."""
    config = getattr(model, "config", None)
    from transformers.generation.utils import GenerationMixin
    own = any(getattr(type(model), name, None) is not getattr(GenerationMixin, name, None)
              for name in ("prepare_inputs_for_generation", "_update_model_kwargs_for_generation"))
    if (not enabled or config is None or own or getattr(config, "is_encoder_decoder", False)
            or model.is_remote_code() or "prepare_inputs_for_generation" in vars(model)
            or "_update_model_kwargs_for_generation" in vars(model)):
        yield False
        return
    model.prepare_inputs_for_generation = lean_prepare(model, model.prepare_inputs_for_generation, model.dtype,
                                                       model.device)
    model._update_model_kwargs_for_generation = lean_update(model._update_model_kwargs_for_generation)
    try:
        yield True
    finally:
        del model.prepare_inputs_for_generation, model._update_model_kwargs_for_generation
