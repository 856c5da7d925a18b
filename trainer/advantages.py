"""Advantages as named functions, picked once from `ADVANTAGES` by the config's `algo.advantage`.

Every function maps an `AdvantageInput` to per-token advantages `[N, T]` (N = B*G completions, row
b*G + g is completion g of prompt b) plus which groups carry no signal:

    "grpo"            A_i = (r_i - mean_group) / (std_group + eps)          DeepSeekMath's outcome GRPO
    "grpo_batch_std"  A_i = (r_i - mean_group) / (std_batch + eps)          std over every valid reward
    "dr_grpo"         A_i = r_i - mean_group                                Dr. GRPO: no std division
    "process"         PRM step rewards normalised over the group (all steps of all its completions
                      together); token t gets the sum of the normalised rewards of the steps that end
                      at or after t (DeepSeekMath's process supervision)
    "outcome_process" "grpo" + process_weight * "process"

Choices where papers leave room: std is the population std (ddof 0), so a group of two rewards {0, 1}
gets advantages -1/+1. Completions whose reward could not be judged and are excluded (`valid` False)
take no part in any mean or std and get advantage 0. A group is "zero-variance" when the std of its
valid rewards is 0 (not when its mean is 0 or 1: a group of all 0.5 is as useless) or it has fewer than
two valid members; the trainer drops such groups from the loss when `algo.filter_zero_std` is on and
counts them either way. Tokens after the last step's end (e.g. EOS) get no process advantage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["AdvantageInput", "Advantages", "ADVANTAGES", "NEEDS_STEPS", "group_stats", "zero_variance",
           "grpo", "grpo_batch_std", "dr_grpo", "process", "outcome_process"]

ZERO_STD = 1e-8  # a group whose std is below this carries no signal


@dataclass(frozen=True)
class AdvantageInput:
    rewards: torch.Tensor   # [B, G] outcome reward per completion
    valid: torch.Tensor     # [B, G] bool: False where the reward is excluded (a check could not judge)
    mask: torch.Tensor      # [N, T] 1.0 on completion tokens, N = B*G
    step_rewards: torch.Tensor | None = None  # [B, G, S] PRM step rewards, NaN past a completion's steps
    step_ends: torch.Tensor | None = None     # [B, G, S] long: token index of each step's last token
    process_weight: float = 1.0
    eps: float = 1e-6
    batch_std: torch.Tensor | None = None  # grpo_batch_std: the std of a batch larger than these groups
                                           # (several ranks' groups, trainer/distributed_sampling.py)


@dataclass(frozen=True)
class Advantages:
    tokens: torch.Tensor    # [N, T] advantage per completion token (0 on padding)
    valid: torch.Tensor     # [N] bool: the completion's reward was judged (or penalised, not excluded)
    zero_std: torch.Tensor  # [B] bool: the group carries no signal

    def keep(self, filter_zero_std: bool) -> torch.Tensor:
        """[N] bool: completions that take part in the loss."""
        if not filter_zero_std:
            return self.valid
        G = self.valid.shape[0] // self.zero_std.shape[0]
        return self.valid & ~self.zero_std.repeat_interleave(G)


def group_stats(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, population std and count over the valid entries of each row: [B, K] -> three [B, 1]."""
    w = valid.to(values.dtype)
    count = w.sum(-1, keepdim=True)
    filled = torch.where(valid, values, torch.zeros_like(values))
    mean = filled.sum(-1, keepdim=True) / count.clamp(min=1)
    var = (((filled - mean) * w) ** 2).sum(-1, keepdim=True) / count.clamp(min=1)
    return mean, var.sqrt(), count


def _zero(std: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    return ((std < ZERO_STD) | (count < 2)).squeeze(-1)  # [B]


def zero_variance(rewards: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B] bool: groups ([B, G] outcome rewards) that carry no signal, as the outcome advantages judge them."""
    _, std, count = group_stats(rewards, valid)
    return _zero(std, count)


def _broadcast(seq_adv: torch.Tensor, inp: AdvantageInput) -> torch.Tensor:
    """[B, G] per-completion advantages -> [N, T] on the completion tokens."""
    return seq_adv.reshape(-1, 1) * inp.mask


def _outcome(inp: AdvantageInput, scale: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Advantages:
    mean, std, count = group_stats(inp.rewards, inp.valid)                  # [B, 1] each
    seq = torch.where(inp.valid, scale(inp.rewards - mean, std), torch.zeros_like(inp.rewards))  # [B, G]
    return Advantages(_broadcast(seq, inp), inp.valid.reshape(-1), _zero(std, count))


def grpo(inp: AdvantageInput) -> Advantages:
    return _outcome(inp, lambda centred, std: centred / (std + inp.eps))


def grpo_batch_std(inp: AdvantageInput) -> Advantages:
    if inp.batch_std is not None:
        batch_std = inp.batch_std
    else:
        batch_std = inp.rewards[inp.valid].std(unbiased=False) if inp.valid.sum() > 1 else inp.rewards.new_tensor(0.0)
    return _outcome(inp, lambda centred, std: centred / (batch_std + inp.eps))


def dr_grpo(inp: AdvantageInput) -> Advantages:
    return _outcome(inp, lambda centred, std: centred)


def process(inp: AdvantageInput) -> Advantages:
    if inp.step_rewards is None or inp.step_ends is None:
        raise ValueError("the process advantage needs step rewards (the 'steps' check)")
    B, G, S = inp.step_rewards.shape
    T = inp.mask.shape[1]
    step_ok = ~torch.isnan(inp.step_rewards) & inp.valid.unsqueeze(-1)           # [B, G, S]
    mean, std, count = group_stats(inp.step_rewards.reshape(B, G * S), step_ok.reshape(B, G * S))  # [B, 1]
    normed = (inp.step_rewards - mean.unsqueeze(-1)) / (std.unsqueeze(-1) + inp.eps)
    normed = torch.where(step_ok, normed, torch.zeros_like(normed)).reshape(B * G, S, 1)    # [N, S, 1]
    positions = torch.arange(T, device=inp.mask.device).view(1, 1, T)                      # [1, 1, T]
    ends = inp.step_ends.reshape(B * G, S, 1)                                              # [N, S, 1]
    tokens = (normed * (ends >= positions)).sum(1) * inp.mask                              # [N, T]
    return Advantages(tokens, inp.valid.reshape(-1), _zero(std, count))


def outcome_process(inp: AdvantageInput) -> Advantages:
    out, proc = grpo(inp), process(inp)
    return Advantages(out.tokens + inp.process_weight * proc.tokens, out.valid, out.zero_std & proc.zero_std)


ADVANTAGES: dict[str, Callable[[AdvantageInput], Advantages]] = {
    "grpo": grpo, "grpo_batch_std": grpo_batch_std, "dr_grpo": dr_grpo, "process": process,
    "outcome_process": outcome_process,
}
NEEDS_STEPS = frozenset({"process", "outcome_process"})  # these need the 'steps' check's step scores
