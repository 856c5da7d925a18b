"""Preference pairs: synthetic (reference over corrupted chain, exactly labelled), verified pairs from
judged groups (cap per prompt, distinct texts, unjudged unused, deterministic by seed), JSONL round
trip and field errors, and pairs from groups sampled by a real engine and judged by a REAL server."""

from __future__ import annotations

import json

import pytest
import torch

from tasks.synthetic import SyntheticConfig, check_steps, generate, split_solution
from trainer.preferences import (PreferencePair, load_pairs, pairs_from_verdicts, read_pairs, synthetic_pairs,
                                 write_pairs)
from trainer.rm_config import PairDataConfig


def test_synthetic_pairs_are_reference_over_corrupted():
    problems = generate(20, seed=3, config=SyntheticConfig(min_steps=2, max_steps=3))
    pairs = synthetic_pairs(problems, seed=3, prompt_style="bare")
    assert len(pairs) == 20 and pairs == synthetic_pairs(problems, seed=3, prompt_style="bare")
    for p, pair in zip(problems, pairs):
        assert pair.prompt == p.prompt + "\n"                                  # bare style
        assert all(check_steps(p, split_solution(pair.chosen)))
        assert not all(check_steps(p, split_solution(pair.rejected)))
        assert pair.chosen.split("\n")[-1] == f"#### {p.gold}" != pair.rejected.split("\n")[-1]
    assert synthetic_pairs(problems, seed=4, prompt_style="bare") != pairs   # the seed picks the corruptions


def test_synthetic_pairs_of_one_kind():
    problems = generate(30, seed=0, config=SyntheticConfig(min_steps=1, max_steps=1, max_value=30))
    pairs = synthetic_pairs(problems, kinds=["answer"])
    for pair in pairs:   # only the answer line differs
        assert pair.chosen.split("\n")[0] == pair.rejected.split("\n")[0] and pair.chosen != pair.rejected


def test_pairs_from_verdicts_cap_distinct_unjudged_and_seed():
    prompts = ["p1", "p2", "p3", "p4"]
    texts = [["a", "a", "b", "c", "d"], ["x", "y"], ["u", "v"], ["m", "n", "o"]]
    verdicts = [[True, True, False, False, None], [True, True], [False, None], [True, False, None]]
    pairs, stats = pairs_from_verdicts(prompts, texts, verdicts, max_pairs_per_prompt=5, seed=0)
    # p1: distinct correct {a} x incorrect {b, c} (d unjudged, the second "a" a duplicate); p4: (m, n)
    expected = [("p1", "a", "b"), ("p1", "a", "c"), ("p4", "m", "n")]
    assert sorted((p.prompt, p.chosen, p.rejected) for p in pairs) == expected
    assert (stats.prompts, stats.pairs, stats.prompts_without_pair, stats.unjudged) == (4, 3, 2, 3)
    capped, _ = pairs_from_verdicts(prompts, texts, verdicts, max_pairs_per_prompt=1, seed=0)
    assert [p.prompt for p in capped] == ["p1", "p4"]


def test_pairs_from_verdicts_draw_is_seeded():
    texts = [[f"good{i}" for i in range(6)] + [f"bad{i}" for i in range(6)]]
    verdicts = [[True] * 6 + [False] * 6]
    draws = {seed: pairs_from_verdicts(["p"], texts, verdicts, max_pairs_per_prompt=4, seed=seed)[0]
             for seed in range(4)}
    assert draws[0] == pairs_from_verdicts(["p"], texts, verdicts, max_pairs_per_prompt=4, seed=0)[0]
    assert len({tuple(v) for v in draws.values()}) > 1                     # other seeds, other pairs
    assert all(len(v) == 4 and len(set(v)) == 4 for v in draws.values())   # distinct pairs, at the cap
    with pytest.raises(ValueError, match="max_pairs_per_prompt"):
        pairs_from_verdicts(["p"], texts, verdicts, max_pairs_per_prompt=0)


def test_jsonl_round_trip_and_field_errors(tmp_path):
    pairs = [PreferencePair("q1", "good", "bad"), PreferencePair("q2", "ok", "not ok")]
    assert write_pairs(pairs, tmp_path / "pairs.jsonl") == 2
    assert read_pairs(tmp_path / "pairs.jsonl") == pairs
    for record, field in [({"prompt": "q", "chosen": "a"}, "rejected"),
                          ({"prompt": "q", "chosen": 3, "rejected": "b"}, "chosen"),
                          ({"prompt": "q", "chosen": "a", "rejected": "b", "score": 1}, "score")]:
        (tmp_path / "bad.jsonl").write_text(json.dumps(record) + "\n")
        with pytest.raises(ValueError, match=field):
            read_pairs(tmp_path / "bad.jsonl")


def test_load_pairs_holds_out_part_of_a_file(tmp_path):
    write_pairs([PreferencePair(f"q{i}", "a", "b") for i in range(10)], tmp_path / "p.jsonl")
    d = PairDataConfig(source="jsonl", path=str(tmp_path / "p.jsonl"), eval_pairs=3)
    train, held = load_pairs(d, None)
    assert len(train) == 7 and len(held) == 3 and not {p.prompt for p in train} & {p.prompt for p in held}
    with pytest.raises(ValueError, match="eval_pairs"):
        load_pairs(PairDataConfig(source="jsonl", path=str(tmp_path / "p.jsonl"), eval_pairs=10), None)


def _two_answer_model(tiny_dir, prompts):
    """The tiny model after a few steps of SFT on answers "7" and "3" to the same prompts: it then samples
    each about half the time, so a group holds right and wrong answers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.sft import Example, collate, completion_nll, tokenize
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    rows = [[tokenize(Example(p, answer), tok)] for p in prompts for answer in ("7", "3")]
    batch = collate(rows, tok.pad_token_id)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(40):
        optimizer.zero_grad()
        nll, n = completion_nll(model, batch)
        (nll / n).backward()
        optimizer.step()
    return model, tok


def test_verified_pairs_from_groups_judged_by_a_real_server(tiny_dir, verifier_address):
    from tasks.prompts import format_prompt
    from tasks.types import Problem
    from trainer.preferences import collect_verified_pairs
    from trainer.rewards import RewardSettings
    from trainer.rollout import SamplingConfig
    from trainer.rollout.hf_engine import HFEngine
    from verifier_service.client import VerifierClient
    problems = [Problem(id=f"q{i}", prompt=f"Question {i}: which number?", gold="7") for i in range(4)]
    prompts = [format_prompt(p, "bare") for p in problems]
    model, tok = _two_answer_model(tiny_dir, prompts)
    engine = HFEngine(model, tok)
    sampling = SamplingConfig(max_tokens=3, temperature=1.0, seed=11)
    with VerifierClient(verifier_address) as client:
        def run():
            return collect_verified_pairs(engine, client, problems, prompts, group_size=8, sampling=sampling,
                                          rewards=RewardSettings(math=1.0), max_pairs_per_prompt=2, seed=0)
        pairs, stats = run()
        again, _ = run()
    assert stats.prompts == 4 and stats.pairs == len(pairs) >= 2 and stats.unjudged == 0
    assert pairs == again                                                   # seeded sampling, seeded draw
    assert all("7" in p.chosen and p.rejected != p.chosen for p in pairs), pairs   # the server said which is right
    assert all(sum(q.prompt == p for q in pairs) <= 2 for p in prompts)      # the cap
