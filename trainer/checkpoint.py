"""Checkpoints: the weights (transformers format, loadable by vLLM) apart from the recipe state.

    <dir>/model/            weights + tokenizer (save_pretrained)
    <dir>/recipe_state.pt   optimizer, scheduler, RNG states (python, torch), step, data position

Resume loads the weights from <dir>/model into the policy and starts the rollout engine from the same
directory, so the engine never samples with stale weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["RecipeState", "save_checkpoint", "load_recipe_state"]


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
