"""Sampling with one GEMM for a layer's query/key/value projections and one for its gate/up projections.

A decode step of a small model at 64 rows is bound by its many small GEMMs, not by reading the weights:
on an H100 the ~0.5B Qwen2 shape's GEMMs took ~1.1 ms of a 2.4 ms step where reading the weights takes
~0.3 ms (docs/benchmarks.md, fifth session of 2026-11-26). Qwen2/Llama-style layers run seven per layer:
q, k and v on the same input, then gate and up on the same input. Concatenating the weights of each such
set (as vLLM's QKVParallelLinear and MergedColumnParallelLinear do) makes one GEMM of each: 4 instead of 7.

The engine samples with the trainer's own model, whose parameters must stay as they are (the optimizer,
checkpoints and FSDP see them), so the concatenated weights are a copy, refreshed from the parameters
at the start of every `generate` call (`merged_projections`): about 0.5 GB for the ~0.5B shape in bf16,
1.7 GB for the 1.5B one. While inside, each projection is replaced by a `_Part` of its set: the first
part called on an input runs the set's GEMM, every part returns its columns of the result, and the last
one drops it. Transformers' code, its compiled decode step included, calls the same modules as before.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterator

import torch

__all__ = ["MERGED_SETS", "merged_projections", "merged_tensors"]

# attribute names of projections that a layer applies to the same input, in the order they are called
MERGED_SETS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _MergedSet:
    """The concatenated weights of some nn.Linear on one input, and the latest input's result."""

    def __init__(self, linears: list[torch.nn.Linear]):
        self.linears = linears
        first = linears[0].weight
        rows = sum(linear.out_features for linear in linears)
        self.weight = torch.empty(rows, first.shape[1], dtype=first.dtype, device=first.device)
        biased = linears[0].bias is not None
        self.bias = torch.empty(rows, dtype=first.dtype, device=first.device) if biased else None
        self.bounds = []
        start = 0
        for linear in linears:
            self.bounds.append((start, start + linear.out_features))
            start += linear.out_features
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None
        self._left = 0

    def refresh(self) -> None:
        with torch.no_grad():
            torch.cat([linear.weight for linear in self.linears], out=self.weight)
            if self.bias is not None:
                torch.cat([linear.bias for linear in self.linears], out=self.bias)

    def part(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self._output is None or self._input is not x:
            self._output = torch.nn.functional.linear(x, self.weight, self.bias)
            self._input = x
            self._left = len(self.linears)
        start, stop = self.bounds[index]
        out = self._output[..., start:stop]
        self._left -= 1
        if self._left == 0:
            self._input = self._output = None
        return out

    def clear(self) -> None:
        self._input = self._output = None


class _Part(torch.nn.Module):
    """Stands in for one nn.Linear of a merged set. Its `weight` and `bias` are the original's Parameters,
    registered under the same names, so parameters() and state_dict() are as before."""

    def __init__(self, merged: _MergedSet, index: int):
        super().__init__()
        self.merged = merged
        self.index = index
        original = merged.linears[index]
        self.register_parameter("weight", original.weight)
        self.register_parameter("bias", original.bias)
        self.in_features, self.out_features = original.in_features, original.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merged.part(self.index, x)


def merged_tensors(module: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """The merged copies a module reads besides its parameters: a `_Part`'s set's weight (and bias)."""
    if isinstance(module, _Part):
        return tuple(t for t in (module.merged.weight, module.merged.bias) if t is not None)
    return ()


def _fusable(linears: list[Any]) -> bool:
    if not all(type(linear) is torch.nn.Linear for linear in linears):  # not LoRA, quantised or other wrappers
        return False
    first = linears[0].weight
    return all(type(linear.weight) is torch.nn.Parameter and linear.weight.dtype == first.dtype
               and linear.weight.device == first.device and linear.in_features == linears[0].in_features
               and (linear.bias is None) == (linears[0].bias is None) for linear in linears)


def _build(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Linear, _Part]]:
    swaps = []
    for module in model.modules():
        for names in MERGED_SETS:
            linears = [getattr(module, name, None) for name in names]
            if not _fusable(linears):
                continue
            merged = _MergedSet(linears)
            swaps.extend((module, name, linear, _Part(merged, i)) for i, (name, linear) in enumerate(zip(names, linears)))
    return swaps


# per model, the same parts on every call: compiled decode steps guard on the modules they call
_SWAPS: "weakref.WeakKeyDictionary[torch.nn.Module, list]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def merged_projections(model: torch.nn.Module, enabled: bool = True) -> Iterator[int]:
    """While inside, `model`'s fusable projection sets (MERGED_SETS, plain nn.Linear of one dtype and device)
    run as one GEMM each, from weights copied on entry. Yields the number of projections replaced."""
    if not enabled:
        yield 0
        return
    swaps = _SWAPS.get(model)
    if swaps is None or any(getattr(parent, name) is not original and getattr(parent, name) is not part
                            for parent, name, original, part in swaps):
        swaps = _SWAPS[model] = _build(model)
    for merged in {id(part.merged): part.merged for *_, part in swaps}.values():
        merged.refresh()
    for parent, name, _, part in swaps:
        setattr(parent, name, part)
    try:
        yield len(swaps)
    finally:
        for parent, name, original, part in swaps:
            setattr(parent, name, original)
            part.merged.clear()
