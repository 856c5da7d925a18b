"""Grouping chains into forward passes under a token budget.

Rows of one pass are padded to its longest row, so a pass costs rows x longest tokens. Sorting
by length first puts chains of similar length together: the padding wasted is small, and the
budget bounds the activation memory of a pass. A row longer than the budget still runs, alone.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["plan_batches", "padded_tokens"]


def padded_tokens(lengths: Sequence[int]) -> int:
    return len(lengths) * max(lengths, default=0)


def plan_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices of `lengths` grouped into batches, each padded to at most `budget` tokens (a longer
    single row is its own batch); sorted by length, so every batch holds rows of similar length."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # ascending order: the row being added is the longest of the batch
        if current and (len(current) + 1) * lengths[i] > budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
