"""The hf engine's "paged" mode: transformers' continuous batching (`model.generate_batch`).

What the library does for us: a paged KV cache (no padding of prompts or of finished rows), rows
that finish leave the running batch at once, prefixes shared between the n samples of a prompt
(block sharing), and the sampling log-prob of every token, taken from the processed distribution
(after temperature, top-k, top-p: the convention of vLLM and of the other hf modes).

What we decide:
  * every sampling knob explicitly (a model's own generation_config, e.g. Qwen's top_k 20 and
    repetition_penalty 1.05, must not change the distribution behind the log-probs);
  * the KV cache's size: by default the library takes 80-90% of free accelerator memory (or of RAM
    on a CPU, which takes tens of seconds to allocate); here it is the blocks this call needs (every
    row's prompt plus max_tokens), so the trainer keeps its memory;
  * failures are errors: the library logs a failed or missing request and returns the others; a
    rollout with a hole would misalign groups, so any missing or failed row raises.

`options` are further ContinuousBatchingConfig fields (e.g. use_cuda_graph, use_async_batching),
which bench/bench_grpo_gpu.py compares.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from trainer.rollout import Completion, Group, SamplingConfig

__all__ = ["generate_paged", "kv_blocks"]

PAGE_TOKENS = 256  # tokens per KV block (the library's default page size)


def kv_blocks(prompt_lengths: Sequence[int], n: int, max_tokens: int, page: int = PAGE_TOKENS) -> int:
    """Blocks for `n` rows per prompt, each holding its prompt and `max_tokens` new tokens, plus one spare
    block per row (the scheduler reserves a block ahead of the token that needs it)."""
    return sum(n * (math.ceil((length + max_tokens) / page) + 1) for length in prompt_lengths)


def _generation_config(sampling: SamplingConfig, n: int, eos: int) -> Any:
    from transformers import GenerationConfig

    greedy = sampling.temperature == 0
    return GenerationConfig(
        do_sample=not greedy, max_new_tokens=sampling.max_tokens, num_return_sequences=n,
        temperature=1.0 if greedy else sampling.temperature,
        top_k=sampling.top_k if sampling.top_k > 0 and not greedy else None,
        top_p=sampling.top_p if sampling.top_p < 1.0 and not greedy else None,
        min_p=None, typical_p=None, repetition_penalty=None,
        eos_token_id=eos, pad_token_id=eos)


def _completion(tokenizer: Any, tokens: list[int], logprobs: list[float], eos: int) -> Completion:
    if len(logprobs) != len(tokens):
        raise RuntimeError(f"paged generation returned {len(logprobs)} log-probs for {len(tokens)} tokens")
    stopped = eos in tokens
    end = tokens.index(eos) + 1 if stopped else len(tokens)  # keep EOS: the policy learns to stop
    return Completion(token_ids=tuple(tokens[:end]), text=tokenizer.decode(tokens[:end], skip_special_tokens=True),
                      logprobs=tuple(float(x) for x in logprobs[:end]), finish_reason="stop" if stopped else "length")


def generate_paged(model: Any, tokenizer: Any, prompts: Sequence[str], n: int, sampling: SamplingConfig,
                   prompts_per_call: int, options: dict | None = None) -> list[Group]:
    """Groups of `n` completions per prompt, `prompts_per_call` prompts per `generate_batch` call."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    eos = tokenizer.eos_token_id
    groups: list[Group] = []
    for start in range(0, len(prompts), prompts_per_call):
        chunk = list(prompts[start:start + prompts_per_call])
        ids = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in chunk]
        rows = len(chunk) * n
        config = ContinuousBatchingConfig(
            return_logprobs=True, seed=sampling.seed,
            num_blocks=kv_blocks([len(x) for x in ids], n, sampling.max_tokens),
            max_batch_tokens=max(rows, sum(len(x) for x in ids)),  # all prefills in one pass, all rows decode together
            max_requests_per_batch=rows, **(options or {}))
        out = model.generate_batch(ids, generation_config=_generation_config(sampling, n, eos),
                                   continuous_batching_config=config, progress_bar=False)
        results = list(out.values())  # in input order, the n samples of a prompt together
        failed = [r for r in results if r.error is not None]
        if len(results) != rows or failed:
            raise RuntimeError(f"paged generation returned {len(results)} of {rows} rows"
                               + (f"; {len(failed)} failed, first {failed[0].request_id}: {failed[0].error}"
                                  if failed else ""))
        for i, prompt in enumerate(chunk):
            completions = tuple(_completion(tokenizer, list(r.generated_tokens), list(r.logprobs), eos)
                                for r in results[i * n:(i + 1) * n])
            groups.append(Group(prompt=prompt, prompt_ids=tuple(ids[i]), completions=completions))
    return groups
