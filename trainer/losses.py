"""The GRPO policy loss, built from named parts picked once from tables.

Shapes: n completions in a micro-batch, T completion positions (right-padded); `mask` [n, T] is 1.0 on
real completion tokens. All log-prob tensors are [n, T] log-probs of the sampled tokens.

    PPO-clip    ratio = exp(logp - old_logp); loss_t = -min(ratio A, clip(ratio, 1-eps_low, 1+eps_high) A)
                with separate low/high ranges (DAPO's 0.2/0.28 "clip-higher")
    KL          to the reference, in the loss with weight beta: k1 = logp - ref, k3 = exp(ref - logp) -
                (ref - logp) - 1 (>= 0, 0 at equality); log-ratios clamped to +-KL_CLAMP so one rare token
                cannot make the loss infinite
    IS          the engine sampled with slightly different log-probs than the trainer computes; each
                token's loss is weighted by min(exp(old_logp - engine_logp), cap) (token level) or by the
                capped product over the sequence (sequence level) - truncated importance sampling
    aggregate   "token" (DAPO): sum over every token / tokens in the optimizer-step batch;
                "sequence" (GRPO): mean over each completion's tokens, summed / sequences in the batch;
                "constant" (Dr. GRPO): sum over every token / (sequences * max completion length)

Aggregations divide by totals of the whole optimizer-step batch (`BatchScale`), never of the
micro-batch, so micro-batch losses add up to exactly the full batch's loss: accumulation over any
micro-batch split gives the same gradient (a test checks 1x8 against 8x1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["BatchScale", "LossSettings", "GRPOLoss", "PolicyTerms", "AGGREGATIONS", "KL_ESTIMATORS",
           "IS_CORRECTIONS", "ppo_clip", "kl_k1", "kl_k3", "agg_token", "agg_sequence", "agg_constant",
           "is_none", "is_token", "is_sequence", "token_logprobs"]

KL_CLAMP = 20.0
LOG_RATIO_CLAMP = 20.0


@dataclass(frozen=True)
class BatchScale:
    """Normalisers of one optimizer step's batch (the completions kept for the loss)."""

    tokens: float     # completion tokens
    sequences: float  # completions
    max_tokens: int   # Dr. GRPO's constant: the configured max completion length


@dataclass(frozen=True)
class PolicyTerms:
    loss: torch.Tensor          # [n, T] per-token clipped surrogate (to minimise)
    ratio: torch.Tensor         # [n, T]
    clipped_low: torch.Tensor   # [n, T] bool: ratio < 1-eps_low with A < 0 (the clip is active)
    clipped_high: torch.Tensor  # [n, T] bool: ratio > 1+eps_high with A > 0


def ppo_clip(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float,
             eps_high: float) -> PolicyTerms:
    ratio = torch.exp((logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))       # [n, T]
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    loss = -torch.minimum(ratio * adv, clipped * adv)
    return PolicyTerms(loss, ratio, (ratio < 1 - eps_low) & (adv < 0), (ratio > 1 + eps_high) & (adv > 0))


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return (logp - ref_logp).clamp(-KL_CLAMP, KL_CLAMP)                                  # [n, T]


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    d = (ref_logp - logp).clamp(-KL_CLAMP, KL_CLAMP)                                     # [n, T]
    return torch.exp(d) - d - 1


def agg_token(loss: torch.Tensor, mask: torch.Tensor, scale: BatchScale) -> torch.Tensor:
    return (loss * mask).sum() / max(scale.tokens, 1.0)


def agg_sequence(loss: torch.Tensor, mask: torch.Tensor, scale: BatchScale) -> torch.Tensor:
    per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)                          # [n]
    return per_seq.sum() / max(scale.sequences, 1.0)


def agg_constant(loss: torch.Tensor, mask: torch.Tensor, scale: BatchScale) -> torch.Tensor:
    return (loss * mask).sum() / max(scale.sequences * scale.max_tokens, 1.0)


def is_none(old_logp: torch.Tensor, engine_logp: torch.Tensor, mask: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.ones_like(old_logp)


def is_token(old_logp: torch.Tensor, engine_logp: torch.Tensor, mask: torch.Tensor, cap: float) -> torch.Tensor:
    log_w = (old_logp - engine_logp).clamp(-LOG_RATIO_CLAMP, math.log(cap))              # [n, T]
    return torch.exp(log_w) * mask


def is_sequence(old_logp: torch.Tensor, engine_logp: torch.Tensor, mask: torch.Tensor, cap: float) -> torch.Tensor:
    log_w = ((old_logp - engine_logp) * mask).sum(-1, keepdim=True)                      # [n, 1]
    return torch.exp(log_w.clamp(-LOG_RATIO_CLAMP, math.log(cap))).expand_as(old_logp) * mask


Aggregation = Callable[[torch.Tensor, torch.Tensor, BatchScale], torch.Tensor]
AGGREGATIONS: dict[str, Aggregation] = {"token": agg_token, "sequence": agg_sequence, "constant": agg_constant}
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"k1": kl_k1, "k3": kl_k3}
IS_CORRECTIONS = {"none": is_none, "token": is_token, "sequence": is_sequence}


@dataclass(frozen=True)
class LossSettings:
    eps_low: float = 0.2
    eps_high: float = 0.28
    beta: float = 0.0
    kl: str = "k3"
    aggregation: str = "token"
    is_level: str = "token"
    is_cap: float = 3.0


class GRPOLoss:
    """The policy loss of one micro-batch; the variant functions are looked up once, here."""

    def __init__(self, s: LossSettings):
        for name, table, key in (("aggregation", AGGREGATIONS, s.aggregation), ("kl", KL_ESTIMATORS, s.kl),
                                 ("is_level", IS_CORRECTIONS, s.is_level)):
            if key not in table:
                raise ValueError(f"unknown {name} {key!r}; known: {sorted(table)}")
        self.s = s
        self.aggregate = AGGREGATIONS[s.aggregation]
        self.kl = KL_ESTIMATORS[s.kl]
        self.is_weight = IS_CORRECTIONS[s.is_level]

    def __call__(self, logp: torch.Tensor, old_logp: torch.Tensor, engine_logp: torch.Tensor,
                 ref_logp: torch.Tensor | None, adv: torch.Tensor, mask: torch.Tensor,
                 scale: BatchScale) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar loss of the micro-batch (already divided by the batch totals) and metric sums, as
        0-d tensors on the loss's device: reading them is the caller's one host sync, not one each."""
        terms = ppo_clip(logp, old_logp, adv, self.s.eps_low, self.s.eps_high)
        weight = self.is_weight(old_logp, engine_logp, mask, self.s.is_cap).detach()     # [n, T]
        per_token = terms.loss * weight
        stats = {"clip_low": (terms.clipped_low * mask).sum(),
                 "clip_high": (terms.clipped_high * mask).sum(),
                 "is_weight": (weight * mask).sum(),
                 "ratio": (terms.ratio.detach() * mask).sum()}
        if self.s.beta > 0:
            kl = self.kl(logp, ref_logp)                                                  # [n, T]
            per_token = per_token + self.s.beta * kl
            stats["kl"] = (kl.detach() * mask).sum()
        return self.aggregate(per_token, mask, scale), stats


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float,
                   entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of `targets` [n, T] under `logits` [n, T, V] / temperature (the sampling distribution),
    and with `entropy` the distribution's entropy per position [n, T] (a metric: computed without a graph).

    Not done: a chunked/fused version; this materialises [n, T, V] log-probs, which for a 150k
    vocabulary bounds the micro-batch size."""
    logp_all = torch.log_softmax(logits.float() / (temperature if temperature > 0 else 1.0), -1)  # [n, T, V]
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not entropy:
        return logp, None
    with torch.no_grad():
        detached = logp_all.detach()
        return logp, -(detached.exp() * detached).sum(-1)
