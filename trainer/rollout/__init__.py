"""Rollout engines: sample groups of completions with the token ids and sampling log-probs.

One interface, two engines, picked by name from `ENGINES` (imported lazily so that a machine without
vLLM can use the transformers engine):

    engine.generate(prompts, n, sampling) -> list[Group]   # one group of n completions per prompt
    engine.sync_weights(model)                              # the trainer's current weights -> engine
    engine.sleep()                                          # release its memory until the next sync

`Completion.logprobs` are the log-probs of the sampled tokens under the distribution the engine sampled
from (temperature applied; top-p/top-k truncation too, which the trainer does not reproduce: keep them
off for RL or accept the bias in the importance ratio). The completion's token ids include the stop
token when the model stopped by itself, so the policy also learns when to stop; `text` excludes it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

__all__ = ["SamplingConfig", "Completion", "Group", "RolloutEngine", "ENGINES", "HF_CACHES", "engine_class", "build_engine"]


@dataclass(frozen=True)
class SamplingConfig:
    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1        # -1: off
    seed: int | None = None  # None: the engine's own RNG stream
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"bad sampling settings: {self}")


@dataclass(frozen=True)
class Completion:
    token_ids: tuple[int, ...]
    text: str
    logprobs: tuple[float, ...]  # one per token id: the engine's sampling log-prob
    finish_reason: str           # "stop" (EOS or a stop string) or "length" (truncated at max_tokens)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True)
class Group:
    prompt: str
    prompt_ids: tuple[int, ...]
    completions: tuple[Completion, ...]


class RolloutEngine(Protocol):
    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[Group]: ...

    def sync_weights(self, model: Any) -> None: ...

    def sleep(self) -> None: ...


# name -> "module:Class"; imported on first use only
HF_CACHES = ("dynamic", "static", "static_compiled", "paged")  # the hf engine's KV caches (hf_engine.py)
DECODE_KERNELS = ("sdpa", "split_kv")  # the hf engine's grouped-query decode attention (gqa_attention.py)
HF_SAMPLERS = ("fused", "library")  # who draws the hf engine's tokens (hf_engine.py, token_sampler.py)
ENGINES = {"vllm": "trainer.rollout.vllm_engine:VLLMEngine", "hf": "trainer.rollout.hf_engine:HFEngine"}


def engine_class(name: str) -> type:
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; known: {sorted(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_engine(options: Any, model_dir: Any, model: Any, tokenizer: Any, seed: int, *, torchrun: bool = False,
                 tensor_parallel: int = 1) -> Any:
    """The engine a recipe's `rollout` section asks for (`options`: trainer.config.EngineOptions): vLLM
    over the weights in `model_dir`, synced from the trainer after each update, or the transformers
    engine sampling with the trainer's `model` itself. `torchrun`: vLLM inside the job's process group,
    `tensor_parallel` ranks per engine (rollout/vllm_engine.py)."""
    o = options
    if o.engine == "vllm":
        return engine_class("vllm")(str(model_dir), dtype=o.vllm_dtype, max_model_len=o.max_model_len, seed=seed,
                                    kv_cache_gb=o.kv_cache_gb, gpu_memory_utilization=o.gpu_memory_utilization,
                                    sync_bucket_mb=o.sync_bucket_mb, sleep=o.vllm_sleep,
                                    enforce_eager=not o.vllm_compile, torchrun=torchrun,
                                    tensor_parallel=tensor_parallel, block_size=o.vllm_block_size)
    return engine_class("hf")(model, tokenizer, max_batch_sequences=o.hf_max_batch_sequences, cache=o.hf_cache,
                              gqa_decode=o.hf_gqa_decode, sampler=o.hf_sampler, deferred_stop=o.hf_deferred_stop,
                              merged=o.hf_merged_projections, decode_kernel=o.hf_decode_kernel)
