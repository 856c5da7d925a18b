"""Static-cache decode steps replayed from a CUDA graph, without dynamo's guards at every step.

With `cache_implementation="static"` and compilation on, `generate` runs each decode step through the
model's `get_compiled_call`: `torch.compile(mode="reduce-overhead")`, whose CUDA graphs (cudagraph
trees) are launched behind dynamo's guard evaluation and the trees' own bookkeeping. At 64 rows of the
~0.5B shape on an H100 that call took 0.7-1.0 ms of host time per step while the GPU was busy ~1.46 ms,
the rest of the loop taking ~0.9 ms more: the step waited on the host (docs/benchmarks.md, seventh
session of 2026-11-26). ~560 guards (parameters, module dicts, config attributes) are checked at every
step although, within one `generate` call, nothing they check can change.

`graphed_decode` installs a `get_compiled_call` that returns a `GraphedDecodeCall` for the `generate`
call: at its first decode step of an input signature (shapes and dtypes of the tensors, the cache
object, the other arguments' values) it runs the step once through `torch.compile` without CUDA
graphs (compiling it the first time in the process), then captures the same compiled call into a
`torch.cuda.CUDAGraph`; every step after copies its inputs into the captured ones and replays the
graph. The run before the capture wrote this step's keys and values into the cache and advanced its
counters: the counters are put back and the replay writes the same slots again. Graphs live as long as
the `generate` call (its cache, the model's parameters and merged projections stay where they are
for that long); each call captures its own, at a cost not measured yet (`capture_s`; the benchmark
reports it as capture_ms). Keeping graphs across calls would need every address a graph reads
(parameters, merged copies, the cache) checked at each call: not done.

Anything else goes to the compiled call uncaptured: a cache other than a StaticCache of full-attention
layers, a non-tensor argument of an unexpected type, asking for attentions or hidden states (`output_*`:
the next replay would overwrite what `generate` keeps of them), a device that is not CUDA.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import torch

__all__ = ["GraphedDecodeCall", "graphed_decode"]

_PLAIN = (bool, int, float, str, type(None))


def _static_cache(cache: Any) -> bool:
    from transformers.cache_utils import StaticCache, StaticLayer
    return type(cache) is StaticCache and all(type(layer) is StaticLayer for layer in cache.layers)


def _signature(inputs: dict[str, Any]) -> tuple | None:
    """What a captured graph depends on besides tensor contents; None: not capturable."""
    key: list = []
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            key.append((name, value.shape, value.dtype, value.stride()))
        elif isinstance(value, _PLAIN):
            if name.startswith("output_") and value:  # kept outputs besides the logits would be overwritten
                return None
            key.append((name, value))
        elif isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            key.append((name, tuple((k, v.shape, v.dtype, v.stride()) for k, v in value.items())))
        elif name == "past_key_values" and _static_cache(value):
            key.append((name, id(value)))  # the call holds the cache: its id is not reused meanwhile
        else:
            return None
    return tuple(key)


def _clone_inputs(inputs: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[torch.Tensor, tuple]]]:
    """Inputs whose tensors are the graph's own copies, and (copy, where in `inputs` it comes from)."""
    static: dict[str, Any] = {}
    places: list[tuple[torch.Tensor, tuple]] = []
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            static[name] = value.clone()
            places.append((static[name], (name,)))
        elif isinstance(value, dict):
            static[name] = {k: v.clone() for k, v in value.items()}
            places.extend((static[name][k], (name, k)) for k in value)
        else:
            static[name] = value
    return static, places


class _Graph:
    def __init__(self, compiled: Callable[..., Any], inputs: dict[str, Any]):
        static, self.places = _clone_inputs(inputs)
        counters = [layer.cumulative_length for layer in inputs["past_key_values"].layers]
        saved = [c.clone() for c in counters]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            compiled(**static)  # compiles on first use; writes this step's keys and values, as the replay will
            for counter, value in zip(counters, saved):
                counter.copy_(value)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = compiled(**static)
        self.graph.replay()

    def replay(self, inputs: dict[str, Any]) -> Any:
        for buffer, place in self.places:
            source = inputs[place[0]] if len(place) == 1 else inputs[place[0]][place[1]]
            buffer.copy_(source)
        self.graph.replay()
        return self.output


class GraphedDecodeCall:
    """The decode call of one `generate` call (see the module docstring). `captures`, `replays` and
    `uncaptured` count what it did, `capture_s` is the host time its captures took, the run before
    each included (tests, benchmarks)."""

    def __init__(self, compiled: Callable[..., Any]):
        self.compiled = compiled
        self.graphs: dict[tuple, _Graph] = {}
        self.captures = self.replays = self.uncaptured = 0
        self.capture_s = 0.0

    def __call__(self, **inputs: Any) -> Any:
        key = _signature(inputs)
        if key is None:
            self.uncaptured += 1
            return self.compiled(**inputs)
        graph = self.graphs.get(key)
        if graph is None:
            start = time.perf_counter()
            self.graphs[key] = graph = _Graph(self.compiled, inputs)
            self.capture_s += time.perf_counter() - start
            self.captures += 1
            return graph.output
        self.replays += 1
        return graph.replay(inputs)


@contextlib.contextmanager
def graphed_decode(model: Any, enabled: bool = True) -> Iterator[list[GraphedDecodeCall]]:
    """While inside, `generate`'s compiled decode call of `model` is a GraphedDecodeCall (one per
    `generate` call, listed in the yielded list). Not installed unless `enabled`, on CUDA, or where the
    model has its own `get_compiled_call`."""
    calls: list[GraphedDecodeCall] = []
    if not enabled or model.device.type != "cuda" or "get_compiled_call" in vars(model):
        yield calls
        return
    compiled = getattr(model, "_verirl_compiled_decode", None)
    if compiled is None:  # kept on the model: dynamo's cache entries stay valid across engines and calls
        compiled = model._verirl_compiled_decode = torch.compile(model.__call__, fullgraph=True, dynamic=False)

    def get_compiled_call(compile_config: Any = None) -> GraphedDecodeCall:
        calls.append(GraphedDecodeCall(compiled))
        return calls[-1]

    model.get_compiled_call = get_compiled_call
    try:
        yield calls
    finally:
        del model.get_compiled_call
        for call in calls:  # the graphs' memory pools go now, not at the next call (the counts stay)
            call.graphs.clear()
