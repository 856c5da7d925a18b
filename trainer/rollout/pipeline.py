"""Generation overlapped with scoring: the prompts go through the engine in chunks, and each chunk's
groups are scored (through the verifier service) in a background thread while the next chunk is
generated. vLLM's `LLM.generate` returns only when every request is done, so finished groups cannot be
scored one by one from the outside; chunking gives the same overlap at the cost of smaller generation
batches (with `chunks` 1 nothing overlaps and the batch is whole).

    groups, scores, timing = generate_and_score(engine, prompts, n, sampling, score, chunks=2)

`score(first_group_index, groups) -> S` is called once per chunk, in order, in one worker thread (the
verifier client batches and parallelises inside a call). `timing` tells how much scoring was hidden:
`reward_busy` is the time the scoring calls took, `reward_wait` the time the caller still waited for
them after the last chunk was generated (what scoring added to the step).
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from trainer.rollout import Group, SamplingConfig

__all__ = ["PhaseTiming", "generate_and_score", "chunk_bounds"]

S = TypeVar("S")


@dataclass(frozen=True)
class PhaseTiming:
    generate: float      # seconds in engine.generate, all chunks
    reward_busy: float   # seconds the scoring calls ran (partly hidden behind generation)
    reward_wait: float   # seconds waited for scoring after the last chunk was generated
    chunks: int

    @property
    def overlap_fraction(self) -> float:
        """Share of the scoring time hidden behind generation (0 with one chunk)."""
        return 1.0 - self.reward_wait / self.reward_busy if self.reward_busy > 0 else 0.0


def chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """`chunks` nearly equal consecutive [start, end) ranges of n items (fewer when n < chunks)."""
    k = max(1, min(chunks, n))
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def generate_and_score(engine: Any, prompts: Sequence[str], n: int, sampling: SamplingConfig,
                       score: Callable[[int, list[Group]], S], chunks: int = 1) -> tuple[list[Group], list[S], PhaseTiming]:
    groups: list[Group] = []
    futures: list[Future] = []
    generate_s = 0.0

    def timed(start: int, part: list[Group]) -> tuple[S, float]:
        t = time.monotonic()
        return score(start, part), time.monotonic() - t

    with ThreadPoolExecutor(1) as pool:
        for i, (lo, hi) in enumerate(chunk_bounds(len(prompts), chunks)):
            t = time.monotonic()
            # a distinct seed per chunk: the hf engine reseeds per call, equal seeds would repeat samples
            seeded = sampling if sampling.seed is None else dataclasses.replace(sampling, seed=sampling.seed + i)
            part = engine.generate(list(prompts[lo:hi]), n, seeded)
            generate_s += time.monotonic() - t
            futures.append(pool.submit(timed, len(groups), part))
            groups.extend(part)
        t = time.monotonic()
        done = [f.result() for f in futures]
        wait = time.monotonic() - t
    return groups, [s for s, _ in done], PhaseTiming(generate_s, sum(b for _, b in done), wait, len(futures))
