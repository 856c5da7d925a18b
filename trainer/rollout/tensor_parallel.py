"""One vLLM engine sharded over several torchrun ranks (tensor parallel), seen by each rank as its own.

With vLLM's external launcher every rank of a tensor-parallel group holds a shard of one engine and
runs the same scheduler: the ranks must submit the same requests in the same order, and with the same
seed they get the same outputs. The GRPO recipe gives each rank its own prompts, so `TensorParallelShare`
gathers the prompts of the group's ranks (in rank order), has the engine generate all of them on every
rank, and returns each rank its own share. Each rank then scores and trains on its share alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.distributed as dist

from trainer.rollout import Group, SamplingConfig

__all__ = ["TensorParallelShare", "tensor_parallel_group"]


def tensor_parallel_group(rank: int, world_size: int, size: int) -> Any:
    """The gloo group of this rank's `size` consecutive ranks (vLLM's layout of tensor-parallel ranks).
    A collective: every rank creates every group, in the same order."""
    if size < 1 or world_size % size:
        raise ValueError(f"rollout.vllm_tensor_parallel: {size} does not divide the {world_size} processes")
    mine = None
    for first in range(0, world_size, size):
        group = dist.new_group(list(range(first, first + size)), backend="gloo")
        if first <= rank < first + size:
            mine = group
    return mine


class TensorParallelShare:
    """The engine of a tensor-parallel group as one rank sees it: `generate` takes and returns this
    rank's prompts only. Every rank of the group must call it the same number of times."""

    def __init__(self, engine: Any, group: Any):
        self.engine = engine
        self.group = group

    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[Group]:
        shares: list[Any] = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(shares, list(prompts), group=self.group)
        everyone = [p for share in shares for p in share]
        groups = self.engine.generate(everyone, n, sampling)
        start = sum(len(share) for share in shares[:dist.get_rank(self.group)])
        return groups[start:start + len(prompts)]

    def sync_weights(self, model: Any) -> None:
        self.engine.sync_weights(model)

    def sleep(self) -> None:
        self.engine.sleep()
