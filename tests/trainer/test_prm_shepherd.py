"""Math-Shepherd step labels: chains sampled by the tiny policy through the rollout engine, rollouts from
every step prefix checked by a real verifier server (gRPC on port 0, through the client). The random tiny
policy reaches no gold, so the first test checks shapes, hard = (soft > 0) and determinism; the second
teaches the tiny model two problems' solutions by heart, so from each right prefix it reaches the gold
and every label of its (right) chains is 1, as the exact labels say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tasks.synthetic import SyntheticConfig, generate
from trainer.prm import math_shepherd_records
from trainer.prm_config import ShepherdConfig, load_prm_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def problems():
    return generate(2, split="train", seed=3, config=SyntheticConfig(min_steps=1, max_steps=2, max_value=30))


def _engine(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.rollout.hf_engine import HFEngine
    return HFEngine(AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir))


def test_labels_have_the_chain_shape_and_are_deterministic(tiny_dir, verifier_address, problems):
    from verifier_service.client import VerifierClient
    cfg = ShepherdConfig(policy=str(tiny_dir), chains_per_problem=2, rollouts=3, max_tokens=24)
    with VerifierClient(verifier_address) as client:
        records, counts = math_shepherd_records(_engine(tiny_dir), client, problems, cfg, seed=0)
        again, _ = math_shepherd_records(_engine(tiny_dir), client, problems, cfg, seed=0)
    assert records == again and records
    assert counts["shepherd_chains"] + counts["shepherd_empty_chains"] == 4
    assert counts["shepherd_records"] == len(records) == counts["shepherd_chains"] - counts["shepherd_unjudged_chains"]
    for r in records:
        n = len(r["completions"])
        assert n >= 1 and all(len(r[k]) == n for k in ("labels", "hard_labels", "soft_labels", "exact_labels"))
        assert r["hard_labels"] == [float(s > 0) for s in r["soft_labels"]] and r["labels"] == r["hard_labels"]
        assert all(s in (0.0, 1 / 3, 2 / 3, 1.0) for s in r["soft_labels"])  # shares of 3 rollouts
        assert r["prompt"] in [p.prompt for p in problems] and r["gold"] in [p.gold for p in problems]


@pytest.mark.slow
@pytest.mark.timeout(900)  # 240 s measured on the shared 2-core machine under load
def test_a_policy_that_knows_the_answers_labels_its_right_chains_right(tmp_path, tiny_dir, problems):
    """SFT the tiny model on the two problems until it writes their reference solutions, then label: the
    embedded server (no address) checks every rollout; all labels are 1, like the exact ones."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.prompts import format_prompt
    from tasks.synthetic import STEP_SEPARATOR, reference_steps
    from trainer.prm import load_records
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    rows = []
    for p in problems:
        prompt = tok(format_prompt(p, "bare"), add_special_tokens=False).input_ids
        target = tok(STEP_SEPARATOR.join(reference_steps(p)), add_special_tokens=False).input_ids + [tok.eos_token_id]
        rows.append((prompt, target))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = 0.0
        for prompt, target in rows:
            ids = torch.tensor([prompt + target])
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1]  # [len(target), V]
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(target))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy = tmp_path / "policy"
    model.save_pretrained(policy)
    tok.save_pretrained(policy)

    cfg = load_prm_config(ROOT / "configs/prm_demo.yaml", [
        "data.source=math_shepherd", f"shepherd.policy={policy}", "shepherd.num_problems=2",
        "shepherd.chains_per_problem=1", "shepherd.rollouts=2", "shepherd.temperature=0.3",
        "shepherd.max_tokens=40", "shepherd.labels=soft", "data.seed=3", "eval.examples=4", f"out_dir={tmp_path}",
        "data.min_steps=1", "data.max_steps=2", "data.max_value=30"])  # the `problems` fixture's difficulty
    records, heldout, counts = load_records(cfg, tmp_path)
    assert counts["shepherd_records"] == 2 and len(heldout) == 4
    for r in records:
        assert r["exact_labels"] == [1.0] * len(r["completions"]), r   # the policy wrote right chains
        assert r["hard_labels"] == r["soft_labels"] == r["labels"] == r["exact_labels"]
    assert [json.loads(line) for line in (tmp_path / "math_shepherd.jsonl").read_text().splitlines()] == records
