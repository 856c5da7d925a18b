"""Where a recipe's per-step metrics go: metrics.jsonl always; TensorBoard, Weights & Biases and a
progress bar when asked for.

    with MetricSinks(out_dir, LogConfig(tensorboard=True), total_steps=100, config=to_dict(cfg)) as sinks:
        sinks.write(step, metrics)      # a dict; nested dicts become "a/b" scalars for TB and W&B

TensorBoard goes through `torch.utils.tensorboard` (needs the `tensorboard` package, in the `train`
extra) into `<out_dir>/tb`; W&B needs `wandb` installed (not in any extra: it is large and an account
is the user's choice) and runs offline unless WANDB_MODE says otherwise. A sink that is asked for but
not installed is an error at start, not a silent no-op. Non-numeric values (status counts are nested
dicts of ints, those are kept) and NaN are left out of TB/W&B; the JSONL line has everything.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["LogConfig", "MetricSinks", "flatten_scalars", "json_line"]


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = False      # <out_dir>/tb, through torch.utils.tensorboard
    wandb: bool = False            # needs `pip install wandb`
    wandb_project: str = "verirl"
    wandb_run_name: str = ""       # "" : W&B picks one
    progress: bool = True          # a tqdm bar on stderr with reward and seconds per step


def flatten_scalars(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """{"seconds": {"generate": 1.2}} -> {"seconds/generate": 1.2}; finite numbers only."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def json_line(metrics: Mapping[str, Any]) -> str:
    """One JSON line; NaN becomes null (strict JSON readers reject NaN)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(metrics)) + "\n"


class MetricSinks:
    def __init__(self, out_dir: str | Path, cfg: LogConfig, *, total_steps: int, first_step: int = 0,
                 config: Mapping[str, Any] | None = None):
        self.out = Path(out_dir)
        self.tb = self.wandb_run = self.bar = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # torch.utils.tensorboard raises this when tensorboard is missing
                raise RuntimeError("log.tensorboard=true needs the `tensorboard` package "
                                   "(pip install -e '.[train]')") from exc
            self.tb = SummaryWriter(log_dir=str(self.out / "tb"), purge_step=first_step + 1 if first_step else None)
        if cfg.wandb:
            try:
                import wandb
            except ImportError as exc:
                raise RuntimeError("log.wandb=true needs `pip install wandb`") from exc
            os.environ.setdefault("WANDB_MODE", "offline")
            self.wandb_run = wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name or None,
                                        dir=str(self.out), config=dict(config or {}), resume="allow")
        self.jsonl = open(self.out / "metrics.jsonl", "a")  # after the checks: nothing to close on an error
        if cfg.progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=first_step, unit="step", dynamic_ncols=True)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.jsonl.write(json_line(metrics))
        self.jsonl.flush()
        scalars = flatten_scalars(metrics)
        scalars.pop("step", None)
        if self.tb is not None:
            for name, value in scalars.items():
                self.tb.add_scalar(name, value, step)
            self.tb.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)
        if self.bar is not None:
            shown = {k: f"{scalars[k]:.3g}" for k in ("reward_mean", "loss", "kept") if k in scalars}
            if "seconds/total" in scalars:
                shown["s/step"] = f"{scalars['seconds/total']:.1f}"
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> MetricSinks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
