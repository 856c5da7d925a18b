"""Text -> token ids for the PRM, without importing torch or transformers.

The server validates and tokenizes in its own process (a chain too long for the model is
refused before it is queued) and must not load torch there: the model lives in the PRM
process. A `tokenizer.json` (a Hugging Face fast tokenizer) is read with the `tokenizers`
library directly; `FastTokenizer` gives it the call interface that tasks.prm_format expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tasks.prm_format import PRMFormat, label_token_ids, render_spans

__all__ = ["FastTokenizer", "load_tokenizer", "render_candidates", "Candidates", "check_labels", "PROBE"]

# A chain rendered both by the server (tokenizer.json) and, in the PRM process, by transformers'
# AutoTokenizer (what the trainer uses): different ids would mean scores read at the wrong places.
PROBE = ("What is 12 + 30? Answer in words.", ["12 + 30 = 42.", "So the answer is forty-two."])


class FastTokenizer:
    """`tok(text, add_special_tokens=False)["input_ids"]` over a tokenizers.Tokenizer; a list of texts
    gives a list of id lists, in one `encode_batch` call, which runs without the GIL (a 200-step chain is
    tens of ms of tokenizing, and the server's other handler threads need the GIL meanwhile)."""

    is_fast = True  # takes a list of texts, as a transformers fast tokenizer does (tasks.prm_format.tokenize_many)

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = False) -> dict[str, Any]:
        if isinstance(text, (list, tuple)):
            return {"input_ids": [e.ids for e in self._tok.encode_batch(list(text),
                                                                         add_special_tokens=add_special_tokens)]}
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens).ids}


def load_tokenizer(directory: str | Path) -> FastTokenizer:
    from tokenizers import Tokenizer

    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"{directory}: no tokenizer.json (the PRM needs a Hugging Face fast tokenizer)")
    return FastTokenizer(Tokenizer.from_file(str(path)))


@dataclass(frozen=True)
class Candidates:
    """K candidate next steps of one prefix, as token ids.

    prefix_ids + suffixes[k] is exactly render_ids(problem, prefix + [candidates[k]]): rendering is
    segment by segment, so the prefix's ids do not depend on what follows."""

    prefix_ids: list[int]
    suffixes: list[list[int]]                  # separator + candidate + tag, per candidate
    positions: list[int]                       # the tag position of each candidate within its suffix
    spans: list[tuple[int, int, int]]          # render_spans of each candidate within its suffix
    prefix_spans: list[tuple[int, int, int]]   # render_spans of the prefix steps


def render_candidates(tok: Any, fmt: PRMFormat, problem: str, prefix: Sequence[str],
                      candidates: Sequence[str]) -> Candidates:
    prefix_ids, prefix_spans = render_spans(tok, fmt, problem, prefix)
    suffixes, spans = [], []
    for c in candidates:  # a suffix is the chain of one step after an empty problem
        ids, [span] = render_spans(tok, fmt, "", [c])
        suffixes.append(ids)
        spans.append(span)
    return Candidates(prefix_ids, suffixes, [tag for _, _, tag in spans], spans, prefix_spans)


def check_labels(tok: Any, fmt: PRMFormat) -> None:
    """Raise ValueError if a causal_lm PRM's label tokens are not single tokens."""
    if fmt.kind == "causal_lm":
        label_token_ids(tok, fmt)
