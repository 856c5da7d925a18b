"""`verirl demo`: its settings are the shipped configs; a short run writes the whole run directory;
the time budget ends GRPO; the CLI finds it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.config import GRPOConfig, from_dict, load_config, to_dict
from trainer.demo import GRPO_SETTINGS, SFT_SETTINGS, main
from trainer.sft_config import SFTConfig, load_sft_config

ROOT = Path(__file__).resolve().parents[2]


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_demo_settings_are_the_shipped_configs():
    """`verirl train grpo --config configs/demo.yaml` reproduces the demo's GRPO stage (and likewise SFT),
    up to what the demo sets per run: where the model comes from, the output directory, the server."""
    shipped = to_dict(load_config(ROOT / "configs" / "demo.yaml"))
    demo = to_dict(from_dict(GRPOConfig, {**GRPO_SETTINGS, "model": {**GRPO_SETTINGS["model"], "path": "x"}}))
    for section in ("data", "rollout", "algo", "optim"):
        assert shipped[section] == demo[section], section
    assert _without(shipped["reward"], "address", "server_math_workers") == \
        _without(demo["reward"], "address", "server_math_workers")
    assert shipped["seed"] == demo["seed"]  # steps: the demo runs GRPO by its time budget

    shipped_sft = to_dict(load_sft_config(ROOT / "configs" / "sft_demo.yaml"))
    demo_sft = to_dict(from_dict(SFTConfig, SFT_SETTINGS))
    for section in ("data", "optim"):
        assert shipped_sft[section] == demo_sft[section], section
    assert shipped_sft["steps"] == demo_sft["steps"] and shipped_sft["batch_size"] == demo_sft["batch_size"]


def _run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "run"
    assert main(["--out", str(out), "--sft-steps", "30", "--eval-problems", "12", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def test_demo_writes_the_run_directory_and_stops_at_the_step_cap(tmp_path):
    summary = _run(tmp_path, "--grpo-steps", "2", "--eval-every", "1", "--engine", "hf")
    out = tmp_path / "run"
    for key in ("sft_accuracy", "before_accuracy", "after_accuracy", "steps", "seconds"):
        assert key in summary
    assert summary["steps"] == 2 and summary["sft_steps"] == 30
    assert summary["before_accuracy"] == summary["sft_accuracy"]
    assert 0.0 <= summary["after_accuracy"] <= 1.0
    for name in ("report.html", "sft_loss.png", "grpo_reward.png", "accuracy.png", "samples.jsonl",
                 "heldout_evals.jsonl", "grpo/metrics.jsonl", "sft/metrics.jsonl"):
        assert (out / name).is_file(), name
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evals = [json.loads(line) for line in (out / "heldout_evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert evals[-1]["accuracy"] == summary["after_accuracy"]  # the last evaluation is the final model's
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and sum(s["after_correct"] for s in samples) / 12 == summary["after_accuracy"]
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and samples[0]["prompt"].split()[0] in page


def test_the_time_budget_ends_grpo_after_one_step(tmp_path):
    """A budget already spent by set-up and SFT still runs one GRPO step, then stops."""
    summary = _run(tmp_path, "--grpo-steps", "50", "--minutes", "0.01", "--eval-every", "0", "--engine", "hf")
    assert summary["steps"] == 1


@pytest.mark.slow
def test_demo_with_vllm_through_the_cli(tmp_path):
    """The README's path: the `verirl` console script finds the trainer's `demo` plugin; GRPO samples
    with the vLLM CPU engine."""
    out = tmp_path / "run"
    verirl = Path(sys.executable).parent / "verirl"
    proc = subprocess.run([str(verirl), "demo", "--out", str(out), "--sft-steps", "20", "--grpo-steps", "2",
                           "--eval-problems", "8", "--eval-every", "0"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "vllm" and summary["steps"] == 2
    assert "held-out accuracy: after SFT" in proc.stdout


def test_bad_arguments_are_a_usage_error(capsys):
    assert main(["--minutes", "0"]) == 2
    assert "--minutes" in capsys.readouterr().err
