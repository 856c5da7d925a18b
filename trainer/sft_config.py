"""The SFT recipe's configuration: one typed, frozen dataclass tree; every default lives here.

    cfg = load_sft_config("configs/sft_demo.yaml", ["steps=100", "optim.lr=1e-3"])

Same rules as the GRPO config (trainer/config.py, whose loader, `ModelConfig` and `OptimConfig` this
reuses): a YAML file gives any subset of the fields, `key=value` overrides use dotted keys and YAML
values, unknown keys, wrong types and unknown names are errors naming the key.

Batch shapes: a step is one optimizer step over `batch_size` rows, processed `micro_batch_size` rows at
a time with gradient accumulation. A row is one example, or with `data.pack` several examples packed
into at most `data.max_length` tokens. The loss is the sum of the completion tokens' negative
log-likelihoods divided by the number of completion tokens of the whole batch (not of the micro-batch),
so the gradient does not depend on `micro_batch_size`. Nothing has to divide anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trainer.config import ModelConfig, OptimConfig, _one_of, apply_overrides, from_dict, to_dict

__all__ = ["SFTDataConfig", "SFTEvalConfig", "SFTConfig", "SFT_SOURCES", "load_sft_config", "to_dict"]

SFT_SOURCES = ("synthetic", "jsonl")


@dataclass(frozen=True)
class SFTDataConfig:
    source: str = "synthetic"      # synthetic (problems + reference solutions) | jsonl
    path: str = ""                 # jsonl: {"prompt", "completion"} or {"messages": [...]} records
    eval_path: str = ""            # jsonl held-out file; "" holds out `eval.examples` records of `path`
    num_examples: int = 2000       # synthetic: how many training problems
    seed: int = 0                  # data order and the synthetic generator
    min_steps: int = 2             # synthetic difficulty knobs (tasks.synthetic.SyntheticConfig)
    max_steps: int = 3
    max_value: int = 99
    # synthetic: the share of multi-step problems whose target is an imperfect teacher's solution that
    # answers right after its first step ("a + b = c\n#### c"): the demo's warm-up imitates a teacher
    # that often stops early, and GRPO with verifier rewards has to unlearn it. 0: reference solutions.
    early_answer_fraction: float = 0.0
    prompt_style: str = ""         # synthetic: a tasks.prompts.PROMPTS name; "" picks by problem
    chat: bool = False             # synthetic: render the prompt through the tokenizer's chat template
    max_length: int = 512          # tokens per row; longer examples are dropped (and counted), not cut
    pack: bool = False             # pack several examples per row (attention kept within each example)

    def __post_init__(self) -> None:
        _one_of(self.source, SFT_SOURCES, "data.source")
        if self.source == "jsonl" and not self.path:
            raise ValueError("data.path is required with data.source=jsonl")
        if not 0.0 <= self.early_answer_fraction <= 1.0:
            raise ValueError("data.early_answer_fraction must be in [0, 1]")
        if self.max_length < 2 or self.num_examples < 1:
            raise ValueError("data.max_length must be >= 2 and data.num_examples >= 1")


@dataclass(frozen=True)
class SFTEvalConfig:
    every: int = 50                # steps between evaluations; 0: only before and after training
    examples: int = 64             # held-out examples for the eval loss
    accuracy_problems: int = 0     # synthetic only: held-out problems solved greedily; 0: off
    max_tokens: int = 64           # generation budget for the accuracy check
    batch_size: int = 32           # rows per forward pass when evaluating

    def __post_init__(self) -> None:
        if min(self.every, self.accuracy_problems) < 0 or min(self.examples, self.max_tokens, self.batch_size) < 1:
            raise ValueError("eval: every, accuracy_problems >= 0; examples, max_tokens, batch_size >= 1")


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 200               # optimizer steps
    seed: int = 0
    out_dir: str = "runs/sft"      # the policy for later stages: <out_dir>/final/model
    batch_size: int = 16           # rows per optimizer step
    micro_batch_size: int = 16     # rows per forward/backward (gradient accumulation)
    checkpoint_every: int = 0      # steps; 0: only the final one
    resume: str = ""               # a checkpoint directory written by this recipe
    model: ModelConfig = field(default_factory=lambda: ModelConfig(tiny=True))
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    eval: SFTEvalConfig = field(default_factory=SFTEvalConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, schedule="cosine", warmup_steps=10))

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.micro_batch_size) < 1:
            raise ValueError("steps, batch_size and micro_batch_size must be >= 1")
        if self.eval.accuracy_problems and self.data.source != "synthetic":
            raise ValueError("eval.accuracy_problems needs data.source=synthetic (problems with gold answers)")


def load_sft_config(path: str | Path | None, overrides: Sequence[str] = ()) -> SFTConfig:
    import yaml

    data = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
    return from_dict(SFTConfig, apply_overrides(data, overrides))
