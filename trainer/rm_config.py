"""The reward-model recipe's configuration, and the preference-data sections DPO shares.

    cfg = load_rm_config("configs/rm_demo.yaml", ["steps=100", "optim.lr=1e-3"])

Same rules as the other recipes (trainer/config.py's loader, `ModelConfig`, `OptimConfig`): a YAML file
gives any subset of the fields, `key=value` overrides use dotted keys, unknown keys, wrong types and
unknown names are errors naming the key.

Batch shapes: a step is one optimizer step over `batch_size` pairs, `micro_batch_size` pairs at a time
(each pair is two rows, chosen and rejected, in one forward pass). The loss is the sum of the pairs'
losses divided by `batch_size`, so the gradient does not depend on `micro_batch_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from trainer.config import ModelConfig, OptimConfig, _one_of, apply_overrides, from_dict, to_dict

__all__ = ["PairDataConfig", "PairEvalConfig", "RMConfig", "PAIR_SOURCES", "load_rm_config", "load_yaml", "to_dict"]

PAIR_SOURCES = ("synthetic", "jsonl")


@dataclass(frozen=True)
class PairDataConfig:
    source: str = "synthetic"      # synthetic (reference vs corrupted chain) | jsonl ({prompt, chosen, rejected})
    path: str = ""                 # jsonl pairs, e.g. written by trainer.preferences.write_pairs
    eval_path: str = ""            # jsonl held-out pairs; "" holds out `eval_pairs` pairs of `path`
    num_pairs: int = 2000          # synthetic: training problems (one pair each)
    eval_pairs: int = 64           # held-out pairs (synthetic: from the held-out split)
    seed: int = 0                  # data order, the synthetic generator and its corruptions
    min_steps: int = 2             # synthetic difficulty knobs (tasks.synthetic.SyntheticConfig)
    max_steps: int = 3
    max_value: int = 99
    corruption_kinds: tuple[str, ...] = ()  # synthetic: tasks.corruptions.KINDS to draw from; () all
    prompt_style: str = ""         # synthetic: a tasks.prompts.PROMPTS name; "" picks by problem
    chat: bool = False             # synthetic: render the prompt through the tokenizer's chat template
    max_length: int = 512          # tokens of a rendered prompt + response; longer pairs are dropped, counted

    def __post_init__(self) -> None:
        from tasks.corruptions import KINDS
        _one_of(self.source, PAIR_SOURCES, "data.source")
        if self.source == "jsonl" and not self.path:
            raise ValueError("data.path is required with data.source=jsonl")
        for kind in self.corruption_kinds:
            _one_of(kind, KINDS, "data.corruption_kinds")
        if self.max_length < 2 or self.num_pairs < 1 or self.eval_pairs < 1:
            raise ValueError("data.max_length must be >= 2, data.num_pairs and data.eval_pairs >= 1")


@dataclass(frozen=True)
class PairEvalConfig:
    every: int = 50                # steps between held-out evaluations; 0: only before and after training
    batch_size: int = 32           # pairs per forward pass when evaluating

    def __post_init__(self) -> None:
        if self.every < 0 or self.batch_size < 1:
            raise ValueError("eval.every must be >= 0 and eval.batch_size >= 1")


@dataclass(frozen=True)
class RMConfig:
    steps: int = 200               # optimizer steps
    seed: int = 0
    out_dir: str = "runs/rm"       # the reward model: <out_dir>/final/model (+ verirl_prm.json)
    batch_size: int = 16           # pairs per optimizer step
    micro_batch_size: int = 16     # pairs per forward/backward (gradient accumulation)
    step_tag: str = ""             # read the reward at this text's last token; "": the tokenizer's EOS token
    step_separator: str = "\n\n"   # put between the prompt and the response (the PRM format's separator)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(tiny=True))  # the backbone (a policy dir)
    data: PairDataConfig = field(default_factory=PairDataConfig)
    eval: PairEvalConfig = field(default_factory=PairEvalConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5, schedule="cosine", warmup_steps=10))

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.micro_batch_size) < 1:
            raise ValueError("steps, batch_size and micro_batch_size must be >= 1")


def load_yaml(path: str | Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """A config file's mapping with the overrides applied (the shared first half of every loader)."""
    import yaml

    data = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
    return apply_overrides(data, overrides)


def load_rm_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RMConfig:
    return from_dict(RMConfig, load_yaml(path, overrides))
