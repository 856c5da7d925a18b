"""ProcessBench-style files, PRM800K ratings and TRL records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks import (DatasetError, StepChain, from_trl, generate, load_prm800k, load_processbench, split_steps,
                   step_chains, to_eval_line, to_trl, write_processbench)

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def test_processbench_fixture():
    chains = load_processbench(FIX / "processbench_sample.jsonl")
    assert [c.first_error for c in chains] == [-1, 0, -1, 1]
    assert [c.id for c in chains] == ["pb-0", "pb-1", "pb-2", "pb-3"]
    assert chains[1].labels() == [False, False, False] and chains[3].labels() == [True, False, False]
    assert chains[0].metadata == {"generator": "handwritten", "final_answer_correct": True}


def test_processbench_round_trip(tmp_path):
    chains = load_processbench(FIX / "processbench_sample.jsonl")
    synthetic = step_chains(generate(20, seed=1), seed=1)
    assert write_processbench(chains + synthetic, tmp_path / "out.jsonl") == len(chains) + len(synthetic)
    back = load_processbench(tmp_path / "out.jsonl")
    assert [(c.id, c.problem, c.steps, c.first_error, c.gold) for c in back] == \
        [(c.id, c.problem, c.steps, c.first_error, c.gold) for c in chains + synthetic]
    assert all(b.metadata["final_answer_correct"] == c.correct for b, c in zip(back[4:], synthetic))


def test_eval_lines_load_as_processbench(tmp_path):
    chain = step_chains(generate(5, seed=3), seed=3, error_fraction=1.0)[0]
    line = to_eval_line(chain)
    assert line["kind"] == "steps" and line["label"] == chain.first_error and line["gold"] == chain.gold
    (tmp_path / "eval.jsonl").write_text(json.dumps(line) + "\n")
    (back,) = load_processbench(tmp_path / "eval.jsonl")
    assert (back.steps, back.first_error, back.gold, back.metadata) == (chain.steps, chain.first_error, chain.gold, {})


@pytest.mark.parametrize("row, message", [
    ({"problem": "?", "steps": ["a"]}, r"missing \['label'\]"),
    ({"problem": "?", "steps": "a", "label": -1}, "list of strings"),
    ({"problem": "?", "steps": ["a"], "label": 1}, "outside"),
])
def test_processbench_errors(tmp_path, row, message):
    (tmp_path / "bad.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_processbench(tmp_path / "bad.jsonl")


def test_split_steps():
    assert split_steps("a\n\nb\n\n\n\nc  \n") == ["a", "b", "c"]
    assert split_steps("a\nb", "\n") == ["a", "b"]


@pytest.mark.parametrize("neutral, first_labels", [(True, [True, True, True]), (False, [True, False, True]),
                                                   (0.5, [True, 0.5, True])])
def test_prm800k_neutral_mapping(neutral, first_labels):
    records = load_prm800k(FIX / "prm800k_sample.jsonl", neutral=neutral)
    assert records[0]["labels"] == first_labels
    assert records[3]["labels"] == first_labels  # the flat record has the same ratings


def test_prm800k_trajectories():
    records = load_prm800k(FIX / "prm800k_sample.jsonl")
    assert len(records) == 4 and records[0]["prompt"] == "What is 2 + 3 * 4?"
    # the chosen completion, then the labeling stops at the first bad-rated candidate
    assert records[1]["completions"] == ["Multiplication first: 3 * 4 = 12.", "So 2 + 12 = 15."]
    assert records[1]["labels"] == [True, False]
    # a human-written step counts as good
    assert records[2]["completions"][0] == "10 / 4 = 5/2." and records[2]["labels"] == [True, True]


def test_prm800k_bad_rating(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"problem": "?", "steps": ["a"], "ratings": [2]}) + "\n")
    with pytest.raises(DatasetError, match="rating 2"):
        load_prm800k(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("first_error", [-1, 0, 2])
def test_trl_round_trip(first_error):
    chain = StepChain(problem="?", steps=("a", "b", "c"), first_error=first_error)
    assert from_trl(to_trl(chain)) == chain
    assert from_trl({"prompt": "?", "completions": ["a", "b"], "labels": [0.9, 0.2]}).first_error == 1
