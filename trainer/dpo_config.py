"""The DPO recipe's configuration: one typed, frozen dataclass tree; every default lives here.

    cfg = load_dpo_config("configs/dpo_demo.yaml", ["beta=0.2", "optim.lr=1e-4"])

Preference data and evaluation sections are the reward model's (`trainer.rm_config`); same loader
rules (unknown keys, wrong types and unknown names are errors naming the key). Batch shapes: a step is
one optimizer step over `batch_size` pairs, `micro_batch_size` pairs (2x rows) at a time; the loss is
summed over pairs and divided by `batch_size`, so accumulation does not change the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trainer.config import ModelConfig, OptimConfig, from_dict, to_dict
from trainer.rm_config import PairDataConfig, PairEvalConfig, load_yaml

__all__ = ["DPOConfig", "load_dpo_config", "to_dict"]


@dataclass(frozen=True)
class DPOConfig:
    steps: int = 200               # optimizer steps
    seed: int = 0
    out_dir: str = "runs/dpo"      # the policy: <out_dir>/final/model
    batch_size: int = 16           # pairs per optimizer step
    micro_batch_size: int = 16     # pairs per forward/backward (gradient accumulation)
    beta: float = 0.1              # strength of the implicit KL to the reference
    label_smoothing: float = 0.0   # probability that a pair's label is flipped (conservative DPO); < 0.5
    reference: str = ""            # the frozen reference's directory; "": the initial policy
    model: ModelConfig = field(default_factory=lambda: ModelConfig(tiny=True))
    data: PairDataConfig = field(default_factory=PairDataConfig)
    eval: PairEvalConfig = field(default_factory=PairEvalConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, schedule="cosine", warmup_steps=10))

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.micro_batch_size) < 1:
            raise ValueError("steps, batch_size and micro_batch_size must be >= 1")
        if self.beta <= 0:
            raise ValueError(f"beta: must be > 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing: must be in [0, 0.5), got {self.label_smoothing}")


def load_dpo_config(path: str | Path | None, overrides: Sequence[str] = ()) -> DPOConfig:
    return from_dict(DPOConfig, load_yaml(path, overrides))
