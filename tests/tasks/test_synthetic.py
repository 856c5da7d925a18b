"""The synthetic multi-step family: determinism, disjoint splits, exact step labels, difficulty knobs."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from tasks import (Chain, Problem, SyntheticConfig, chain_from_steps, chain_of, check_steps, corrupt,
                   first_error, generate, parse_step, prm_records, reference_chain, reference_steps, split_of,
                   split_solution, step_chains, to_trl)
from tasks import CORRUPTIONS, KINDS

CONFIGS = [
    SyntheticConfig(),
    SyntheticConfig(answer_style="boxed"),
    SyntheticConfig(ops=("+", "-", "*", "/"), min_steps=3, max_steps=5),
    SyntheticConfig(max_value=999, max_factor=12, min_steps=1, max_steps=2),
]


def test_deterministic_by_seed():
    a = [p.to_dict() for p in generate(40, seed=3)]
    assert a == [p.to_dict() for p in generate(40, seed=3)]
    assert a != [p.to_dict() for p in generate(40, seed=4)]
    assert a[:10] == [p.to_dict() for p in generate(10, seed=3)]  # a prefix does not depend on n


def test_splits_are_disjoint_by_arithmetic_whatever_the_seed():
    train = generate(3000, split="train", seed=0)
    heldout = generate(300, split="heldout", seed=1) + generate(300, split="heldout", seed=2)
    train_sigs = {p.metadata["signature"] for p in train}
    assert len(train_sigs) == len(train)  # distinct within a split
    assert not train_sigs & {p.metadata["signature"] for p in heldout}
    assert not {p.prompt for p in train} & {p.prompt for p in heldout}
    assert all(split_of(chain_of(p)) == p.metadata["split"] for p in train + heldout)
    assert len({p.id for p in train + heldout}) == len(train) + len(heldout)


def test_held_out_share_is_about_the_configured_fraction():
    rng = random.Random(0)
    chains = [Chain(rng.randint(2, 99), (("+", rng.randint(1, 50)), ("-", rng.randint(1, 50)))) for _ in range(4000)]
    share = sum(split_of(c, 0.1) == "heldout" for c in chains) / len(chains)
    assert 0.08 < share < 0.12


@pytest.mark.parametrize("cfg", CONFIGS, ids=range(len(CONFIGS)))
def test_every_reference_step_passes(cfg):
    for split in ("train", "heldout"):
        for p in generate(150, split=split, seed=5, config=cfg):
            steps = reference_steps(p)
            assert steps == p.metadata["steps"] and p.metadata["solution"] == "\n".join(steps)
            assert check_steps(p, steps) == [True] * len(steps)
            assert split_solution(p.metadata["solution"]) == steps
            assert p.gold == str(chain_of(p).answer) and p.checks == ("math", "steps")


@pytest.mark.parametrize("cfg", CONFIGS, ids=range(len(CONFIGS)))
def test_corrupted_chains_fail_exactly_at_the_labelled_step(cfg):
    rng = random.Random(1)
    counted = 0
    for p in generate(60, seed=7, config=cfg):
        ref, n = reference_steps(p), len(chain_of(p).ops)
        for kind in KINDS:
            for k in ([n] if kind == "answer" else range(n)):
                try:
                    c = corrupt(p, k, kind, rng)
                except ValueError:  # no exact downstream for this draw (divisors); allowed, rare
                    continue
                counted += 1
                verdicts = check_steps(p, c.steps)
                assert first_error(verdicts) == k == c.first_error, (p.prompt, c.steps)
                assert verdicts == c.labels()  # downstream steps carry the error, so they are wrong too
                assert list(c.steps[:k]) == ref[:k] and len(c.steps) == len(ref)
                assert c.metadata["kind"] == kind and c.metadata["final_answer_correct"] is False
    assert counted > 60 * 4


def test_corruptions_are_of_the_named_kind():
    rng = random.Random(0)
    cfg = SyntheticConfig(min_steps=3, max_steps=3)
    made = dict.fromkeys(CORRUPTIONS, 0)
    for p in generate(30, seed=11, config=cfg):
        (start, second), (op, b) = chain_of(p).values[:2], chain_of(p).ops[0]
        for kind, check in [
            ("result", lambda a, o, bb, c: (a, o, bb) == (start, op, b) and c != second),
            ("carry", lambda a, o, bb, c: a != start and (o, bb) == (op, b)),
            ("operand", lambda a, o, bb, c: bb != b and (a, o) == (start, op)),
            ("operation", lambda a, o, bb, c: o != op and o in cfg.ops and (a, bb) == (start, b)),
        ]:
            try:
                step = corrupt(p, 0, kind, rng).steps[0]
            except ValueError:  # e.g. 30 - 60: another operation would go below 1
                continue
            a, o, bb, c = parse_step(step)
            assert check(a, o, bb, c) and 1 <= min(a, c) and max(a, c) <= cfg.max_value, (kind, step)
            made[kind] += 1
    assert min(made.values()) >= 10, made
    p = generate(1, seed=11, config=cfg)[0]
    with pytest.raises(ValueError):
        corrupt(p, 3, "result", rng)
    with pytest.raises(ValueError):
        corrupt(p, 1, "answer", rng)
    assert set(CORRUPTIONS) | {"answer"} == set(KINDS)


def test_corrupted_values_stay_in_range():
    cfg = SyntheticConfig(ops=("+", "-"))
    for c in step_chains(generate(300, seed=4, config=cfg), seed=4, error_fraction=1.0):
        for step in c.steps[:-1]:
            a, o, b, r = parse_step(step)
            assert o in cfg.ops and all(1 <= x <= cfg.max_value for x in (a, b, r)), c.steps


def test_step_chains_mix_and_prm_records():
    problems = generate(400, seed=2)
    chains = step_chains(problems, seed=0, error_fraction=0.5)
    assert [c.steps for c in chains] == [c.steps for c in step_chains(problems, seed=0)]
    wrong = sum(not c.correct for c in chains)
    assert 150 < wrong < 250
    assert {c.metadata["kind"] for c in chains} == {"correct", *KINDS}
    for p, c in zip(problems, chains):
        assert check_steps(p, c.steps) == c.labels()
        rec = to_trl(c)
        assert rec == {"prompt": p.prompt, "completions": list(c.steps), "labels": c.labels()}
    assert all(c.correct for c in step_chains(problems[:50], error_fraction=0.0))
    assert prm_records(problems, seed=0) == [to_trl(c) for c in chains]


@pytest.mark.parametrize("step, ok", [
    ("12 + 7 = 19", True),
    ("7 + 12 = 19", True),            # + commutes
    ("12+7=19", True),
    ("x = 12 + 7 = 19", True),
    ("Ann has 12 + 7 = 19 apples.", True),
    ("  12 + 7 = 19  ", True),
    ("12 + 7 = 20", False),           # wrong result
    ("11 + 7 = 18", False),           # wrong carried value
    ("12 + 8 = 20", False),           # wrong operand
    ("12 * 7 = 84", False),           # wrong operation
    ("12 + 7", False),                # no result
    ("19", False),
    ("", False),
    ("so it is nineteen", False),
    ("12 + 7 = 19 = 19", False),      # a second number
    ("12 + 7 = 19, 19 * 2 = 38", False),
])
def test_first_step_table(step, ok):
    chain = Chain(12, (("+", 7), ("*", 2)))  # 12 + 7 = 19, 19 * 2 = 38
    assert check_steps(chain, [step])[0] is ok


@pytest.mark.parametrize("steps, verdicts", [
    (["12 + 7 = 19", "19 * 2 = 38", "#### 38"], [True, True, True]),
    (["12 + 7 = 19", "2 x 19 = 38", "\\boxed{38}"], [True, True, True]),   # "x", commuted, boxed
    (["12 + 7 = 19", "19 × 2 = 38", "The answer: #### 38"], [True, True, True]),
    (["12 + 7 = 19", "19 * 2 = 38", "The answer is 38"], [True, True, False]),  # no answer marker
    (["12 + 7 = 19", "19 * 2 = 38", "#### 39"], [True, True, False]),
    (["12 + 7 = 19", "#### 38"], [True, False]),                          # a skipped step
    (["12 + 7 = 19", "19 * 2 = 38", "#### 38", "#### 38"], [True, True, True, False]),  # extra step
    (["12 + 7 = 20", "19 * 2 = 38", "#### 38"], [False, True, True]),     # verdicts are per step
    (["12 + 7 = 20", "20 * 2 = 40", "#### 40"], [False, False, False]),
    (["12 + 7 = 19"], [True]),                                            # cut short: no wrong step
])
def test_chain_table(steps, verdicts):
    assert check_steps(Chain(12, (("+", 7), ("*", 2))), steps) == verdicts


def test_model_written_chain_and_json_round_trip():
    p = generate(1, seed=9)[0]
    q = Problem.from_dict(json.loads(json.dumps(p.to_dict())))
    text = "\n".join(reference_steps(q)) + "\n"
    assert chain_from_steps(q, split_solution(text)).first_error == -1
    broken = reference_steps(q)
    broken[1] = "1 + 1 = 2"
    assert chain_from_steps(q, broken).first_error == 1
    assert reference_chain(q).labels() == [True] * len(broken)
    with pytest.raises(ValueError, match="not from the synthetic family"):
        chain_of(Problem(id="x", prompt="?", gold="1"))


def test_difficulty_knobs():
    small = generate(300, seed=0)
    assert {len(chain_of(p).ops) for p in small} == {2, 3}
    assert max(v for p in small for v in chain_of(p).values) <= 99
    long = generate(300, seed=0, config=SyntheticConfig(min_steps=5, max_steps=6))
    assert {len(chain_of(p).ops) for p in long} == {5, 6}
    big = generate(300, seed=0, config=SyntheticConfig(max_value=9999))
    assert max(v for p in big for v in chain_of(p).values) <= 9999
    assert statistics.mean(chain_of(p).answer for p in big) > 10 * statistics.mean(chain_of(p).answer for p in small)
    adds = generate(100, seed=0, config=SyntheticConfig(ops=("+",)))
    assert {op for p in adds for op, _ in chain_of(p).ops} == {"+"}
    mean = statistics.mean
    assert mean(len(p.metadata["solution"]) for p in long) > 1.5 * mean(len(p.metadata["solution"]) for p in small)


def test_default_text_is_compact():
    problems = generate(500, seed=0)
    assert statistics.mean(len(p.prompt) for p in problems) < 110
    assert statistics.mean(len(p.metadata["solution"]) for p in problems) < 50
    assert set("".join(p.prompt + p.metadata["solution"] for p in problems)) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .?+-*/=#\n")


@pytest.mark.parametrize("kwargs", [
    {"min_steps": 0}, {"min_steps": 3, "max_steps": 2}, {"max_value": 2}, {"ops": ("^",)}, {"ops": ()},
    {"answer_style": "latex"}, {"heldout_fraction": 0.0},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        SyntheticConfig(**kwargs)


def test_too_small_a_space_is_an_error_not_a_hang():
    cfg = SyntheticConfig(max_value=3, min_steps=1, max_steps=1, ops=("+",))
    with pytest.raises(ValueError, match="too few"):
        generate(50, config=cfg)
    with pytest.raises(ValueError, match="split"):
        generate(1, split="test")
