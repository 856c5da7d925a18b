"""Optimizer and learning-rate schedules shared by the recipes.

Schedules are named multipliers of the base LR in `SCHEDULES`, stepped once per recipe step (one GRPO
step = one batch of groups, however many optimizer steps it takes), after a linear warm-up.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

__all__ = ["SCHEDULE_FNS", "build_optimizer", "build_scheduler"]


def _constant(progress: float) -> float:
    return 1.0


def _linear(progress: float) -> float:
    return max(0.0, 1.0 - progress)


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


SCHEDULE_FNS: dict[str, Callable[[float], float]] = {"constant": _constant, "linear": _linear, "cosine": _cosine}


def build_optimizer(model: Any, lr: float, weight_decay: float, betas: tuple[float, float],
                    fused: bool = False) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norms (1-d parameters). `fused`: one kernel for the whole
    update (CUDA parameters; the H100 training step's MFU, docs/benchmarks.md)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True if fused else None)


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, total_steps: int,
                    warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    shape = SCHEDULE_FNS[name]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return shape((step - warmup_steps) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
