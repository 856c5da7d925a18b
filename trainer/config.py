"""The GRPO recipe's configuration: one typed, frozen dataclass tree; every default lives here.

    cfg = load_config("configs/demo.yaml", ["rollout.group_size=4", "optim.lr=1e-4"])

A YAML file gives any subset of the fields (nested by section); `key=value` overrides use dotted keys
and YAML values. Unknown keys, wrong types and unknown variant names are errors naming the key:
a misspelled key never falls back to a default silently.

Batch shapes (what is required, and why):
  * a step samples `rollout.prompts_per_step` prompts x `rollout.group_size` completions (N of them);
  * the N completions kept for the loss (zero-variance groups and excluded rewards dropped) are split
    into `algo.mini_batches` nearly equal parts, one optimizer step each, repeated `algo.ppo_epochs`
    times; a part is processed `algo.micro_batch_size` completions at a time with gradient accumulation.
    No divisibility is required anywhere: the last micro-batch may be smaller, and the loss divides by
    totals of the whole mini-batch, so the gradient does not depend on the micro-batch size. When fewer
    completions are kept than `mini_batches`, there are as many optimizer steps as completions.
  * group_size >= 2: with one completion a group has no relative signal.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from trainer.advantages import ADVANTAGES
from trainer.losses import AGGREGATIONS, IS_CORRECTIONS, KL_ESTIMATORS
from trainer.rewards import UNJUDGED_POLICIES
from trainer.logging_sinks import LogConfig
from trainer.rollout import DECODE_KERNELS, ENGINES, HF_CACHES, HF_SAMPLERS
from trainer.step_sampler import StepSamplerConfig

__all__ = ["ModelConfig", "DataConfig", "RolloutConfig", "RewardConfig", "AlgoConfig", "OptimConfig",
           "GRPOConfig", "EngineOptions", "LogConfig", "StepSamplerConfig", "SCHEDULES", "SAMPLERS", "load_config", "from_dict", "apply_overrides", "to_dict"]

SCHEDULES = ("constant", "linear", "cosine")  # after `warmup_steps` of linear warm-up
SAMPLERS = ("groups", "prm_steps")  # plain groups from the engine | PRM-guided step-level rejection sampling


def _one_of(value: str, known: Any, key: str) -> None:
    if value not in known:
        raise ValueError(f"{key}: unknown value {value!r}; known: {sorted(known)}")


@dataclass(frozen=True)
class ModelConfig:
    path: str = ""                 # a model directory (transformers format, tokenizer included)
    tiny: bool = False             # build the tiny Qwen2 model into <out_dir>/tiny_model and use it
    tiny_seed: int = 0
    dtype: str = "float32"         # the trainer's parameter dtype: float32 | bfloat16
    device: str = "cpu"            # cpu | cuda
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if not self.tiny and not self.path:
            raise ValueError("model: give model.path or set model.tiny=true")
        _one_of(self.dtype, ("float32", "bfloat16"), "model.dtype")


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"      # synthetic | jsonl (Problem records, tasks.files.load_jsonl)
    path: str = ""                 # for jsonl
    num_problems: int = 2000       # synthetic: how many training problems
    seed: int = 0
    min_steps: int = 2             # synthetic difficulty knobs (tasks.synthetic.SyntheticConfig)
    max_steps: int = 3
    max_value: int = 99
    prompt_style: str = ""         # a tasks.prompts.PROMPTS name; "" picks by problem
    chat: bool = False             # render through the tokenizer's chat template

    def __post_init__(self) -> None:
        _one_of(self.source, ("synthetic", "jsonl"), "data.source")
        if self.source == "jsonl" and not self.path:
            raise ValueError("data.path is required with data.source=jsonl")


@dataclass(frozen=True)
class EngineOptions:
    """The rollout engines' settings: the same keys, defaults and checks in GRPO's and PPO's `rollout`
    (`trainer.rollout.build_engine` reads them)."""
    engine: str = "vllm"           # vllm | hf (trainer.rollout.ENGINES)
    vllm_dtype: str = "bfloat16"
    vllm_compile: bool = False     # vLLM's compiled model (not enforce_eager): on the 2-core CPU 1.21-1.39x
                                   # faster sampling of a 25M model per GRPO step (32-token KV blocks) for
                                   # ~26 s more start-up (docs/benchmarks.md)
    max_model_len: int = 512
    kv_cache_gb: float = 1.0       # vLLM CPU KV cache
    gpu_memory_utilization: float = 0.3
    sync_bucket_mb: float = 256.0  # vLLM weight sync: at most this many MiB converted at a time
    vllm_sleep: bool = False       # release vLLM's memory during the update (GPU builds; a no-op on CPU)
    vllm_block_size: int = 0       # vLLM KV-cache block (tokens); 0: 32 on the CPU, where vLLM's 128 is longer than
                                   # most prompts and a group's samples then share no prompt block (1.4-2x faster
                                   # group sampling there, docs/benchmarks.md), vLLM's own default elsewhere
    hf_max_batch_sequences: int = 256
    hf_cache: str = "dynamic"        # hf engine: dynamic | static | static_compiled | paged (docs/trainer.md)
    hf_gqa_decode: bool = True       # hf engine: grouped-query decode attention without KV copies (gqa_attention.py)
    hf_sampler: str = "fused"        # hf engine: fused (our Gumbel-max draw, Triton kernels on CUDA: 1.04-1.32x
                                     # the library's on the H100, docs/benchmarks.md) | library (generate's draw)
    hf_deferred_stop: bool = True    # hf engine: on CUDA, generate's stop check one step late (deferred_stop.py)
    hf_merged_projections: bool = True  # hf engine: one GEMM for q/k/v and one for gate/up while sampling,
                                        # from a copy of those weights (merged_projections.py)
    hf_decode_kernel: str = "split_kv"  # hf engine, with hf_gqa_decode: split_kv (our Triton kernel, CUDA) | sdpa

    def check_engine_options(self) -> None:
        _one_of(self.engine, ENGINES, "rollout.engine")
        _one_of(self.hf_cache, HF_CACHES, "rollout.hf_cache")
        _one_of(self.hf_sampler, HF_SAMPLERS, "rollout.hf_sampler")
        _one_of(self.hf_decode_kernel, DECODE_KERNELS, "rollout.hf_decode_kernel")
        if self.sync_bucket_mb <= 0:
            raise ValueError(f"rollout.sync_bucket_mb must be > 0, got {self.sync_bucket_mb}")
        if self.vllm_block_size < 0:
            raise ValueError(f"rollout.vllm_block_size must be >= 0 (0: the engine's choice), got {self.vllm_block_size}")


@dataclass(frozen=True)
class RolloutConfig(EngineOptions):
    prompts_per_step: int = 8
    group_size: int = 8
    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0             # != 1 biases the importance ratio (the trainer does not truncate)
    top_k: int = -1
    score_chunks: int = 1          # generate in this many chunks, scoring chunk i while chunk i+1 generates
    vllm_tensor_parallel: int = 1  # under torchrun: ranks per vLLM engine (tensor parallel); 1: one per rank
    sampler: str = "groups"        # groups | prm_steps (the `step_sampler` section; needs a PRM server)

    def __post_init__(self) -> None:
        self.check_engine_options()
        _one_of(self.sampler, SAMPLERS, "rollout.sampler")
        if self.group_size < 2 or self.prompts_per_step < 1:
            raise ValueError("rollout.group_size must be >= 2 and rollout.prompts_per_step >= 1")
        if self.score_chunks < 1:
            raise ValueError(f"rollout.score_chunks must be >= 1, got {self.score_chunks}")
        if self.vllm_tensor_parallel < 1:
            raise ValueError(f"rollout.vllm_tensor_parallel must be >= 1, got {self.vllm_tensor_parallel}")


@dataclass(frozen=True)
class RewardConfig:
    address: str = ""              # verifier address(es) "h:p[,h:p]"; "" starts one for the run
    math: float = 1.0              # check weights; 0 turns a check off
    code: float = 0.0
    steps: float = 0.0
    unjudged: str = "exclude"      # exclude | penalize
    penalty: float = 0.0
    timeout_s: float = 120.0
    step_separator: str = "\n"
    server_math_workers: int = 2   # for the embedded server

    def __post_init__(self) -> None:
        _one_of(self.unjudged, UNJUDGED_POLICIES, "reward.unjudged")


@dataclass(frozen=True)
class AlgoConfig:
    advantage: str = "grpo"
    process_weight: float = 1.0    # outcome_process: weight of the process part
    filter_zero_std: bool = True
    dynamic_sampling: bool = False # DAPO: sample more prompts until the batch has prompts_per_step groups with signal
    max_sampling_rounds: int = 3   # cap on the extra generation rounds of dynamic sampling
    mask_truncated: bool = False   # overlong filtering: completions cut at max_tokens take no part
    aggregation: str = "token"
    eps_low: float = 0.2
    eps_high: float = 0.28
    beta: float = 0.0              # KL weight; the reference model is loaded only when > 0
    kl: str = "k3"
    is_level: str = "token"        # engine/trainer mismatch correction: none | token | sequence
    is_cap: float = 3.0
    ppo_epochs: int = 1
    mini_batches: int = 1
    micro_batch_size: int = 8
    compile_layers: bool = False   # torch.compile each decoder layer for the log-prob and update passes
                                   # (trainer/compiled_layers.py). H100, 0.36B bench model, 128-row packed
                                   # micro-batches: update 0.24 s -> 0.13-0.16 s (MFU 23% -> 32-39%); the
                                   # first two steps compile
    pack_rows: bool = True         # a micro-batch's rows as one sequence without padding, variable-length
                                   # flash attention (trainer/packed_rows.py); CUDA only, padded elsewhere

    def __post_init__(self) -> None:
        _one_of(self.advantage, ADVANTAGES, "algo.advantage")
        _one_of(self.aggregation, AGGREGATIONS, "algo.aggregation")
        _one_of(self.kl, KL_ESTIMATORS, "algo.kl")
        _one_of(self.is_level, IS_CORRECTIONS, "algo.is_level")
        if self.max_sampling_rounds < 0:
            raise ValueError("algo.max_sampling_rounds must be >= 0")
        if min(self.ppo_epochs, self.mini_batches, self.micro_batch_size) < 1 or self.is_cap < 1:
            raise ValueError("algo: ppo_epochs, mini_batches, micro_batch_size must be >= 1; is_cap >= 1")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0         # max global grad norm; 0: off
    schedule: str = "constant"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        _one_of(self.schedule, SCHEDULES, "optim.schedule")


@dataclass(frozen=True)
class GRPOConfig:
    steps: int = 100               # GRPO steps (one batch of groups each)
    seed: int = 0
    out_dir: str = "runs/grpo"
    checkpoint_every: int = 0      # steps; 0: only at the end
    resume: str = ""               # a checkpoint directory written by this recipe
    log_samples: int = 2           # completions written to samples.jsonl per step
    model: ModelConfig = field(default_factory=lambda: ModelConfig(tiny=True))
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log: LogConfig = field(default_factory=LogConfig)
    step_sampler: StepSamplerConfig = field(default_factory=StepSamplerConfig)

    def __post_init__(self) -> None:
        if self.rollout.sampler == "prm_steps" and not self.reward.address:
            raise ValueError("rollout.sampler=prm_steps needs reward.address: a server with a PRM "
                             "(verirl serve --prm DIR); the run's embedded server has none")


def _convert(value: Any, hint: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(hint, value, prefix=f"{key}.")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        inner = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(inner) != len(value):
            raise ValueError(f"{key}: expected {len(inner)} values, got {len(value)}")
        return tuple(_convert(v, h, key) for v, h in zip(value, inner))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            return float(value)
        except ValueError:
            raise ValueError(f"{key}: expected float, got {value!r}") from None
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. a separator or an address YAML read as a number
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ValueError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def from_dict(cls: type, values: Mapping[str, Any], *, prefix: str = "") -> Any:
    """Build the dataclass `cls` from nested dicts; unknown keys and wrong types are errors."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}; "
                         f"known here: {', '.join(names)}")
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{prefix or 'config'}: {exc}") from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`a.b=value` pairs into nested dicts (values parsed as YAML: 1e-4, true, [0.9, 0.95])."""
    import yaml

    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value")
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
    return data


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> GRPOConfig:
    import yaml

    data = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
    return from_dict(GRPOConfig, apply_overrides(data, overrides))


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-able view (tuples as lists), e.g. for the run directory's config.json."""
    return dataclasses.asdict(cfg)
