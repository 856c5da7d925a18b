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
counters: the counters are put back and the replay writes the same slots again. `generate`'s chunked
prefill asks `get_compiled_call` too: a prompt's forward in one chunk (hf_engine.py asks for that for
small prompt forwards) is graphed the same way, keyed by its own shape.

A graph reads and writes fixed addresses: the model's parameters and buffers, merged projection copies
(merged_projections.py), the KV cache. Without `kept`, graphs live as long as the `generate` call, for
which all of those stay where they are, and each call captures its own (18-34 ms of host time per
64-row call of the ~0.5B shape on an H100, 2026-11-27). With `kept` (a dict the caller holds), graphs
outlive the call and a later call replays them from its first decode step, without a capture, when its
key matches: the signature above, plus, computed once per call, the address, shape and dtype of every
parameter, buffer and merged copy, the identity of every module (a swapped module changes what the
compiled code calls) and the attention implementation. So an optimizer step (in place) keeps the
graphs, and a reload into new tensors, a module swap or another attention function makes new ones.
The cache is part of the signature by identity, and a graph holds its inputs, the cache among them:
the engine keeps one cache per batch size across calls (static_cache_reuse.py) and says, through
`keep_if`, which graphs may stay when a call ends (those of caches it still holds); graphs of an older
key go then too.

Anything else goes to the compiled call uncaptured: a cache other than a StaticCache of full-attention
layers, a non-tensor argument of an unexpected type, asking for attentions or hidden states (`output_*`:
the next replay would overwrite what `generate` keeps of them), a device that is not CUDA.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import torch

from trainer.rollout.merged_projections import merged_tensors
from trainer.rollout.static_cache_reuse import plain_static_cache

__all__ = ["GraphedDecodeCall", "graphed_decode", "model_key"]

_PLAIN = (bool, int, float, str, type(None))


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
        elif isinstance(value, dict) and all(isinstance(v, torch.Tensor) or v is None for v in value.values()):
            # per layer type; None: no mask (a prompt without padding, attention left causal)
            key.append((name, tuple((k, None) if v is None else (k, v.shape, v.dtype, v.stride())
                                    for k, v in value.items())))
        elif name == "past_key_values" and plain_static_cache(value):
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
            static[name] = {k: None if v is None else v.clone() for k, v in value.items()}
            places.extend((static[name][k], (name, k)) for k, v in value.items() if v is not None)
        else:
            static[name] = value
    return static, places


def model_key(model: Any) -> tuple:
    """What a graph of `model`'s decode step depends on besides its inputs (see the module docstring).
    Walks the modules' own parameter and buffer dicts (in module order, duplicates kept) rather than
    `named_parameters`: the same tensors without building their names (a third of the time, which is host
    time before every call's first step)."""
    modules = tuple(model.modules())
    tensors = []
    for module in modules:
        for group in (module._parameters, module._buffers):
            tensors += [(t.data_ptr(), t.shape, t.dtype) for t in group.values() if t is not None]
        tensors += [(t.data_ptr(), t.shape, t.dtype) for t in merged_tensors(module)]
    config = getattr(model, "config", None)
    return (getattr(config, "_attn_implementation", None), model.training, tuple(map(id, modules)), tuple(tensors))


class _Graph:
    def __init__(self, compiled: Callable[..., Any], inputs: dict[str, Any]):
        self.cache = inputs["past_key_values"]
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

    def __init__(self, compiled: Callable[..., Any], graphs: dict[tuple, _Graph] | None = None, prefix: tuple = ()):
        self.compiled = compiled
        self.graphs: dict[tuple, _Graph] = {} if graphs is None else graphs
        self.prefix = prefix
        self.captures = self.replays = self.uncaptured = 0
        self.capture_s = 0.0
        self.positions: int | None = None  # positions per row at the first call: > 1 for a prompt's forward

    def __call__(self, **inputs: Any) -> Any:
        if self.positions is None and isinstance(inputs.get("input_ids"), torch.Tensor):
            self.positions = inputs["input_ids"].shape[-1]
        key = _signature(inputs)
        if key is None:
            self.uncaptured += 1
            return self.compiled(**inputs)
        key = (self.prefix, key)
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
def graphed_decode(model: Any, enabled: bool = True, kept: dict | None = None,
                   keep_if: Callable[[_Graph], bool] = lambda graph: True,
                   mode: str | dict | None = None) -> Iterator[list[GraphedDecodeCall]]:
    """While inside, `generate`'s compiled decode call of `model` is a GraphedDecodeCall (one per
    `generate` call, listed in the yielded list). Not installed unless `enabled`, on CUDA, or where the
    model has its own `get_compiled_call`. `kept`: graphs kept across calls (see the module docstring);
    on leaving, those of this call's key for which `keep_if` holds stay in it, the rest go. `mode`:
    torch.compile's mode for the step (None: the default; "max-autotune-no-cudagraphs" times Triton's
    GEMM templates against cuBLAS per shape, benchmarks only; a dict: inductor options instead, e.g.
    {"combo_kernels": True}, the engine's default)."""
    calls: list[GraphedDecodeCall] = []
    if not enabled or model.device.type != "cuda" or "get_compiled_call" in vars(model):
        yield calls
        return
    compiled_by_mode = vars(model).setdefault("_verirl_compiled_decode", {})
    mode_key = tuple(sorted(mode.items())) if isinstance(mode, dict) else mode
    compiled = compiled_by_mode.get(mode_key)
    # every model of a process shares dynamo's recompile limit (8) for transformers' forward wrapper, whose
    # code object they all run: models, compiled calls of other backends (transformers' own) and shapes
    # (decode steps, prefills per prompt length) add up, and with fullgraph a hit is a hard failure. The
    # library raises it to 64 for its chunked prefill; so do we, whichever path runs first.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    if compiled is None:  # kept on the model: dynamo's cache entries stay valid across engines and calls
        how = {"options": dict(mode)} if isinstance(mode, dict) else {"mode": mode}
        compiled = compiled_by_mode[mode_key] = torch.compile(model.__call__, fullgraph=True, dynamic=False, **how)
    graphs = {} if kept is None else kept
    prefix = (mode_key, model_key(model)) if kept is not None else ()

    def get_compiled_call(compile_config: Any = None) -> GraphedDecodeCall:
        calls.append(GraphedDecodeCall(compiled, graphs, prefix))
        return calls[-1]

    model.get_compiled_call = get_compiled_call
    try:
        yield calls
    finally:
        del model.get_compiled_call
        # the graphs' memory pools go now, not at the next call (the counts stay): all of them without
        # `kept`, else those of another key or that `keep_if` refuses
        if kept is None:
            graphs.clear()
        for key in [key for key, graph in graphs.items() if key[0] != prefix or not keep_if(graph)]:
            del graphs[key]
