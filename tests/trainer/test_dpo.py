"""DPO: the loss and label smoothing against hand-computed values, sequence log-probs by hand, the
reference's log-probs computed once, a tiny run that raises the chosen-vs-rejected margin, configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from trainer.dpo import dpo_loss, encode_pairs, sequence_logps
from trainer.dpo_config import DPOConfig, load_dpo_config
from trainer.preferences import PreferencePair
from trainer.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parents[2]
# seconds of DPO on synthetic pairs (reference solution vs corrupted chain) from the random tiny model:
# 32 training pairs seen 6 times each, 32 held-out pairs of other arithmetic
QUICK = ["data.min_steps=1", "data.max_steps=2", "data.max_value=30", "data.num_pairs=32", "data.eval_pairs=32",
         "data.prompt_style=bare", "batch_size=16", "micro_batch_size=8", "optim.lr=3e-3", "optim.warmup_steps=2",
         "beta=0.1", "eval.every=0"]


def test_dpo_loss_by_hand():
    """h = beta((pi_c - ref_c) - (pi_r - ref_r)) = 0.5 (0.5 + 0.5) = 0.5: loss -log sigmoid(0.5) = 0.474077;
    smoothed 0.1: 0.9 * 0.474077 + 0.1 * -log sigmoid(-0.5) (0.974077) = 0.524077."""
    args = (torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]))
    plain = dpo_loss(*args, beta=0.5)
    assert float(plain.loss[0]) == pytest.approx(0.474077, abs=1e-6)
    assert (float(plain.chosen_rewards[0]), float(plain.rejected_rewards[0])) == pytest.approx((0.25, -0.25))
    assert float(dpo_loss(*args, beta=0.5, label_smoothing=0.1).loss[0]) == pytest.approx(0.524077, abs=1e-6)
    # policy = reference: h = 0, loss log 2 whatever the smoothing
    same = dpo_loss(torch.tensor([-3.0]), torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-1.0]), 0.1, 0.2)
    assert float(same.loss[0]) == pytest.approx(math.log(2))


def test_dpo_loss_gradient_raises_chosen_and_lowers_rejected():
    pi_c, pi_r = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    dpo_loss(pi_c, pi_r, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1).loss.sum().backward()
    # d loss / d pi_c = -beta sigmoid(-h) = -beta/2 at h = 0; +beta/2 for the rejected
    assert float(pi_c.grad[0]) == pytest.approx(-0.05) and float(pi_r.grad[0]) == pytest.approx(0.05)


def test_sequence_logps_by_hand(tiny_dir):
    """log p(response + EOS | prompt) summed over the response tokens only; padding changes nothing."""
    from transformers import AutoModelForCausalLM
    tok = build_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    encoded, _ = encode_pairs([PreferencePair("ab", "cd", "c")], tok, 64)
    chosen, rejected = encoded[0]
    with torch.no_grad():
        logps = sequence_logps(model, [chosen, rejected], tok.pad_token_id, "cpu")
        full = chosen[0] + chosen[1]                                           # a b c d EOS
        logp = model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
        alone = sequence_logps(model, [rejected], tok.pad_token_id, "cpu")    # no padding when alone
    expected = sum(float(logp[t - 1, full[t]]) for t in (2, 3, 4))
    assert float(logps[0]) == pytest.approx(expected, rel=1e-5)
    assert float(logps[1]) == pytest.approx(float(alone[0]), rel=1e-5)


def test_long_pairs_are_dropped_and_counted():
    tok = build_tokenizer()
    pairs = [PreferencePair("p", "short", "x"), PreferencePair("p", "y" * 40, "x")]
    kept, dropped = encode_pairs(pairs, tok, max_length=20)
    assert (len(kept), dropped) == (1, 1)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("dpo_*.yaml")), ids=lambda p: p.name)
def test_shipped_dpo_config_loads(path):
    assert isinstance(load_dpo_config(path), DPOConfig)


@pytest.mark.parametrize("override,message", [("beta=0", "beta"), ("label_smoothing=0.5", "label_smoothing"),
                                              ("data.corruption_kinds=[typo]", "data.corruption_kinds"),
                                              ("betta=0.1", "betta")])
def test_bad_dpo_config_names_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_dpo_config(None, [override])


def test_dpo_raises_the_chosen_vs_rejected_margin(tmp_path):
    from trainer.dpo import train
    steps = 12
    result = train(load_dpo_config(None, QUICK + [f"steps={steps}", f"out_dir={tmp_path}"]))
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    start, end = result["eval_history"][0], result["eval_history"][-1]
    # the reference is the initial policy: at step 0 every implicit reward is 0 and the loss log 2
    assert start["eval_reward_margin"] == pytest.approx(0.0, abs=1e-4)
    assert start["eval_loss"] == pytest.approx(math.log(2), abs=1e-4)
    train_margins = [m["reward_margin"] for m in metrics[1:]]
    assert sum(train_margins[-3:]) / 3 > sum(train_margins[:3]) / 3 + 0.2, train_margins
    assert sum(m["reward_accuracy"] for m in metrics[-3:]) / 3 > 0.7, metrics[-3:]
    # held-out pairs (other arithmetic): the margin moved the right way too (measured: 0.42, loss 0.667)
    assert end["eval_reward_margin"] > 0.05 and end["eval_loss"] < math.log(2), end
    assert Path(result["model_dir"], "model.safetensors").exists()


def test_verirl_train_dpo_through_the_cli(tmp_path, capsys):
    from trainer.cli import main
    argv = ["dpo", "--config", str(ROOT / "configs/dpo_demo.yaml"), *QUICK, "steps=2", "data.num_pairs=8",
            "data.eval_pairs=4", f"out_dir={tmp_path}"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["step"] == 2 and Path(printed["model_dir"]).is_dir() and len(printed["eval_history"]) == 2
    assert main(["dpo", "--config", str(ROOT / "configs/dpo_demo.yaml"), "beta=-1"]) == 2   # a bad value: exit 2
