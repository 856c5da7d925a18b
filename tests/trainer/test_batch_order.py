"""trainer.grpo.batch_order: the data order every trainer draws from (resume depends on it)."""

import random

from trainer.grpo import batch_order


def _reference(n, seed, position, count):
    out = []
    for p in range(position, position + count):
        epoch, offset = divmod(p, n)
        order = list(range(n))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        out.append(order[offset])
    return out


def test_order_is_the_per_epoch_shuffle_across_epoch_boundaries():
    for n, seed, position, count in [(7, 0, 0, 20), (7, 3, 5, 9), (1000, 1, 990, 25), (1, 0, 0, 3)]:
        assert batch_order(n, seed, position, count) == _reference(n, seed, position, count)


def test_each_epoch_is_a_permutation_and_epochs_differ():
    first, second = batch_order(50, 0, 0, 50), batch_order(50, 0, 50, 50)
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second


def test_resuming_at_a_position_continues_the_same_stream():
    whole = batch_order(30, 2, 0, 90)
    assert batch_order(30, 2, 0, 45) + batch_order(30, 2, 45, 45) == whole
