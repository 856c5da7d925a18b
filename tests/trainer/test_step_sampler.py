"""PRM-guided step-level rejection sampling, end to end: the tiny policy (hf engine) proposes steps, a
REAL verifier server with a tiny random PRM (built here, verirl_prm.json included) scores them.

A random PRM's scores are arbitrary but deterministic, so the tests check the control flow against
the server itself: every accepted step's recorded score is what the server gives that step after its
prefix; steps under the threshold are exactly the forced ones; threshold 0 accepts every first round,
a threshold above 1 forces every step after all resampling rounds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from tasks.types import Problem
from trainer.step_sampler import StepSampler, StepSamplerConfig, Trajectory, write_sft_data

from ci_rules import require_modules

ROOT = Path(__file__).resolve().parents[2]
PROBLEMS = [Problem(id=f"p{i}", prompt=f"What is {i} + 3?\n", gold=str(i + 3)) for i in range(3)]


def _require_prm() -> None:
    require_modules("verifier_service.prm")


@pytest.fixture(scope="module")
def prm_server(tmp_path_factory):
    """A real gRPC server on port 0 serving a random 2-layer causal-LM PRM (Math-Shepherd style)."""
    _require_prm()
    from tasks.prm_format import PRMFormat
    from trainer.tiny import build_tiny
    from verifier_service.config import ServerConfig
    from verifier_service.server import create_server

    directory = build_tiny(tmp_path_factory.mktemp("prm") / "prm", seed=5)
    PRMFormat(kind="causal_lm", step_tag=" [s]", max_length=512).save(directory)
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1, sandbox="off",
                                              prm={"dir": str(directory), "device": "cpu"}))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def engine(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.rollout import engine_class
    torch.manual_seed(0)
    return engine_class("hf")(AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir))


def run(engine, address, **knobs):
    from verifier_service.client import VerifierClient
    cfg = StepSamplerConfig(**{"candidates": 3, "max_resamples": 1, "max_steps": 3, "max_step_tokens": 6,
                               "separator": " ", **knobs})
    with VerifierClient(address) as client:
        sampler = StepSampler(engine, client, cfg, engine.tokenizer.eos_token_id)
        trajs, stats = sampler.run(PROBLEMS, [p.prompt for p in PROBLEMS])
        # what the server says of each accepted step after its prefix
        rescored = [[client.score_candidates([{"id": "x", "problem": t.problem.prompt, "prefix_steps": t.steps[:k],
                                               "candidates": [t.steps[k]]}])[0].scores[0]
                     for k in range(len(t.steps))] for t in trajs]
    return cfg, trajs, stats, rescored


def check_trajectories(cfg, trajs, tokenizer):
    for t in trajs:
        assert 1 <= len(t.steps) <= cfg.max_steps and len(t.step_scores) == len(t.steps)
        assert len(t.token_ids) == len(t.logprobs) and all(lp <= 0 for lp in t.logprobs)
        assert tokenizer.decode(t.token_ids, skip_special_tokens=True) == t.text
        assert all(s and cfg.separator not in s for s in t.steps)
        assert t.forced == sum(s < cfg.threshold for s in t.step_scores)
        ended = t.token_ids[-1] == tokenizer.eos_token_id or cfg.answer_marker in t.steps[-1]
        if ended or len(t.steps) == cfg.max_steps:  # else it ended early: no candidate could be scored
            assert t.finish_reason == ("stop" if ended else "length")


@pytest.mark.slow
def test_accepted_steps_carry_the_servers_scores(engine, prm_server):
    cfg, trajs, stats, rescored = run(engine, prm_server, threshold=0.5)
    check_trajectories(cfg, trajs, engine.tokenizer)
    for t, scores in zip(trajs, rescored):
        assert t.step_scores == pytest.approx(scores, abs=1e-5)
    steps = sum(len(t.steps) for t in trajs)
    assert stats["accepted_first"] + stats["accepted_resampled"] + stats["forced"] == steps
    assert stats["forced"] == sum(t.forced for t in trajs)
    assert stats["candidates_sampled"] >= 3 * steps and stats["candidates_scored"] <= stats["candidates_sampled"]
    assert stats["unjudged"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("threshold, first, forced", [(0.0, True, False), (1.01, False, True)])
def test_threshold_extremes(engine, prm_server, threshold, first, forced):
    cfg, trajs, stats, _ = run(engine, prm_server, threshold=threshold)
    check_trajectories(cfg, trajs, engine.tokenizer)
    steps = sum(len(t.steps) for t in trajs)
    assert stats["accepted_first"] == (steps if first else 0)
    assert stats["forced"] == (steps if forced else 0)
    assert stats["accepted_resampled"] == 0
    if forced:  # every step used all 1 + max_resamples rounds
        assert stats["candidates_sampled"] == steps * cfg.candidates * (1 + cfg.max_resamples)
    assert all(t.clean != forced for t in trajs)


@pytest.mark.slow
def test_sft_data_keeps_verified_clean_trajectories(prm_server, tmp_path):
    from verifier_service.client import VerifierClient
    p = PROBLEMS[0]  # gold 3

    def traj(text, forced=0, finish="stop"):
        return Trajectory(p, p.prompt, steps=text.split("\n"), step_scores=[0.9], text=text, forced=forced,
                          done=True, finish_reason=finish)

    trajs = [traj("0 + 3 = 3\n#### 3"), traj("0 + 3 = 4\n#### 4"), traj("0 + 3 = 3\n#### 3", forced=1),
             traj("0 + 3 = 3", finish="length")]
    with VerifierClient(prm_server) as client:
        counts = write_sft_data(trajs, client, tmp_path / "sft.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert counts == Counter(total=4, clean=2, verified=1, written=1)
    assert [(r["prompt"], r["completion"]) for r in rows] == [(p.prompt, "0 + 3 = 3\n#### 3")]


@pytest.mark.slow
def test_offline_generator_cli(tiny_dir, prm_server, tmp_path, capsys):
    from trainer.step_sampler import main
    out = tmp_path / "sft.jsonl"
    assert main(["--model", str(tiny_dir), "--server", prm_server, "--out", str(out), "--num-problems", "2",
                 "--samples", "2", "--candidates", "2", "--max-steps", "2", "--max-step-tokens", "4"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["total"] == 4 and summary["rounds"] >= 2 and out.exists()
    assert summary["written"] == len(out.read_text().splitlines())  # a random policy: usually 0


@pytest.mark.slow
def test_grpo_with_the_step_sampler(tmp_path, prm_server):
    """GRPO's groups from the step sampler: one step runs, the accept rates are logged."""
    from trainer.config import load_config
    from trainer.grpo import train
    cfg = load_config(ROOT / "configs/demo.yaml", [
        "steps=1", "rollout.engine=hf", "rollout.sampler=prm_steps", f"out_dir={tmp_path}",
        f"reward.address={prm_server}", "rollout.prompts_per_step=2", "rollout.group_size=2",
        "step_sampler.candidates=2", "step_sampler.max_steps=2", "step_sampler.max_step_tokens=4",
        "step_sampler.max_resamples=1", "log.progress=false"])
    train(cfg)
    [m] = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert m["completions"] == 4 and m["statuses"]["math"]
    rates = m["step_accept_first"] + m["step_accept_resampled"] + m["step_forced"]
    assert rates == pytest.approx(1.0) and m["step_candidates_scored"] > 0


@pytest.mark.slow
def test_grpo_with_the_step_sampler_under_torchrun(tmp_path, prm_server):
    """Two gloo ranks, each growing its own groups step by step through the PRM server: every
    completion judged, the accept counts of both ranks summed into the rates."""
    import os
    import subprocess
    import sys
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "trainer.cli", "grpo", "--config", str(ROOT / "configs/demo.yaml"),
            "steps=1", "rollout.engine=hf", "rollout.sampler=prm_steps", f"out_dir={tmp_path}",
            f"reward.address={prm_server}", "rollout.prompts_per_step=2", "rollout.group_size=2",
            "step_sampler.candidates=2", "step_sampler.max_steps=2", "step_sampler.max_step_tokens=4",
            "step_sampler.max_resamples=1", "log.progress=false"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    [m] = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert m["world_size"] == 2 and m["completions"] == 4 and sum(m["statuses"]["math"].values()) == 4
    rates = m["step_accept_first"] + m["step_accept_resampled"] + m["step_forced"]
    assert rates == pytest.approx(1.0) and m["step_candidates_scored"] >= 2 * 2  # >= one round a rank
