"""The PPO recipe's configuration: one typed, frozen dataclass tree; every default lives here.

    cfg = load_ppo_config("configs/ppo_demo.yaml", ["algo.kl_controller=adaptive", "steps=20"])

Same loader rules as the other recipes (unknown keys, wrong types and unknown names are errors naming
the key); `model`, `data` and `optim` are the GRPO config's sections (trainer/config.py).

Batch shapes: a step samples `rollout.samples_per_prompt` completions for each of
`rollout.prompts_per_step` prompts (N rows); the rows kept (judged, or penalised) are split into
`algo.mini_batches` parts, one optimizer step of the policy and one of the critic each, repeated
`algo.ppo_epochs` times; a part is processed `algo.micro_batch_size` rows at a time. Losses divide by
the part's token count, so the micro-batch size does not change the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trainer.config import DataConfig, EngineOptions, ModelConfig, OptimConfig, _one_of, from_dict, to_dict
from trainer.losses import IS_CORRECTIONS
from trainer.rewards import UNJUDGED_POLICIES
from trainer.rm_config import load_yaml

__all__ = ["PPORolloutConfig", "PPORewardConfig", "PPOAlgoConfig", "PPOConfig", "REWARD_SOURCES",
           "KL_CONTROLLER_NAMES", "load_ppo_config", "to_dict"]

REWARD_SOURCES = ("verifier", "reward_model")
KL_CONTROLLER_NAMES = ("fixed", "adaptive")  # trainer.ppo.KL_CONTROLLERS


@dataclass(frozen=True)
class PPORolloutConfig(EngineOptions):
    """GRPO's engine settings (trainer.config.EngineOptions: vllm_*, hf_*), then PPO's own."""
    engine: str = "hf"             # hf | vllm (trainer.rollout)
    prompts_per_step: int = 16
    samples_per_prompt: int = 1    # PPO needs no group; more than one samples a prompt several times
    max_tokens: int = 64
    temperature: float = 1.0       # the policy's log-probs are taken at this temperature, as sampled

    def __post_init__(self) -> None:
        self.check_engine_options()
        if min(self.prompts_per_step, self.samples_per_prompt, self.max_tokens) < 1 or self.temperature <= 0:
            raise ValueError("rollout: prompts_per_step, samples_per_prompt, max_tokens >= 1; temperature > 0")


@dataclass(frozen=True)
class PPORewardConfig:
    source: str = "verifier"       # verifier: the problem's checks | reward_model: a trained reward model
    reward_model: str = ""         # source reward_model: the directory `verirl train rm` wrote (final/model)
    address: str = ""              # a verifier "h:p[,h:p]" (serving that reward model with --prm for
                                   # source reward_model); "": one is started for the run
    math: float = 1.0              # source verifier: check weights (trainer.rewards)
    code: float = 0.0
    unjudged: str = "exclude"      # exclude | penalize
    penalty: float = 0.0
    timeout_s: float = 120.0
    server_math_workers: int = 2   # for the embedded server
    prm_device: str = "auto"       # for the embedded server's reward model: auto | cpu | cuda

    def __post_init__(self) -> None:
        _one_of(self.source, REWARD_SOURCES, "reward.source")
        _one_of(self.unjudged, UNJUDGED_POLICIES, "reward.unjudged")
        if self.source == "reward_model" and not (self.reward_model or self.address):
            raise ValueError("reward.source=reward_model needs reward.reward_model (a directory) or "
                             "reward.address (a server started with --prm)")


@dataclass(frozen=True)
class PPOAlgoConfig:
    gamma: float = 1.0             # discount over tokens
    lam: float = 0.95              # GAE lambda
    kl_coef: float = 0.05          # beta of the per-token reward -beta (logp - ref_logp); 0 + fixed: no reference
    kl_controller: str = "fixed"   # fixed | adaptive (Ziegler et al. 2019)
    kl_target: float = 6.0         # adaptive: the wanted KL per sequence (nats)
    kl_horizon: int = 10000        # adaptive: sequences over which the coefficient may move by ~e^0.2
    clip_eps: float = 0.2          # policy ratio clip
    value_clip: float = 0.2        # the value's move from its rollout-time value is clipped to this
    whiten_advantages: bool = True
    is_level: str = "token"        # engine/trainer mismatch correction (trainer/losses.py): none | token | sequence
    is_cap: float = 3.0
    ppo_epochs: int = 4
    mini_batches: int = 1
    micro_batch_size: int = 8

    def __post_init__(self) -> None:
        _one_of(self.kl_controller, KL_CONTROLLER_NAMES, "algo.kl_controller")
        _one_of(self.is_level, IS_CORRECTIONS, "algo.is_level")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("algo.gamma and algo.lam must be in [0, 1]")
        if self.kl_coef < 0 or self.kl_target <= 0 or self.kl_horizon < 1:
            raise ValueError("algo: kl_coef >= 0, kl_target > 0, kl_horizon >= 1")
        if self.clip_eps <= 0 or self.value_clip <= 0 or self.is_cap < 1:
            raise ValueError("algo: clip_eps > 0, value_clip > 0, is_cap >= 1")
        if min(self.ppo_epochs, self.mini_batches, self.micro_batch_size) < 1:
            raise ValueError("algo: ppo_epochs, mini_batches, micro_batch_size must be >= 1")


@dataclass(frozen=True)
class PPOConfig:
    steps: int = 100               # PPO steps (one batch of rollouts each)
    seed: int = 0
    out_dir: str = "runs/ppo"      # the policy: <out_dir>/final/model; the critic: <out_dir>/final/critic
    log_samples: int = 2           # completions written to samples.jsonl per step
    critic: str = ""               # the critic's starting weights; "": the reward model if rewards come
                                   # from one, else the initial policy's backbone (a new value head)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(tiny=True))
    data: DataConfig = field(default_factory=DataConfig)
    rollout: PPORolloutConfig = field(default_factory=PPORolloutConfig)
    reward: PPORewardConfig = field(default_factory=PPORewardConfig)
    algo: PPOAlgoConfig = field(default_factory=PPOAlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)                                  # the policy's
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))          # the critic's

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def load_ppo_config(path: str | Path | None, overrides: Sequence[str] = ()) -> PPOConfig:
    return from_dict(PPOConfig, load_yaml(path, overrides))
