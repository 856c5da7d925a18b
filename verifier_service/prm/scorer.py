"""PRMScorer: step scoring in the caller's process, for offline use and the benchmark.

    scorer = PRMScorer("path/to/prm")                      # verirl_prm.json, or overrides
    scorer.score("What is 2+3?", ["2+3=5", "So 5."])       # -> [p_step0, p_step1]
    scorer.score_many([(problem, steps), ...])             # length-sorted batches under a token budget
    scorer.score_candidates(problem, prefix_steps, ["step a", "step b"])

The same rendering (tasks.prm_format.render_ids), batching plan and forward pass as the server,
without the process boundary. Chains longer than the format's max_length raise ValueError.
"""

from __future__ import annotations

from typing import Any, Sequence

from tasks.prm_format import render_spans

from .batching import plan_batches
from .config import PRMConfig, resolve_format
from .text import load_tokenizer, render_candidates

__all__ = ["PRMScorer"]


class PRMScorer:
    def __init__(self, directory: str, *, device: str = "auto", batch_tokens: int = 8192, **overrides: Any) -> None:
        from .model import PRMModel

        self.config = PRMConfig(dir=str(directory), device=device, batch_tokens=batch_tokens, **overrides)
        self.format = resolve_format(self.config)
        self.tokenizer = load_tokenizer(directory)
        self.model = PRMModel.load(str(directory), self.format, device, compile=self.config.compile)

    def render(self, problem: str, steps: Sequence[str]) -> tuple[list[int], list[int], list[tuple[int, int, int]]]:
        """(ids, tag positions, render_spans spans) of one chain."""
        ids, spans = render_spans(self.tokenizer, self.format, problem, steps)
        if len(ids) > self.format.max_length:
            raise ValueError(f"chain of {len(ids)} tokens exceeds max_length {self.format.max_length}")
        return ids, [tag for _, _, tag in spans], spans

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        """P(correct) of each step of one chain."""
        return self.score_many([(problem, steps)])[0]

    def score_many(self, chains: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """Step scores of many chains, in input order (batched by length under batch_tokens)."""
        rendered = [self.render(problem, steps) for problem, steps in chains]
        return self.score_rendered(rendered)

    def score_rendered(self, rendered: Sequence[tuple[list[int], list[int], list]]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in rendered]
        for batch in plan_batches([len(r[0]) for r in rendered], self.config.batch_tokens):
            scores = self.model.score_rows(*([rendered[i][part] for i in batch] for part in range(3)))
            for i, s in zip(batch, scores):
                out[i] = s
        return out

    def score_candidates(self, problem: str, prefix: Sequence[str], candidates: Sequence[str]) -> list[float]:
        """P(correct) of each candidate next step after `prefix` (the prefix is run once)."""
        c = render_candidates(self.tokenizer, self.format, problem, prefix, candidates)
        longest = len(c.prefix_ids) + max(len(s) for s in c.suffixes)
        if longest > self.format.max_length:
            raise ValueError(f"chain of {longest} tokens exceeds max_length {self.format.max_length}")
        return self.model.score_candidates(c.prefix_ids, c.suffixes, c.positions, c.spans, c.prefix_spans)
