"""Checkpoints: the weights (transformers format, loadable by vLLM) apart from the recipe state.

    <dir>/model/            weights + tokenizer (save_pretrained)
    <dir>/recipe_state.pt   optimizer, scheduler, RNG states (python, torch), step, data position

Resume loads the weights from <dir>/model into the policy and starts the rollout engine from the same
directory, so the engine never samples with stale weights.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["RecipeState", "save_checkpoint", "load_recipe_state", "start_run", "starting_model_dir"]


@dataclass(frozen=True)
class RecipeState:
    step: int            # steps completed
    data_position: int   # prompts consumed


def save_checkpoint(path: str | Path, model: Any, tokenizer: Any, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: RecipeState) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "python_rng": random.getstate(), "torch_rng": torch.random.get_rng_state(),
                "step": state.step, "data_position": state.data_position}, tmp / "recipe_state.pt")
    tmp.rename(path)  # a checkpoint directory exists only once complete
    return path


def load_recipe_state(path: str | Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> RecipeState:
    """Restore optimizer, scheduler and RNG states (the weights come from <path>/model)."""
    blob = torch.load(Path(path) / "recipe_state.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    random.setstate(blob["python_rng"])
    torch.random.set_rng_state(blob["torch_rng"])
    return RecipeState(step=blob["step"], data_position=blob["data_position"])


def start_run(cfg: Any) -> Path:
    """What every recipe does first: seed python and torch from `cfg.seed`, create `cfg.out_dir` and
    write the resolved config there. Returns the output directory."""
    from trainer.config import to_dict
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    return out


def starting_model_dir(model: Any, out: Path, tiny_shape: Any = None) -> Path:
    """The model a run starts from: `model.path`, or with `model.tiny` the tiny model built into
    <out>/tiny_model (seed `model.tiny_seed`, shape `tiny_shape` or the default)."""
    if not model.tiny:
        return Path(model.path)
    from trainer.tiny import build_tiny
    return build_tiny(out / "tiny_model", seed=model.tiny_seed, **({"config": tiny_shape} if tiny_shape else {}))
