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

__all__ = ["SamplingConfig", "Completion", "Group", "RolloutEngine", "ENGINES", "HF_CACHES", "engine_class"]


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
