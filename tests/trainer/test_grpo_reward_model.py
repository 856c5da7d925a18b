"""A trained Bradley-Terry reward model as GRPO's reward (issue 4): the RM is served by a real verifier
server (`--prm RM_DIR`, the one-step case of step scoring) and GRPO's `reward.steps` weight turns its
aggregated score into the reward. The "seven" task of the GRPO tests: every gold is 7, one-token answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.types import Problem
from trainer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SEVEN = ["data.source=jsonl", "data.prompt_style=bare", "rollout.max_tokens=1", "rollout.prompts_per_step=8",
         "rollout.group_size=16", "optim.lr=1e-2", "algo.mini_batches=1", "algo.micro_batch_size=64",
         "rollout.engine=hf", "log.progress=false"]


@pytest.mark.slow
def test_grpo_raises_the_score_of_a_served_reward_model(tmp_path):
    from trainer.grpo import train
    from trainer.preferences import PreferencePair, write_pairs
    from trainer.reward_model import train as train_rm
    from trainer.rm_config import load_rm_config
    from verifier_service.config import ServerConfig
    from verifier_service.server import create_server

    prompts = [f"Question {i}: which number?\n" for i in range(16)]  # "steps": the problems ask for a PRM
    (tmp_path / "problems.jsonl").write_text(
        "".join(json.dumps(Problem(id=f"q{i}", prompt=p, gold="7", checks=("math", "steps")).to_dict()) + "\n" for i, p in enumerate(prompts)))
    write_pairs([PreferencePair(p, "7", wrong) for p in prompts for wrong in "0134a Q"], tmp_path / "pairs.jsonl")
    rm = train_rm(load_rm_config(None, ["data.source=jsonl", f"data.path={tmp_path / 'pairs.jsonl'}",
                                        "data.eval_pairs=16", "steps=30", "batch_size=16", "optim.lr=3e-3",
                                        "eval.every=0", f"out_dir={tmp_path / 'rm'}"]))
    assert rm["eval_history"][-1]["eval_accuracy"] >= 0.9, rm["eval_history"]

    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1, sandbox="off",
                                              prm={"dir": rm["model_dir"], "device": "cpu"}))
    try:
        steps = 8
        train(load_config(ROOT / "configs/demo.yaml", SEVEN + [
            f"steps={steps}", f"out_dir={tmp_path / 'grpo'}", f"data.path={tmp_path / 'problems.jsonl'}",
            f"reward.address=127.0.0.1:{port}", "reward.math=0", "reward.steps=1",
            "reward.unjudged=penalize", "reward.penalty=0.0"]))   # an empty answer (EOS at once) has no step
    finally:
        server.stop(0)
    metrics = [json.loads(line) for line in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    for m in metrics:  # the reward is the served RM's (no math check ran); an empty answer has no step
        assert set(m["statuses"]) == {"steps"} and m["statuses"]["steps"].get("OK")
        assert set(m["statuses"]["steps"]) <= {"OK", "EMPTY"} and sum(m["statuses"]["steps"].values()) == 128
        assert 0.0 < m["reward_steps"] < 1.0  # the mean served score of the judged completions
    rewards = [m["reward_mean"] for m in metrics]
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.2, rewards
