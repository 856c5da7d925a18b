"""Regional compilation of the policy: each decoder layer's call through torch.compile, on for the
trainer's own passes (log-probs and the update) and off for everything else (generation).

Why regional: the update of a ~0.36B model in 32-row micro-batches is bound by kernel launches (2,547 per
micro-batch, more CPU time than GPU time); compiling the decoder layers fuses their norms, rotary
embedding, activation and residuals in the forward and the backward. The layers share one code object,
so one compiled graph serves all of them. Compiling the whole model instead recompiled every step
(attention-mask building and the generation paths inside it: 34 s per update on an H200,
docs/benchmarks.md). The layers are compiled with dynamic shapes from the start (the batch's length
changes every step; compiled for the first shape, they recompiled and the update was 3.5x slower than
eager), once with gradients and once without.

Why switched: the rollout engine of the transformers backend runs the same module for generation, with
its own caches and, in `static_compiled`, its own torch.compile of the whole forward; the layers' compiled
calls are attached only inside `active()`.

    layers = CompiledLayers(policy, enabled=cfg.algo.compile_layers)
    with layers.active():
        ... forward / backward passes of the trainer ...
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

__all__ = ["CompiledLayers", "decoder_layers"]


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks of a transformers decoder (`model.base_model.layers`); ValueError naming the
    option (algo.compile_layers) if the model has none."""
    layers = getattr(getattr(model, "base_model", model), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        raise ValueError(f"algo.compile_layers: {type(model).__name__} has no base_model.layers to compile")
    return list(layers)


class CompiledLayers:
    """The compiled calls of a model's decoder layers (compiled lazily, on their first use), attached
    while `active()`. Disabled: `active()` does nothing."""

    def __init__(self, model: Any, enabled: bool) -> None:
        self._layers = decoder_layers(model) if enabled else []
        self._calls = [torch.compile(layer._call_impl, dynamic=True) for layer in self._layers]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        # nn.Module.__call__ runs `_compiled_call_impl` when it is set: what Module.compile() sets for good
        for layer, call in zip(self._layers, self._calls):
            layer._compiled_call_impl = call
        try:
            yield
        finally:
            for layer in self._layers:
                # gone from the instance again, not set to None: the engine's compiled generation graph
                # guards on the attribute's absence, and would recompile once if it stayed
                layer.__dict__.pop("_compiled_call_impl", None)
