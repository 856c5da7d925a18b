"""What `verirl demo` leaves in its run directory: PNG curves and one self-contained HTML page.

Pure functions of the records the demo collected (metrics.jsonl lines, the held-out evaluations),
so the report can be redrawn from a finished run directory without rerunning anything.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Sequence

__all__ = ["read_jsonl_records", "plot_curves", "write_report"]


def read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        if isinstance(r.get(key), (int, float)):
            xs.append(r["step"])
            ys.append(r[key])
    return xs, ys


def plot_curves(run_dir: Path, sft: Sequence[dict[str, Any]], grpo: Sequence[dict[str, Any]],
                heldout: Sequence[dict[str, Any]], accuracy: dict[str, float]) -> list[Path]:
    """Draw the demo's curves into `run_dir`: SFT loss; GRPO reward with the held-out accuracy along the
    way (`heldout`: {"step", "accuracy"} records); held-out accuracy after each stage (`accuracy`)."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*_series(sft, "loss"), lw=1, label="train loss")
    ax.plot(*_series(sft, "eval_loss"), "o-", label="held-out loss")
    ax.set(xlabel="SFT step", ylabel="nats per completion token", title="SFT warm-up", yscale="log")
    ax.legend()
    written.append(_save(fig, run_dir / "sft_loss.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*_series(grpo, "reward_mean"), ".-", label="mean reward of the sampled groups")
    ax.plot(*_series(grpo, "zero_std_fraction"), ":", label="groups without signal (all equal)")
    ax.plot(*_series(heldout, "accuracy"), "s-", label="held-out accuracy (greedy)")
    ax.set(xlabel="GRPO step", ylabel="fraction", title="GRPO: verifier reward while training", ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)
    written.append(_save(fig, run_dir / "grpo_reward.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(accuracy)
    bars = ax.bar(names, [100 * accuracy[n] for n in names], color=["#4c72b0", "#55a868", "#999999"][:len(names)])
    ax.bar_label(bars, fmt="%.1f%%")
    ax.set(ylabel="held-out accuracy (%)", title="Greedy answers of held-out problems, checked by the verifier",
           ylim=(0, 105))
    written.append(_save(fig, run_dir / "accuracy.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
pre { margin: 0; white-space: pre-wrap; font-size: 13px; }
.ok { background: #e3f4e3; } .bad { background: #f8e0e0; }
img { max-width: 100%; }
"""


def write_report(path: Path, summary: dict[str, Any], images: Sequence[Path],
                 samples: Sequence[dict[str, Any]]) -> Path:
    """One HTML page with everything inlined (images as data URIs): it can be mailed or archived alone.
    `samples`: {"prompt", "gold", "before", "before_correct", "after", "after_correct"} per problem."""
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                   for k, v in summary.items())
    pictures = "".join(f'<p><img alt="{p.stem}" src="data:image/png;base64,'
                       f'{base64.b64encode(p.read_bytes()).decode()}"></p>' for p in images)
    cells = []
    for s in samples:
        cells.append(
            f"<tr><td><pre>{html.escape(s['prompt'])}</pre>gold: <b>{html.escape(s['gold'])}</b></td>"
            f"<td class='{'ok' if s['before_correct'] else 'bad'}'><pre>{html.escape(s['before'])}</pre></td>"
            f"<td class='{'ok' if s['after_correct'] else 'bad'}'><pre>{html.escape(s['after'])}</pre></td></tr>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>verirl demo</title><style>{_STYLE}</style>"
            f"</head><body><h1>verirl demo: GRPO with verifier rewards</h1>"
            f"<p>A tiny Qwen2-architecture model, warmed up by SFT on a synthetic arithmetic task, then trained by "
            f"GRPO with rewards from a real verifier server. Accuracies are greedy answers to held-out problems, "
            f"checked by the same verifier.</p><table>{rows}</table>{pictures}"
            f"<h2>Held-out problems: before and after GRPO</h2><table><tr><th>problem</th><th>before GRPO</th>"
            f"<th>after GRPO</th></tr>{''.join(cells)}</table></body></html>")
    path.write_text(page)
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
