"""Chain summaries on hand-made scores: ProcessBench metrics, pass@k, majority / best-of-N curves."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from verifier_service.chain_metrics import (ChainRecord, curve_sizes, curves, f1_by_threshold, labelled_step_scores,
                                            pass_at_k, predicted_first_error, processbench, summarize)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (the first c correct) that hold a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_is_the_subset_average(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_edges_and_large_n():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 10, 1) == 1.0 and pass_at_k(10, 6, 5) == 1.0
    # no big-integer binomials: n = 10^4 stays finite and matches the closed form
    assert pass_at_k(10_000, 10, 100) == pytest.approx(1 - math.comb(9_990, 100) / math.comb(10_000, 100))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)


@pytest.mark.parametrize("largest, sizes", [(1, (1,)), (2, (1, 2)), (4, (1, 2, 4)), (6, (1, 2, 4, 6)),
                                            (8, (1, 2, 4, 8)), (0, ())])
def test_curve_sizes(largest, sizes):
    assert curve_sizes(largest) == sizes


def R(i, **kw) -> ChainRecord:
    return ChainRecord(id=str(i), **kw)


def test_processbench_table():
    records = [
        R(0, label=-1, first_error=-1), R(1, label=-1, first_error=2),           # correct chains: 1 of 2 hit
        R(2, label=1, first_error=1), R(3, label=1, first_error=0),              # erroneous: exact index only
        R(4, label=2, first_error=-1), R(5, label=0, first_error=0),             # 2 of 4 hit
        R(6, label=0, first_error=None),                                         # not judged: not counted
        R(7, first_error=1),                                                     # no label: not counted
    ]
    pb = processbench(records)
    assert (pb.erroneous, pb.correct) == (4, 2)
    assert (pb.erroneous_accuracy, pb.correct_accuracy) == (0.5, 0.5) and pb.f1 == pytest.approx(0.5)
    only_correct = processbench([R(0, label=-1, first_error=-1)])
    assert only_correct.erroneous_accuracy is None and only_correct.f1 is None and only_correct.correct_accuracy == 1
    assert processbench([R(0, first_error=1)]) is None
    assert processbench([R(0, label=1, first_error=0), R(1, label=-1, first_error=-1)]).f1 == 0.0


def test_threshold_sweep_and_step_score_split():
    records = [R(0, step_scores=(0.9, 0.2, 0.1), label=1, first_error=1),
               R(1, step_scores=(0.8, 0.7), label=-1, first_error=-1),
               R(2, step_scores=(0.6, 0.4), label=0, first_error=1)]
    assert predicted_first_error((0.9, 0.2, 0.1), 0.5) == 1 and predicted_first_error((0.9,), 0.5) == -1
    # t=0: no error is ever predicted; t=0.5: chain 2 is missed (0.6 >= 0.5); t=0.65: all three right
    assert f1_by_threshold(records, [0.0, 0.5, 0.65]) == [0.0, pytest.approx(2 * 0.5 / 1.5), 1.0]
    good, bad = labelled_step_scores(records)
    assert sorted(good) == [0.7, 0.8, 0.9] and sorted(bad) == [0.2, 0.6]  # steps after an error: no label


def group_a():
    # answers: "5" right (0.9); "7" wrong three times (0.6, 0.1, 0.1): majority is fooled, the PRM is not
    return [R("a1", group="a", answer="5", correct=True, aggregate=0.9),
            R("a2", group="a", answer="7", correct=False, aggregate=0.6),
            R("a3", group="a", answer="7", correct=False, aggregate=0.1),
            R("a4", group="a", answer="7", correct=False, aggregate=0.1)]


def test_curves_exact_on_a_hand_group():
    c, left_out = curves(group_a())
    assert c.sizes == (1, 2, 4) and c.groups == (1, 1, 1) and left_out == {}
    assert c.majority == (0.25, 0.5, 0.0)  # N=2: the three ties with a1 go to a1 (first in file order)
    assert c.best_of_n == (0.25, 0.5, 1.0)
    assert c.weighted_best_of_n == (0.25, 0.5, 1.0)  # N=4: "5" weighs 0.9 > "7" 0.8
    assert c.pass_at_k == (0.25, 0.5, 1.0)


def test_curves_votes_need_answers_and_ties_go_first():
    group = [R("b1", group="b", answer=None, correct=True, aggregate=0.9),   # nothing extracted: no vote
             R("b2", group="b", answer="3", correct=False, aggregate=0.5),
             R("b3", group="b", answer="4", correct=True, aggregate=0.5)]
    c, _ = curves(group)
    assert c.sizes == (1, 2, 3)
    assert c.majority[2] == 0.0 and c.weighted_best_of_n[2] == 0.0  # b2 and b3 tie; b2 is first
    assert c.best_of_n[2] == 1.0  # b1 is still the PRM's pick
    assert c.majority[0] == pytest.approx(1 / 3)  # alone, b1 votes for nothing: wrong


def test_curves_average_over_groups_of_different_sizes_and_leave_out_unusable():
    records = group_a() + [R("c1", group="c", answer="1", correct=True, aggregate=0.2),
                           R("c2", group="c", answer="2", correct=False, aggregate=0.3),
                           R("c3", group="c", answer="2", correct=None, aggregate=0.3),   # no gold
                           R("x", answer="1", correct=True, aggregate=0.5)]               # no group
    c, left_out = curves(records)
    assert left_out == {"no checked final answer": 1}
    assert c.sizes == (1, 2, 4) and c.groups == (2, 2, 1) and c.prm_groups == (2, 2, 1)
    assert c.best_of_n[0] == pytest.approx((0.25 + 0.5) / 2)
    assert c.best_of_n[1] == pytest.approx((0.5 + 0.0) / 2)  # group c's pair: c2 (0.3) beats c1
    assert c.pass_at_k[2] == 1.0


def test_without_prm_scores_majority_and_pass_at_k_remain():
    records = group_a() + [R("d1", group="d", answer="2", correct=True),          # the PRM scored nothing of d
                           R("d2", group="d", answer="2", correct=True),
                           R("d3", group="d", answer="3", correct=False)]
    c, left_out = curves(records)
    assert left_out == {"PRM curves only: not scored by the PRM": 3}
    assert c.sizes == (1, 2, 4) and c.groups == (2, 2, 1) and c.prm_groups == (1, 1, 1)
    assert c.majority[0] == pytest.approx((0.25 + 2 / 3) / 2) and c.majority[1] == pytest.approx((0.5 + 1) / 2)
    assert c.best_of_n == (0.25, 0.5, 1.0)  # group a alone
    only_d, _ = curves(records[4:])
    assert only_d.sizes == (1, 2, 3) and only_d.prm_groups == (0, 0, 0)
    assert only_d.best_of_n == (None,) * 3 and only_d.weighted_best_of_n == (None,) * 3
    assert only_d.pass_at_k == (pytest.approx(2 / 3), 1.0, 1.0)
    assert "   n/a       n/a" in summarize(records[4:]).format()


def test_sampled_votes_approach_the_exact_average_and_best_of_n_is_exact():
    rng = random.Random(1)
    n = 14  # C(14, 7) = 3432 subsets: sampled with the default draws, enumerated with draws=4000
    members = [R(i, group="g", answer=str(rng.randrange(4)), aggregate=round(rng.random(), 1)) for i in range(n)]
    members = [ChainRecord(**{**m.__dict__, "correct": m.answer == "0"}) for m in members]  # answer "0" is right
    sampled, _ = curves(members, seed=3)
    exact, _ = curves(members, draws=4000)
    assert "random subsets (seed 3)" in sampled.subsets
    at = sampled.sizes.index(8)
    assert sampled.majority[at] == pytest.approx(exact.majority[at], abs=0.08)
    assert sampled.weighted_best_of_n[at] == pytest.approx(exact.weighted_best_of_n[at], abs=0.08)
    assert sampled.best_of_n == exact.best_of_n  # closed form either way (ties in the scores included)
    # the closed form against brute force over every subset, ties going to the first in file order
    brute = []
    for k in exact.sizes:
        picks = [max(s, key=lambda m: (m.aggregate, -int(m.id))).correct
                 for s in itertools.combinations(members, k)]
        brute.append(sum(picks) / len(picks))
    assert exact.best_of_n == pytest.approx(tuple(brute), abs=1e-12)
    assert curves(members, seed=3)[0] == sampled  # seeded: the same numbers every run


def test_summary_and_format():
    records = group_a() + [R("p", step_scores=(0.9, 0.1), aggregate=0.1, first_error=1, label=1),
                           R("q", step_scores=(0.9,), label=-1)]  # q: not scored
    s = summarize(records)
    assert (s.chains, s.judged, s.labelled, s.answers_checked) == (6, 5, 2, 4)
    assert s.answer_accuracy == 0.25 and s.processbench.erroneous_accuracy == 1.0
    text = s.format()
    assert "ProcessBench: erroneous acc 1.0000 (1 chains)" in text and "correct acc n/a" in text
    assert "    4      1    0.0000     1.0000    1.0000  1.0000" in text
    assert s.to_dict()["curves"]["sizes"] == (1, 2, 4)
