"""`TensorParallelShare` in two gloo processes: both ranks' engines are asked for the same requests, all
of the group's prompts in rank order (what vLLM's tensor-parallel ranks need), and each rank gets back
the groups of its own prompts, whatever their number; group sizes that do not divide are errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trainer.rollout import Completion, Group, SamplingConfig

PROMPTS = {0: ["a0", "a1", "a2"], 1: ["b0"]}  # rank -> its prompts (uneven on purpose)


class EchoEngine:
    """Returns a group per prompt whose completion texts name the prompt; records every request."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []

    def generate(self, prompts, n, sampling):
        self.requests.append(list(prompts))
        return [Group(p, (1,), tuple(Completion((2,), f"{p}/{i}", (-0.5,), "stop") for i in range(n)))
                for p in prompts]


def _worker(rank: int, init_file: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    from trainer.distributed import end_process_group, leave
    from trainer.rollout.tensor_parallel import TensorParallelShare, tensor_parallel_group
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        engine = EchoEngine()
        share = TensorParallelShare(engine, tensor_parallel_group(rank, 2, 2))
        got = [share.generate(PROMPTS[rank], 2, SamplingConfig()) for _ in range(2)]
        torch.save({"requests": engine.requests, "got": got}, f"{out}.{rank}")
    except BaseException:
        dist.destroy_process_group()
        raise
    end_process_group()
    leave(0)


def test_each_rank_gets_its_own_share_of_the_shared_requests(tmp_path):
    import torch
    import torch.multiprocessing as mp
    out = tmp_path / "share"
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(out)), nprocs=2, join=True)
    everyone = PROMPTS[0] + PROMPTS[1]
    for rank in (0, 1):
        result = torch.load(f"{out}.{rank}", weights_only=False)
        assert result["requests"] == [everyone, everyone]  # the same requests, in rank order, on both ranks
        for groups in result["got"]:
            assert [g.prompt for g in groups] == PROMPTS[rank]
            assert [c.text for c in groups[0].completions] == [f"{PROMPTS[rank][0]}/0", f"{PROMPTS[rank][0]}/1"]


def test_group_size_must_divide_the_world():
    from trainer.rollout.tensor_parallel import tensor_parallel_group
    with pytest.raises(ValueError, match=r"rollout\.vllm_tensor_parallel: 3 does not divide the 4 processes"):
        tensor_parallel_group(0, 4, 3)
