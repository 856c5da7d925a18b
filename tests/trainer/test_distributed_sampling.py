"""A torchrun step's batch (trainer/distributed_sampling.py) in two gloo processes: each rank samples
shares of global rounds, dynamic sampling stops when the ranks together have enough groups with
signal, and the ranks' parts of the batch are the one-process choice over the global sampling order,
exchanged where a rank trains on groups another sampled. Rewards come from a real verifier server; the
engine is scripted (which prompts get a group with reward variance is the test's input)."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from tasks.types import Problem
from trainer.config import load_config
from trainer.grpo import batch_order, choose_groups
from trainer.distributed_sampling import round_share
from trainer.rollout import Completion, Group

ROOT = Path(__file__).resolve().parents[2]
N_PROBLEMS, B, G = 40, 4, 4
USEFUL = {3, 7, 11, 12, 19, 25, 30}  # problem numbers whose group gets one right answer of G


class ScriptedEngine:
    """Answers "7" (right) in the first completion for the problems in USEFUL, "3" everywhere else."""

    def generate(self, prompts, n, sampling):
        out = []
        for prompt in prompts:
            number = int(prompt.split(":")[0].split()[-1])
            texts = ["7" if (number in USEFUL and j == 0) else "3" for j in range(n)]
            out.append(Group(prompt=prompt, prompt_ids=(1,), completions=tuple(
                Completion(token_ids=(5, 0), text=t, logprobs=(-1.0, -1.0), finish_reason="stop") for t in texts)))
        return out


def _config(data: Path, dynamic: bool):
    return load_config(ROOT / "configs/demo.yaml", [
        "rollout.engine=hf", "data.source=jsonl", f"data.path={data}", "data.prompt_style=bare",
        f"rollout.prompts_per_step={B}", f"rollout.group_size={G}", f"algo.dynamic_sampling={str(dynamic).lower()}",
        "algo.max_sampling_rounds=3"])


def _data(tmp_path: Path) -> Path:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(Problem(id=f"q{i}", prompt=f"Question {i}: which number?\n", gold="7")
                                       .to_dict()) + "\n" for i in range(N_PROBLEMS)))
    return path


def _worker(rank: int, init_file: str, data: str, address: str, dynamic: bool, out: str) -> None:
    import torch.distributed as dist

    from trainer import distributed
    from trainer.distributed_sampling import global_batch_std, sample_shared_batch
    from trainer.grpo import load_problems
    from trainer.rewards import RewardSettings
    from verifier_service.client import VerifierClient
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        cfg = _config(Path(data), dynamic)
        world = distributed.World(rank, 2, "cpu")
        with VerifierClient(address, timeout=30) as client:
            results = []
            for step, position in ((0, 0), (1, 20)):
                batch = sample_shared_batch(cfg, cfg, ScriptedEngine(), None, client, load_problems(cfg), None,
                                            RewardSettings(math=1.0), step, position, world)
                std = float(global_batch_std(batch.scored.rewards, batch.scored.valid, world))
                results.append({"ids": [p.id for p in batch.problems], "rewards": batch.scored.rewards,
                                "texts": [c.text for g in batch.groups for c in g.completions],
                                "rounds": batch.rounds, "sampled": batch.prompts_sampled,
                                "zero": batch.zero_std_sampled, "mean": batch.reward_mean_sampled, "std": std,
                                "judged": sum(batch.scored.statuses["math"].values())})
        Path(f"{out}.{rank}").write_text(json.dumps(results))
    except BaseException:
        dist.destroy_process_group()
        raise
    distributed.end_process_group()
    distributed.leave(0)


def _expected(dynamic: bool, position: int) -> tuple[list[str], list[int], int, int]:
    """(the batch's problem ids, the rank that sampled each, rounds, prompts drawn) by the one-process
    rule over rounds of round_share(count, 2) prompts per rank."""
    from trainer.grpo import _draw_count
    order, sampler, drawn, rounds, count = [], [], 0, 0, B
    while True:
        share = round_share(count, 2)
        order += batch_order(N_PROBLEMS, 0, position + drawn, 2 * share)
        sampler += [0] * share + [1] * share
        drawn += 2 * share
        rounds += 1
        useful = sum(i in USEFUL for i in order)
        if not dynamic or useful >= B or rounds > 3:
            break
        count = _draw_count(B, useful, len(order))
    chosen = choose_groups([i not in USEFUL for i in order], B)
    return [f"q{order[b]}" for b in chosen], [sampler[b] for b in chosen], rounds, drawn


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [False, True])
def test_two_ranks_share_the_one_process_batch(tmp_path, verifier_address, dynamic):
    import torch.multiprocessing as mp
    data = _data(tmp_path)
    cfg = _config(data, dynamic)
    assert cfg.data.seed == 0  # _expected's data order
    out = tmp_path / "out"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(data), verifier_address, dynamic, str(out)), nprocs=2,
             join=True)
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(2)]
    exchanged = False
    for step, position in enumerate((0, 20)):
        zero, one = ranks[0][step], ranks[1][step]
        ids, samplers, rounds, drawn = _expected(dynamic, position)
        assert zero["ids"] + one["ids"] == ids  # rank r trains on its consecutive B/2 of the global batch
        assert len(zero["ids"]) == len(one["ids"]) == B // 2
        for part in (zero, one):
            assert (part["rounds"], part["sampled"]) == (rounds, drawn)
            for i, problem in enumerate(part["ids"]):  # each group's rows: its own texts, rewards and problem
                rows = part["texts"][i * G:(i + 1) * G]
                assert rows == ["7" if (int(problem[1:]) in USEFUL and j == 0) else "3" for j in range(G)]
                assert part["rewards"][i * G:(i + 1) * G] == [1.0 if t == "7" else 0.0 for t in rows]
        assert zero["zero"] == one["zero"] and zero["mean"] == one["mean"] and zero["std"] == one["std"]
        every = zero["rewards"] + one["rewards"]
        assert zero["std"] == pytest.approx(float(torch.tensor(every).std(unbiased=False)))
        assert zero["judged"] + one["judged"] == drawn * G  # each rank counts what it scored, once
        exchanged |= any(s != i // (B // 2) for i, s in enumerate(samplers))  # trained on by another rank
    if dynamic:
        assert any(r[s]["rounds"] > 1 for r in ranks for s in range(2))  # the script makes extra rounds happen
        assert exchanged  # and a rank trained on a group the other sampled
    else:
        assert all(r[s]["rounds"] == 1 for r in ranks for s in range(2))


def test_round_share_and_choose_groups():
    assert [round_share(c, 2) for c in (1, 2, 3, 4)] == [1, 1, 2, 2]
    assert round_share(5, 4) == 2 and math.ceil(7 / 3) == round_share(7, 3)
    # the first B with signal, filled with zero-variance groups, in sampling order
    assert choose_groups([True, False, True, False, False], 2) == [1, 3]
    assert choose_groups([True, False, True, True], 3) == [0, 1, 2]


def test_batch_std_override():
    from trainer.advantages import AdvantageInput, grpo_batch_std
    rewards = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    mask = torch.ones(4, 3)
    own = grpo_batch_std(AdvantageInput(rewards, valid, mask))
    wider = grpo_batch_std(AdvantageInput(rewards, valid, mask, batch_std=torch.tensor(0.25)))
    assert own.tokens[0, 0] == pytest.approx(-0.5 / (float(rewards.std(unbiased=False)) + 1e-6))
    assert wider.tokens[0, 0] == pytest.approx(-0.5 / (0.25 + 1e-6))
