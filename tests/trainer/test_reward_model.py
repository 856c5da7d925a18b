"""Reward model: the Bradley-Terry loss by hand, inputs in the shared PRM format (the response as the
one step, the reward read at the tag's last token), a tiny run that reaches high held-out pairwise
accuracy on synthetic preferences, and the written directory served by a REAL verifier server
(`--prm`), whose scores equal the in-process ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tasks.prm_format import PRMFormat, render_ids
from trainer.preferences import PreferencePair
from trainer.reward_model import bradley_terry_loss, collate_rows, encode_pairs, rm_format
from trainer.rm_config import RMConfig, load_rm_config
from trainer.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parents[2]
# Synthetic preferences a random 2-layer model learns in ~80 steps: one-step problems whose rejected
# chain uses another operation than the problem's phrase ("gets 5 more" written as "12 - 5 = 7").
# Corruptions of the arithmetic itself need a pretrained backbone and longer runs (docs/trainer.md).
# Measured (2-core dev CPU, busy): held-out accuracy 0.52 -> 0.94 on 54 pairs, 74 s CPU: marked slow.
QUICK = ["data.min_steps=1", "data.max_steps=1", "data.max_value=50", "data.num_pairs=800", "data.eval_pairs=80",
         "data.corruption_kinds=[operation]", "data.prompt_style=bare", "batch_size=16", "micro_batch_size=16",
         "optim.lr=3e-3", "optim.warmup_steps=5", "optim.schedule=cosine", "eval.every=0", "steps=80"]


def test_bradley_terry_loss_by_hand():
    """-log sigmoid(c - r): (1, 0) -> log(1 + e^-1) = 0.313262; equal -> log 2; (0, 3) -> 3.048587."""
    loss = bradley_terry_loss(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 2.0, 3.0]))
    torch.testing.assert_close(loss, torch.tensor([0.313262, math.log(2), 3.048587]))
    huge = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0]))   # softplus form: no overflow
    assert float(huge[0]) == pytest.approx(200.0)


def test_inputs_follow_the_prm_format_with_the_response_as_one_step():
    tok = build_tokenizer()
    fmt = rm_format("", "\n\n", 64, tok)
    assert (fmt.kind, fmt.step_tag, fmt.default_aggregation) == ("token_classification", tok.eos_token, "last")
    pair = PreferencePair("Q: 2+2?\n", "2 + 2 = 4\n#### 4", "2 + 2 = 5\n#### 5")
    (chosen, rejected), = encode_pairs([pair], tok, fmt)[0]
    assert chosen == render_ids(tok, fmt, pair.prompt, [pair.chosen])[0]
    assert chosen[-1] == tok.eos_token_id and rejected[-1] == tok.eos_token_id      # the tag, scored
    assert tok.decode(chosen[:-1]) == pair.prompt + "\n\n" + pair.chosen
    ids, mask, last = collate_rows([chosen, rejected[:5]], pad_id=tok.pad_token_id)
    assert last.tolist() == [len(chosen) - 1, 4] and mask.sum(-1).tolist() == [len(chosen), 5]
    long_pair = PreferencePair("Q\n", "x" * 80, "y")
    assert encode_pairs([pair, long_pair], tok, fmt)[1] == 1                      # dropped, counted


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("rm_*.yaml")), ids=lambda p: p.name)
def test_shipped_rm_config_loads(path):
    assert isinstance(load_rm_config(path), RMConfig)


@pytest.mark.parametrize("override,message", [("data.source=csv", "data.source"), ("stepz=3", "stepz"),
                                              ("data.corruption_kinds=[typo]", "data.corruption_kinds"),
                                              ("data.source=jsonl", "data.path")])
def test_bad_rm_config_names_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_rm_config(None, [override])


@pytest.mark.slow
def test_reward_model_reaches_high_heldout_pairwise_accuracy(tmp_path):
    from trainer.reward_model import train
    out = tmp_path
    result = train(load_rm_config(None, QUICK + [f"out_dir={out}"]))
    history = result["eval_history"]
    assert history[0]["step"] == 0 and history[-1]["step"] == 80 and history[0]["eval_pairs"] >= 40
    start, end = history[0]["eval_accuracy"], history[-1]["eval_accuracy"]
    assert end >= 0.85 and end > start + 0.2, history
    assert history[-1]["eval_loss"] < history[0]["eval_loss"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(81))


@pytest.fixture(scope="module")
def briefly_trained(tmp_path_factory) -> dict:
    from trainer.reward_model import train
    out = tmp_path_factory.mktemp("rm")
    return train(load_rm_config(None, QUICK[:-1] + ["steps=3", "data.num_pairs=64", "data.eval_pairs=16",
                                                    f"out_dir={out}"]))


def test_written_directory_is_served_by_the_verifier_as_a_one_step_prm(briefly_trained):
    """`verirl serve --prm RM_DIR`'s server (create_server with the PRM config, port 0) scores a
    response as the one-step chain [response]: the same P(good) = sigmoid(r) as in-process."""
    from trainer.reward_model import RewardModelScorer
    from verifier_service.client import VerifierClient
    from verifier_service.config import ServerConfig
    from verifier_service.prm.config import PRMConfig
    from verifier_service.server import create_server
    model_dir = Path(briefly_trained["model_dir"])
    fmt = PRMFormat.load(model_dir)
    assert (fmt.kind, fmt.default_aggregation) == ("token_classification", "last")
    config = json.loads((model_dir / "config.json").read_text())
    assert len(config["id2label"]) == 1                                   # one label: sigmoid(r)
    from tasks.synthetic import SyntheticConfig, generate
    from trainer.preferences import synthetic_pairs
    problems = generate(6, split="heldout", seed=5, config=SyntheticConfig(min_steps=1, max_steps=1, max_value=30))
    pairs = synthetic_pairs(problems, seed=5, prompt_style="bare", kinds=["operation"])
    prompts = [p.prompt for p in pairs for _ in range(2)]
    responses = [r for p in pairs for r in (p.chosen, p.rejected)]
    local = RewardModelScorer(model_dir).scores(prompts, responses)
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1,
                                              prm=PRMConfig(dir=str(model_dir), device="cpu")))
    try:
        with VerifierClient(f"127.0.0.1:{port}") as client:
            served = client.score_steps([{"id": str(i), "problem": p, "steps": [r]}
                                         for i, (p, r) in enumerate(zip(prompts, responses))])
    finally:
        server.stop(0)
    assert all(x.judged and len(x.step_scores) == 1 for x in served), served[:2]
    assert [x.score for x in served] == pytest.approx(local, abs=1e-4)
    assert all(0.0 < s < 1.0 for s in local) and len(set(local)) > 1


@pytest.mark.parametrize("recipe", ["rm", "dpo", "ppo"])
def test_verirl_train_prints_the_resolved_config(recipe, capsys):
    from trainer.cli import main
    assert main([recipe, "--config", str(ROOT / f"configs/{recipe}_demo.yaml"), "seed=7", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 7
