"""Text -> token ids for the PRM, without importing torch or transformers.

The server validates and tokenizes in its own process (a chain too long for the model is
refused before it is queued) and must not load torch there: the model lives in the PRM
process. A `tokenizer.json` (a Hugging Face fast tokenizer) is read with the `tokenizers`
library directly; `FastTokenizer` gives it the call interface that tasks.prm_format expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tasks.prm_format import PRMFormat, label_token_ids, render_ids, tokenize

__all__ = ["FastTokenizer", "load_tokenizer", "render_candidates", "check_labels", "PROBE"]

# A chain rendered both by the server (tokenizer.json) and, in the PRM process, by transformers'
# AutoTokenizer (what the trainer uses): different ids would mean scores read at the wrong places.
PROBE = ("What is 12 + 30? Answer in words.", ["12 + 30 = 42.", "So the answer is forty-two."])


class FastTokenizer:
    """`tok(text, add_special_tokens=False)["input_ids"]` over a tokenizers.Tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens).ids}


def load_tokenizer(directory: str | Path) -> FastTokenizer:
    from tokenizers import Tokenizer

    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{directory}: no tokenizer.json (the PRM needs a Hugging Face fast tokenizer)")
    return FastTokenizer(Tokenizer.from_file(str(path)))


def render_candidates(tok: Any, fmt: PRMFormat, problem: str, prefix: Sequence[str],
                      candidates: Sequence[str]) -> tuple[list[int], list[list[int]], list[int]]:
    """(prefix_ids, suffix_ids per candidate, tag position of each candidate within its suffix).

    prefix_ids + suffix_ids[k] is exactly render_ids(problem, prefix + [candidates[k]]): rendering is
    segment by segment, so the prefix's ids do not depend on what follows."""
    prefix_ids, _ = render_ids(tok, fmt, problem, prefix)
    tag = tokenize(tok, fmt.step_tag)
    suffixes = [tokenize(tok, fmt.step_separator + c) + tag for c in candidates]
    return prefix_ids, suffixes, [len(s) - 1 for s in suffixes]


def check_labels(tok: Any, fmt: PRMFormat) -> None:
    """Raise ValueError if a causal_lm PRM's label tokens are not single tokens."""
    if fmt.kind == "causal_lm":
        label_token_ids(tok, fmt)
