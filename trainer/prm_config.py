"""The PRM recipe's configuration: one typed, frozen dataclass tree; every default lives here.

    cfg = load_prm_config("configs/prm_demo.yaml", ["steps=100", "data.truncation=drop_example"])

Same rules as the other recipes (trainer/config.py's loader, `ModelConfig`, `OptimConfig`): a YAML file
gives any subset of the fields, `key=value` overrides use dotted keys, unknown keys, wrong types and
unknown names are errors naming the key.

Batch shapes: a step is one optimizer step over `batch_size` chains, processed `micro_batch_size` chains
at a time with gradient accumulation. The loss is the sum over the batch's step tags of the soft-target
cross-entropy, divided by the number of tags of the whole batch, so the gradient does not depend on
`micro_batch_size`. A step_likelihood PRM (format.kind) adds `likelihood.lm_weight` x the next-token loss,
summed over the own tokens and tags of the steps labelled right and divided by their number in the whole
batch (trainer/prm.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tasks.corruptions import KINDS as CORRUPTION_KINDS
from tasks.prm_format import AGGREGATIONS
from trainer.config import ModelConfig, OptimConfig, _one_of, apply_overrides, from_dict, to_dict
from trainer.rollout import ENGINES
from trainer.tiny import TinyConfig

__all__ = ["PRMDataConfig", "ShepherdConfig", "PRMFormatConfig", "PRMLikelihoodConfig", "PRMEvalConfig",
           "PRMConfig", "PRM_SOURCES", "TRUNCATION", "LABEL_KINDS", "TRAINED_KINDS", "load_prm_config", "to_dict"]

# synthetic: correct and corrupted chains of tasks.synthetic with exact labels (tasks.corruptions)
# jsonl: {"prompt", "completions", "labels"} records (hard 0/1 or soft 0..1 labels)
# math_shepherd: chains sampled by `shepherd.policy`, labelled by rollouts verified by the service
PRM_SOURCES = ("synthetic", "jsonl", "math_shepherd")
# what happens to a chain longer than data.max_length tokens once rendered (never a silent cut):
# error: stop with the record named; drop_example: leave it out (counted, logged);
# keep_prefix: keep the steps whose tags fit, leave out the rest (their labels counted, logged)
TRUNCATION = ("error", "drop_example", "keep_prefix")
LABEL_KINDS = ("hard", "soft")  # Math-Shepherd: hard = any rollout reached the gold; soft = the share that did
# the PRM kinds this recipe trains (tasks.prm_format.KINDS; causal_lm PRMs are released ones, served only)
TRAINED_KINDS = ("token_classification", "step_likelihood")


@dataclass(frozen=True)
class PRMDataConfig:
    source: str = "synthetic"
    path: str = ""                 # jsonl: training records
    eval_path: str = ""            # jsonl: held-out records; "" holds out `eval.examples` records of `path`
    num_problems: int = 4000       # synthetic: training problems (one chain each); math_shepherd: see shepherd
    error_fraction: float = 0.5    # synthetic: share of chains corrupted (tasks.corruptions.step_chains)
    error_kinds: tuple[str, ...] = CORRUPTION_KINDS  # synthetic: the corruptions drawn from (ablations)
    seed: int = 0                  # data order, the synthetic generator and its corruptions
    min_steps: int = 2             # synthetic difficulty knobs (tasks.synthetic.SyntheticConfig)
    max_steps: int = 3
    max_value: int = 99
    max_length: int = 256          # tokens of a rendered chain (also the served format's max_length)
    truncation: str = "error"      # TRUNCATION

    def __post_init__(self) -> None:
        _one_of(self.source, PRM_SOURCES, "data.source")
        _one_of(self.truncation, TRUNCATION, "data.truncation")
        for kind in self.error_kinds or ("",):
            _one_of(kind, CORRUPTION_KINDS, "data.error_kinds")
        if self.source == "jsonl" and not self.path:
            raise ValueError("data.path is required with data.source=jsonl")
        if self.max_length < 2 or self.num_problems < 1 or not 0.0 <= self.error_fraction <= 1.0:
            raise ValueError("data: max_length >= 2, num_problems >= 1, 0 <= error_fraction <= 1")


@dataclass(frozen=True)
class ShepherdConfig:
    """Math-Shepherd labelling (data.source=math_shepherd): chains sampled by the policy on synthetic
    training problems; from every step prefix `rollouts` completions, verified against the gold."""

    policy: str = ""               # the policy's model directory (e.g. runs/sft_demo/final/model)
    num_problems: int = 64         # synthetic training problems (the data.* difficulty knobs apply)
    chains_per_problem: int = 2    # chains sampled per problem, each labelled step by step
    rollouts: int = 8              # N: completions from each step prefix
    max_tokens: int = 48           # generation budget of a chain and of a completion
    temperature: float = 1.0
    prompt_style: str = "bare"     # a tasks.prompts.PROMPTS name (as the policy was trained)
    labels: str = "hard"           # which labels train the PRM (records hold both): LABEL_KINDS
    engine: str = "hf"             # rollout engine: hf | vllm
    address: str = ""              # verifier address "h:p"; "" starts one for the run
    server_math_workers: int = 1   # for the embedded server
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        _one_of(self.labels, LABEL_KINDS, "shepherd.labels")
        _one_of(self.engine, ENGINES, "shepherd.engine")
        if min(self.num_problems, self.chains_per_problem, self.rollouts, self.max_tokens) < 1:
            raise ValueError("shepherd: num_problems, chains_per_problem, rollouts, max_tokens must be >= 1")


@dataclass(frozen=True)
class PRMFormatConfig:
    """How the PRM reads a chain (written to the model's verirl_prm.json)."""

    kind: str = "token_classification"  # TRAINED_KINDS (trainer/prm.py's MODELS)
    step_tag: str = "@"            # one character of the tiny tokenizer that the synthetic text never uses
    step_separator: str = "\n"     # tasks.synthetic's step separator
    default_aggregation: str = "min"

    def __post_init__(self) -> None:
        _one_of(self.kind, TRAINED_KINDS, "format.kind")
        _one_of(self.default_aggregation, AGGREGATIONS, "format.default_aggregation")
        if not self.step_tag:
            raise ValueError("format.step_tag must not be empty")


@dataclass(frozen=True)
class PRMLikelihoodConfig:
    """format.kind step_likelihood only (a token_classification model has no LM head to read)."""

    lm_weight: float = 1.0         # weight of the next-token loss on the right steps' tokens (0: the tag loss alone)
    detach_features: bool = True   # the tag loss trains the head only; the LM learns from the next-token loss
    head_lr: float = 0.03          # AdamW lr of the head (7 numbers; the schedule of optim applies to it too)

    def __post_init__(self) -> None:
        if self.lm_weight < 0 or self.head_lr <= 0:
            raise ValueError("likelihood: lm_weight >= 0, head_lr > 0")


@dataclass(frozen=True)
class PRMEvalConfig:
    every: int = 100               # steps between evaluations; 0: only before and after training
    examples: int = 256            # held-out chains (synthetic: from the held-out split, same error_fraction)
    threshold: float = 0.5         # a step with P(correct) below it is the predicted first error
    batch_size: int = 64           # chains per forward pass when evaluating

    def __post_init__(self) -> None:
        if self.every < 0 or min(self.examples, self.batch_size) < 1 or not 0.0 < self.threshold < 1.0:
            raise ValueError("eval: every >= 0; examples, batch_size >= 1; 0 < threshold < 1")


@dataclass(frozen=True)
class PRMConfig:
    steps: int = 500               # optimizer steps
    seed: int = 0
    out_dir: str = "runs/prm"      # the PRM: <out_dir>/final/model (verirl serve --prm DIR)
    batch_size: int = 32           # chains per optimizer step
    micro_batch_size: int = 32     # chains per forward/backward (gradient accumulation)
    checkpoint_every: int = 0      # steps; 0: only the final one
    resume: str = ""               # a checkpoint directory written by this recipe
    model: ModelConfig = field(default_factory=lambda: ModelConfig(tiny=True))
    tiny: TinyConfig = field(default_factory=TinyConfig)  # the backbone's shape when model.tiny
    data: PRMDataConfig = field(default_factory=PRMDataConfig)
    shepherd: ShepherdConfig = field(default_factory=ShepherdConfig)
    format: PRMFormatConfig = field(default_factory=PRMFormatConfig)
    likelihood: PRMLikelihoodConfig = field(default_factory=PRMLikelihoodConfig)
    eval: PRMEvalConfig = field(default_factory=PRMEvalConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, schedule="cosine", warmup_steps=20))

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.micro_batch_size) < 1:
            raise ValueError("steps, batch_size and micro_batch_size must be >= 1")
        if self.data.source == "math_shepherd" and not self.shepherd.policy:
            raise ValueError("shepherd.policy (a model directory) is required with data.source=math_shepherd")


def load_prm_config(path: str | Path | None, overrides: Sequence[str] = ()) -> PRMConfig:
    import yaml

    data = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
    return from_dict(PRMConfig, apply_overrides(data, overrides))
