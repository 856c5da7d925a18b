"""Config: every shipped file loads; overrides; unknown keys and bad values are errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.cli import main
from trainer.config import GRPOConfig, load_config

# GRPO configs; <recipe>_*.yaml belong to the other recipes (each recipe's test file loads them)
OTHER_RECIPES = ("sft_", "prm_", "rm_", "dpo_", "ppo_")
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")
                 if not p.name.startswith(OTHER_RECIPES))


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "gsm8k_1.5b.yaml", "code.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, GRPOConfig)
    assert cfg.rollout.group_size >= 2


def test_overrides_dotted_and_typed():
    cfg = load_config(CONFIGS[0], ["rollout.group_size=4", "optim.lr=1e-4", "optim.betas=[0.9, 0.95]",
                                   "algo.filter_zero_std=false", "steps=3"])
    assert (cfg.rollout.group_size, cfg.optim.lr, cfg.optim.betas) == (4, 1e-4, (0.9, 0.95))
    assert cfg.algo.filter_zero_std is False and cfg.steps == 3


@pytest.mark.parametrize("override,message", [
    ("rollout.gruop_size=4", "rollout.gruop_size"),
    ("nonsense=1", "nonsense"),
    ("optim.lr=fast", "optim.lr"),
    ("rollout.group_size=2.5", "rollout.group_size"),
    ("algo.aggregation=mean", "algo.aggregation"),
    ("algo.advantage=ppo", "algo.advantage"),
    ("rollout.engine=sglang", "rollout.engine"),
    ("rollout.group_size=1", "group_size"),
    ("optim=3", "optim"),
    ("reward.unjudged=zero", "reward.unjudged"),
    ("rollout.hf_cache=huge", "rollout.hf_cache"),
    ("rollout.hf_sampler=mine", "rollout.hf_sampler"),
    ("rollout.hf_decode_kernel=flash", "rollout.hf_decode_kernel"),
    ("rollout.vllm_tensor_parallel=0", "rollout.vllm_tensor_parallel"),
    ("rollout.vllm_block_size=-32", "rollout.vllm_block_size"),
])
def test_bad_values_are_errors(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        load_config(CONFIGS[0], [override])


def test_tensor_parallel_vllm_needs_torchrun(tmp_path, monkeypatch):
    from trainer.grpo import train
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = load_config(CONFIGS[0], ["rollout.engine=vllm", "rollout.vllm_tensor_parallel=2", f"out_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"rollout\.vllm_tensor_parallel: 2 needs torchrun"):
        train(cfg)
    assert not any(tmp_path.iterdir())  # refused before the run started


def test_frozen():
    cfg = load_config(CONFIGS[0])
    with pytest.raises(AttributeError):
        cfg.steps = 3  # type: ignore[misc]


def test_cli_print_config_and_error(capsys):
    assert main(["grpo", "--config", str(CONFIGS[0]), "steps=7", "--print-config"]) == 0
    assert '"steps": 7' in capsys.readouterr().out
    assert main(["grpo", "--config", str(CONFIGS[0]), "stepz=7"]) == 2
    assert "stepz" in capsys.readouterr().err
