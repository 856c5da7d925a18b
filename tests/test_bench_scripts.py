"""The GPU benchmarks' CPU checks run (tiny shapes): a script that breaks is found here, not on the
GPU machine, where each call costs device time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_grpo_gpu_tiny(tmp_path):
    out = tmp_path / "grpo.json"
    subprocess.run([sys.executable, str(ROOT / "bench/bench_grpo_gpu.py"), "--tiny", "--parts",
                    "generate,engine,grpo", "--engine-caches", "dynamic,static,paged", "--grpo-variants",
                    "rollout.hf_cache=dynamic,rollout.hf_cache=paged", "--out", str(out)],
                   check=True, timeout=600, cwd=tmp_path, capture_output=True)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    assert all("tokens_per_s" in v for v in result["engine"].values()), result["engine"]
    for variant in ("dynamic", "paged"):
        grpo = result[f"grpo rollout.hf_cache={variant}"]
        assert grpo["seconds"]["total"] > 0 and grpo["update_tokens"] > 0, grpo


def test_bench_prm_tiny(tmp_path):
    out = tmp_path / "prm.json"
    subprocess.run([sys.executable, str(ROOT / "bench/bench_prm.py"), "--device", "cpu", "--model", "tiny",
                    "--chains", "16", "--max-len", "256", "--out", str(out)],
                   check=True, timeout=600, cwd=tmp_path, capture_output=True)
    result = json.loads(out.read_text())
    assert result["batched_tokens_per_s"] > 0 and result["max_score_diff_fast_vs_fp32"] < 1e-4


@pytest.mark.slow
def test_prm_f1_by_corruption_kind(tmp_path):
    """bench/prm_f1.py scores a step_likelihood PRM directory on the config's held-out chains."""
    from prm_models import build_prm, require_torch
    require_torch()
    model = build_prm(tmp_path / "sl", "step_likelihood", seed=8)
    out = tmp_path / "f1.json"
    subprocess.run([sys.executable, str(ROOT / "bench/prm_f1.py"), str(model), "--config",
                    str(ROOT / "configs/prm_step_likelihood.yaml"), "--examples", "24", "--out", str(out)],
                   check=True, timeout=300, cwd=ROOT, capture_output=True)
    result = json.loads(out.read_text())
    assert result["erroneous_chains"] + result["correct_chains"] == 24 and 0 <= result["f1"] <= 1
    assert sum(v["chains"] for v in result["by_kind"].values()) == 24
