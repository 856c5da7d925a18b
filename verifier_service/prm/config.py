"""The typed, frozen configuration of PRM serving, and how the served PRMFormat is resolved.

The model directory's `verirl_prm.json` (tasks/prm_format.py) says how the model reads steps;
a released PRM without that file is described by the `format_*` fields (the `--prm-*` flags),
which also override the file. The model's context (`max_position_embeddings` in config.json)
caps max_length: a chain longer than what the model can read is refused, never truncated.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tasks.prm_format import FORMAT_FILE, PRMFormat

__all__ = ["PRMConfig", "DEVICES", "resolve_format", "FORMAT_OVERRIDES"]

DEVICES = ("auto", "cpu", "cuda")
# PRMConfig field -> PRMFormat key it overrides
FORMAT_OVERRIDES = {
    "kind": "kind", "step_tag": "step_tag", "step_separator": "step_separator", "good_token": "good_token",
    "bad_token": "bad_token", "correct_label": "correct_label", "aggregation": "default_aggregation",
    "max_length": "max_length",
}


@dataclass(frozen=True)
class PRMConfig:
    dir: str                              # a local Hugging Face model directory (no downloads)
    # Overrides of the directory's verirl_prm.json (None: from the file). Without the file, kind and
    # step_tag are required here.
    kind: str | None = None               # "token_classification", "causal_lm" or "step_likelihood"
    step_tag: str | None = None
    step_separator: str | None = None
    good_token: str | None = None
    bad_token: str | None = None
    correct_label: int | None = None
    aggregation: str | None = None        # the default aggregation ("min", "prod", "last", "mean")
    max_length: int | None = None         # tokens; capped by the model's max_position_embeddings
    # Execution
    device: str = "auto"                  # "auto": cuda if the PRM process sees a GPU, else cpu
    batch_tokens: int = 8192              # padded tokens per forward pass (rows x longest row)
    compile: bool = False                 # torch.compile the scoring forward (GPU; first passes compile)
    max_wait_s: float = 0.005             # an idle batcher waits this long for more callers to join a batch
    timeout_s: float = 60.0               # deadline of an item from its arrival: waiting + scoring
    start_timeout_s: float = 600.0        # loading the model (also on a restart after a crash)
    max_candidates: int = 256             # K of a CandidatesItem

    def __post_init__(self) -> None:
        if not self.dir:
            raise ValueError("PRMConfig.dir is required")
        if self.device not in DEVICES:
            raise ValueError(f"PRMConfig.device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("batch_tokens", "max_candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"PRMConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("timeout_s", "start_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"PRMConfig.{name} must be a positive number of seconds, got {value}")
        if not (math.isfinite(self.max_wait_s) and self.max_wait_s >= 0):
            raise ValueError(f"PRMConfig.max_wait_s must be >= 0, got {self.max_wait_s}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PRMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PRMConfig keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**values)

    @property
    def overrides(self) -> dict[str, Any]:
        return {key: getattr(self, name) for name, key in FORMAT_OVERRIDES.items() if getattr(self, name) is not None}


def resolve_format(config: PRMConfig) -> PRMFormat:
    """The PRMFormat served: the directory's file (if any) with the config's overrides, max_length
    capped by the model's context. ValueError (naming the file or key) when it cannot be built."""
    directory = Path(config.dir)
    if not (directory / "config.json").is_file():
        raise ValueError(f"{directory}: not a Hugging Face model directory (no config.json)")
    if (directory / FORMAT_FILE).is_file():
        fmt = PRMFormat.load(directory).replace(**config.overrides)
    else:
        try:
            fmt = PRMFormat.from_dict(config.overrides)
        except ValueError as exc:
            raise ValueError(f"{directory} has no {FORMAT_FILE}: describe the model with --prm-kind and "
                             f"--prm-tag ({exc})") from exc
    context = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    if isinstance(context, int) and context < fmt.max_length:
        fmt = fmt.replace(max_length=context)
    return fmt
