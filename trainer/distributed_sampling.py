"""A torchrun step's batch: every rank samples a share of each round; dynamic sampling decided globally.

With W ranks and B = prompts_per_step, a round of `count` prompts is drawn from the one data order: the
round's prompts `position .. position + count` split into W consecutive shares of ceil(count / W), one
per rank (rounded up so every rank samples alike: vLLM tensor-parallel ranks must make the same calls).
Each rank samples and scores its share with its own seed (trainer/grpo.sample_round). The ranks then
gather their groups' zero-variance flags, so every rank knows the global order of the groups sampled
(round by round, rank by rank: the data order) and takes the same decisions:

  * dynamic sampling (DAPO) goes on while fewer than B groups carry signal, for at most
    max_sampling_rounds extra rounds, each of grpo.next_round_count prompts (the one-process rule);
  * the batch is grpo.choose_groups of that order (the first B groups with signal, filled with
    zero-variance ones if the cap was hit), and rank r trains on its consecutive B/W of them.

Without dynamic sampling (or when the first round's groups are the batch) rank r's share is the
groups it sampled, as before. Otherwise the chosen groups are exchanged (all_gather_object of the
groups a rank sampled and another needs): a rank may train on groups another rank sampled.

The batch's `Scored` keeps the rank's own counts (statuses, check means: every completion the rank
scored, as one process's metrics count every completion) with the per-completion lists of its batch
rows; `prompts_sampled`, `zero_std_sampled` and `reward_mean_sampled` are global.

`global_batch_std`: the std over every valid reward of the global batch, for the batch-std advantage.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import torch

from trainer.grpo import Batch, _add_seconds, choose_groups, judged_rewards, next_round_count, sample_round
from trainer.rewards import merge_scored

__all__ = ["round_share", "sample_shared_batch", "global_batch_std"]


def round_share(count: int, size: int) -> int:
    """Prompts per rank for a round of `count` prompts over `size` ranks (all ranks alike)."""
    return math.ceil(count / size)


def sample_shared_batch(cfg: Any, rank_cfg: Any, engine: Any, sampler: Any, client: Any, problems: list, tokenizer: Any,
                        rewards_cfg: Any, step: int, position: int, world: Any) -> Batch:
    """This rank's part of the step's global batch (see the module docstring). `cfg`: the run's config;
    `rank_cfg`: the rank's (its sampling seed); `world`: distributed.World."""
    from trainer.distributed import gather_objects  # (that module imports this one)
    B, G = cfg.rollout.prompts_per_step, cfg.rollout.group_size
    rank, size = world.rank, world.size
    rounds = []            # this rank's rounds
    order: list[tuple[int, int, int]] = []  # global group order: (round, rank, index within that rank's share)
    zero: list[bool] = []
    judged = [0.0, 0]      # global sum and count of judged rewards, every round
    drawn, count = 0, B
    while count:
        share = round_share(count, size)
        mine = sample_round(rank_cfg, engine, sampler, client, problems, tokenizer, rewards_cfg, step,
                            position + drawn + rank * share, share, len(rounds))
        ok = judged_rewards(mine.scored)
        for k, (flags, total, n) in enumerate(gather_objects((mine.zero, sum(ok), len(ok)), world)):
            order += [(len(rounds), k, j) for j in range(len(flags))]
            zero += flags
            judged[0] += total
            judged[1] += n
        rounds.append(mine)
        drawn += share * size
        count = next_round_count(cfg.algo, B, zero.count(False), len(zero), len(rounds))

    chosen = [order[i] for i in choose_groups(zero, B)]
    per_rank = B // size
    wanted = chosen[rank * per_rank:(rank + 1) * per_rank]
    if any(chosen[k * per_rank:(k + 1) * per_rank] != [(0, k, j) for j in range(per_rank)] for k in range(size)):
        # some rank trains on groups it did not sample: every rank sends the chosen groups it holds
        held = {key: _group_of(rounds[key[0]], key[2], G) for key in chosen if key[1] == rank}
        pool = {key: value for part in gather_objects(held, world) for key, value in part.items()}
        items = [pool[key] for key in wanted]
    else:
        items = [_group_of(rounds[0], j, G) for (_, _, j) in wanted]
    rows = merge_scored([s for _, _, s in items])
    everything = merge_scored([x.scored for x in rounds])  # the rank's own counts, the batch's rows
    scored = dataclasses.replace(everything, rewards=rows.rewards, valid=rows.valid, step_scores=rows.step_scores,
                                 step_char_ends=rows.step_char_ends)
    return Batch([p for p, _, _ in items], [g for _, g, _ in items], scored, len(rounds), drawn, sum(zero),
                 _add_seconds([x.seconds for x in rounds]), sum((x.stats for x in rounds), Counter()),
                 judged[0] / judged[1] if judged[1] else float("nan"))


def _group_of(round_: Any, j: int, G: int) -> tuple:
    """(problem, group, its G rows of the round's Scored) of group j of a round."""
    return round_.problems[j], round_.groups[j], round_.scored.rows(range(j * G, (j + 1) * G))


def global_batch_std(rewards: list[float], valid: list[bool], world: Any) -> torch.Tensor:
    """The population std of every rank's valid rewards together, in rank order (0 with fewer than two),
    as grpo_batch_std computes it over one process's batch."""
    from trainer.distributed import gather_objects
    every = [x for part in gather_objects([x for x, v in zip(rewards, valid) if v], world) for x in part]
    if len(every) < 2:
        return torch.tensor(0.0)
    return torch.tensor(every).std(unbiased=False)
