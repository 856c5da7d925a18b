"""`verirl plot RUN_DIR`: a run's training curves from its metrics.jsonl, drawn to PNG.

    verirl plot runs/demo                 # -> runs/demo/curves.png
    verirl plot runs/demo --out a.png --smooth 5

One panel per metric that the run logged (reward, loss, KL, entropy, lengths, zero-variance groups,
dynamic-sampling rounds, step-sampler accept rates, seconds per phase, ...); panels of metrics the run
does not have are left out. Works for any recipe that writes `step` plus numbers per line (GRPO, SFT).
matplotlib (train extra) is imported here only, with the Agg backend: no display needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["PANELS", "read_metrics", "series", "plot_run", "main"]

# panel title -> metric keys drawn in it ("a/b" reads nested dicts, e.g. seconds/generate)
PANELS: dict[str, tuple[str, ...]] = {
    "reward": ("reward_mean", "reward_mean_sampled", "reward_math", "reward_code", "reward_steps"),
    "loss": ("loss",),
    "KL / entropy": ("kl", "entropy"),
    "grad norm": ("grad_norm",),
    "completion length": ("completion_length",),
    "groups without signal": ("zero_std_fraction", "truncated_fraction"),
    "dynamic sampling": ("sampling_rounds", "prompts_sampled"),
    "step sampler accept rates": ("step_accept_first", "step_accept_resampled", "step_forced"),
    "clipping / IS": ("clip_low", "clip_high", "is_weight", "ratio"),
    "seconds per phase": ("seconds/generate", "seconds/reward", "seconds/reward_busy", "seconds/logprobs",
                          "seconds/update", "seconds/weight_sync"),
    "eval loss": ("eval_loss",),
    "SFT accuracy": ("eval_accuracy", "eval_chain_accuracy"),
}


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.jsonl in the run directory")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _get(row: dict, key: str) -> float | None:
    value: object = row
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def series(rows: Sequence[dict], key: str, smooth: int = 1) -> tuple[list[float], list[float]]:
    """(steps, values) of `key` where present; `smooth` > 1 takes a trailing moving average."""
    points = [(float(r["step"]), v) for r in rows if "step" in r and (v := _get(r, key)) is not None]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if smooth > 1:
        ys = [sum(ys[max(0, i - smooth + 1):i + 1]) / (i + 1 - max(0, i - smooth + 1)) for i in range(len(ys))]
    return xs, ys


def plot_run(run_dir: str | Path, out: str | Path | None = None, smooth: int = 1) -> Path:
    """Draw the run's curves; returns the PNG's path. Raises ValueError if nothing is plottable."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    panels = [(title, [(k, series(rows, k, smooth)) for k in keys]) for title, keys in PANELS.items()]
    panels = [(title, [(k, s) for k, s in lines if s[0]]) for title, lines in panels]
    panels = [(title, lines) for title, lines in panels if lines]
    if not panels:
        raise ValueError(f"{run_dir}: no known metric in metrics.jsonl")
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.2 * nrows), squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels):
        for key, (xs, ys) in lines:
            ax.plot(xs, ys, label=key.split("/")[-1], marker="." if len(xs) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    path = Path(out) if out else Path(run_dir) / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verirl plot", description="Draw a run's metrics.jsonl to PNG.")
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="PNG path (default RUN_DIR/curves.png)")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average window in steps")
    args = parser.parse_args(argv)
    try:
        path = plot_run(args.run_dir, args.out, args.smooth)
    except (OSError, ValueError) as exc:
        print(f"verirl plot: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
