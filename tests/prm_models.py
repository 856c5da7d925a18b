"""Tiny random PRMs built locally for the PRM tests (no downloads): trainer/tiny.py's recipe, a
2-layer Qwen2 with the byte-level character tokenizer, as a causal LM (Math-Shepherd style), a
token-classification model, or a causal LM with a step_likelihood head (`HEAD`), with a verirl_prm.json. Under CI a missing torch fails the tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from tasks.prm_format import PRMFormat, save_head

from ci_rules import require_modules

STEP_TAG = " [s]"  # several tokens: the score is read at the last one
# a step_likelihood head: unlikely tokens (high NLL) lower P(correct); a random LM's NLLs are ~4.6 nats
HEAD = ([-0.3, -0.2, -0.1, -0.2, -0.1, -0.05], 2.5)


def require_torch() -> None:
    require_modules("torch", "transformers")


def build_prm(path: Path, kind: str, *, seed: int = 0, num_labels: int = 2, max_length: int = 512,
              max_position_embeddings: int = 512, hidden: int = 128, layers: int = 2,
              write_format: bool = True) -> Path:
    """A random PRM directory of `kind` ("causal_lm", "token_classification" or "step_likelihood")."""
    import torch
    from transformers import AutoConfig, Qwen2ForTokenClassification

    from trainer.tiny import TinyConfig, build_tiny

    shape = TinyConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                       max_position_embeddings=max_position_embeddings)
    if kind in ("causal_lm", "step_likelihood"):
        build_tiny(path, seed=seed, config=shape)
        if kind == "step_likelihood":
            save_head(path, *HEAD)
    else:
        lm = path.with_name(path.name + "-lm")
        build_tiny(lm, seed=seed, config=shape)
        shutil.copytree(lm, path, ignore=shutil.ignore_patterns("model.safetensors", "generation_config.json"))
        shutil.rmtree(lm)
        config = AutoConfig.from_pretrained(path)
        config.num_labels = num_labels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            Qwen2ForTokenClassification(config).save_pretrained(path)
    if write_format:
        PRMFormat(kind=kind, step_tag=STEP_TAG, max_length=max_length).save(path)
    return path
