"""How a process reward model (PRM) reads a chain of steps: the shared input format.

One contract for the three places that touch a PRM: the trainer that writes one, the verifier service
that serves it, and the evaluation that scores it. A PRM model directory is a Hugging Face directory
(config, weights, tokenizer) plus `verirl_prm.json` holding a `PRMFormat`:

    {"kind": "token_classification" | "causal_lm" | "step_likelihood", "step_tag": "<string>",
     "step_separator": "\\n\\n",
     "good_token": "+", "bad_token": "-", "correct_label": 1, "default_aggregation": "min",
     "max_length": 4096}

`render_ids` turns (problem, steps) into token ids and the positions where step scores are read:

    ids = tok(problem) + sum over steps j of [tok(separator + step_j) + tok(step_tag)]

each piece tokenized on its own, without special tokens. The score of step j is read at the LAST token
of step j's tag; `render_spans` also gives each step's own tokens (after its separator, before its tag).
Why segment by segment: tokenizing the joined text lets a BPE merge a tag with its
neighbours, so the tag's position would depend on the text around it; piecewise tokenization puts the
tags at the same places in training and in serving, by construction.

Reading P(correct) at a tag position (done by the consumers, which own torch):
  token_classification, 2 labels  ->  softmax(logits)[correct_label]
  token_classification, 1 label   ->  sigmoid(logit)            (also a Bradley-Terry reward model:
                                                                 one "step" = the response)
  causal_lm                       ->  softmax(logit[good_id], logit[bad_id])[0]   (Math-Shepherd)
  step_likelihood                 ->  sigmoid(w . features_j + b), features_j = `likelihood_features`:
                                      statistics of the causal LM's negative log-likelihoods of step j's
                                      own tokens and of its tag, and their running maxima over steps <= j;
                                      (w, b) is the head, `HEAD_FILE` next to FORMAT_FILE

This module imports nothing of the project and no torch at import time; the tokenizer is any callable
with the Hugging Face `tokenizer(text, add_special_tokens=False)["input_ids"]` interface.
`likelihood_features` is part of the contract (a step_likelihood head's weights mean nothing without it),
so it lives here, shared by the trainer and the service; it imports torch when called (its argument is a
torch tensor).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["PRMFormat", "FORMAT_FILE", "HEAD_FILE", "KINDS", "AGGREGATIONS", "STEP_FEATURES", "render_ids",
           "render_spans", "likelihood_features", "load_head", "save_head", "label_token_ids", "tokenize",
           "tokenize_many"]

FORMAT_FILE = "verirl_prm.json"
HEAD_FILE = "verirl_prm_head.json"  # the step_likelihood head: {"features": [...], "weight": [...], "bias": b}
KINDS = ("token_classification", "causal_lm", "step_likelihood")
# The step_likelihood features of step j, in the head's order. NLLs in nats under the causal LM, each
# token's NLL read from the logits at the token before it. "own tokens": ids of the step's text after its
# separator, up to its tag; "tag": the tag's tokens (the LM's surprise that the step ends there).
# The running maxima make P(correct) a property of the whole prefix, as the prefix labels are: a step
# after the first error can be locally consistent with it (tasks/corruptions.py), yet it is labelled wrong.
STEP_FEATURES = ("max_nll", "mean_nll", "tag_nll", "prefix_max_nll", "prefix_mean_nll", "prefix_tag_nll")
AGGREGATIONS = ("min", "prod", "last", "mean")


@dataclass(frozen=True)
class PRMFormat:
    """What a PRM expects around the steps and where its answer is read.

    kind: "token_classification" (a per-token head), "causal_lm" (next-token good/bad probabilities) or
        "step_likelihood" (a causal LM's likelihoods of each step's tokens, read by a small head).
    step_tag: text appended after every step; the score is read at its last token.
    step_separator: text put before every step (also before the first, after the problem).
    good_token, bad_token: the label tokens of a causal_lm PRM (each must be one token).
    correct_label: the class index meaning "correct" of a 2-label token_classification PRM.
    default_aggregation: how step scores become one score when a request does not say.
    max_length: the longest rendered chain in tokens; a longer one is refused, never truncated.
    """

    kind: str
    step_tag: str
    step_separator: str = "\n\n"
    good_token: str = "+"
    bad_token: str = "-"
    correct_label: int = 1
    default_aggregation: str = "min"
    max_length: int = 4096

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"PRMFormat.kind: must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.step_tag, str) or not self.step_tag:
            raise ValueError("PRMFormat.step_tag: must be a non-empty string")
        if not isinstance(self.step_separator, str):
            raise ValueError("PRMFormat.step_separator: must be a string")
        if self.kind == "causal_lm":
            for name in ("good_token", "bad_token"):
                if not isinstance(getattr(self, name), str) or not getattr(self, name):
                    raise ValueError(f"PRMFormat.{name}: must be a non-empty string for a causal_lm PRM")
            if self.good_token == self.bad_token:
                raise ValueError("PRMFormat.good_token: must differ from bad_token")
        if self.correct_label not in (0, 1) or isinstance(self.correct_label, bool):
            raise ValueError(f"PRMFormat.correct_label: must be 0 or 1, got {self.correct_label!r}")
        if self.default_aggregation not in AGGREGATIONS:
            raise ValueError(f"PRMFormat.default_aggregation: must be one of {AGGREGATIONS}, "
                             f"got {self.default_aggregation!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1:
            raise ValueError(f"PRMFormat.max_length: must be a positive integer, got {self.max_length!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PRMFormat":
        """Build from a mapping; unknown keys are an error (a misspelled key never falls back silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"PRMFormat: unknown keys {unknown} (known: {sorted(known)})")
        missing = [k for k in ("kind", "step_tag") if k not in data]
        if missing:
            raise ValueError(f"PRMFormat: missing required keys {missing}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **overrides: Any) -> "PRMFormat":
        """A copy with some keys changed (flags over the file); unknown keys are an error."""
        return PRMFormat.from_dict({**self.to_dict(), **overrides})

    @classmethod
    def load(cls, directory: str | Path) -> "PRMFormat":
        path = Path(directory) / FORMAT_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: must hold a JSON object")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FORMAT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path


def tokenize(tokenizer: Any, text: str) -> list[int]:
    """Ids of `text` alone, without special tokens (the unit of segment-wise rendering)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def tokenize_many(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """`tokenize` of each text. A Hugging Face fast tokenizer gets them in one batched call (one pass
    through its Python wrapper, not one per step: a 200-step chain took 26 ms of the server's GIL
    the other way); any other callable, one at a time."""
    if getattr(tokenizer, "is_fast", False) and texts:
        return [list(ids) if text else [] for text, ids in
                zip(texts, tokenizer(list(texts), add_special_tokens=False)["input_ids"])]
    return [tokenize(tokenizer, text) for text in texts]


_CHUNK = 32  # steps tokenized per call when render_spans has a limit


def _pieces(tokenizer: Any, texts: Sequence[str], limit: int | None) -> Iterator[list[int]]:
    """tokenize_many of `texts`, in chunks of _CHUNK once past the first when there is a limit, stopping
    after the chunk that takes the total over it."""
    if limit is None:
        yield from tokenize_many(tokenizer, texts)
        return
    total = 0
    for s in range(0, len(texts), _CHUNK):
        for piece in tokenize_many(tokenizer, texts[s:s + _CHUNK]):
            total += len(piece)
            yield piece
        if total > limit:
            return


def render_spans(tokenizer: Any, fmt: PRMFormat, problem: str, steps: Sequence[str],
                 limit: int | None = None) -> tuple[list[int], list[tuple[int, int, int]]]:
    """(input_ids, spans): spans[j] = (start, tag_start, tag) of step j. ids[start:tag_start] are the step's
    own tokens: after its separator's tokens (when tok(separator + step) begins with tok(separator); if a
    merge crossed the boundary, the whole piece counts as the step's), so step 0 never includes the problem
    text. ids[tag_start:tag + 1] are its tag's tokens, and `tag` is where the step is scored.

    `limit`: the caller refuses chains of more tokens; tokenizing stops soon after the chain passes it (a
    200-step chain sent to a PRM that reads 4,096 tokens is not tokenized to its end), and the ids
    returned are then a prefix of more than `limit` tokens, not the chain."""
    tag = tokenize(tokenizer, fmt.step_tag)
    if not tag:
        raise ValueError(f"step_tag {fmt.step_tag!r} tokenizes to nothing")
    separator = tokenize(tokenizer, fmt.step_separator)
    pieces = _pieces(tokenizer, [problem, *(fmt.step_separator + step for step in steps)], limit)
    ids = next(pieces)
    spans = []
    for piece in pieces:
        start = len(ids) + (len(separator) if piece[:len(separator)] == separator else 0)
        ids.extend(piece)
        tag_start = len(ids)
        ids.extend(tag)
        spans.append((start, tag_start, len(ids) - 1))
    return ids, spans


def render_ids(tokenizer: Any, fmt: PRMFormat, problem: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """(input_ids, tag_positions): the chain as the PRM reads it; tag_positions[j] is where step j is scored."""
    ids, spans = render_spans(tokenizer, fmt, problem, steps)
    return ids, [tag for _, _, tag in spans]


def likelihood_features(token_nll: Any, spans: Sequence[Sequence[tuple[int, int, int]]]) -> Any:
    """The step_likelihood features (STEP_FEATURES) of every step of every row: [N, 6], N = all steps,
    row-major (row 0's steps in order, then row 1's, ...).

    token_nll: [B, T] tensor, token_nll[b, t] = -log p(ids[b, t] | ids[b, :t]) (anything at t = 0 and outside
    the spans is never read); spans[b]: the row's render_spans spans. A step with no own tokens has max and
    mean 0. Differentiable in token_nll. torch is imported here, not at the top: the module stays importable
    without it, and a caller with a tensor has it.

    One masked pass over [N, T] (N steps against the T columns), not small ops per step: on a GPU the loop
    this replaced was hundreds of kernel launches per batch, most of a tiny PRM's training step.
    """
    import torch

    flat = [(b, start, tag_start, tag) for b, row in enumerate(spans) for start, tag_start, tag in row]
    if not flat:
        return token_nll.new_zeros((0, len(STEP_FEATURES)))
    index = torch.tensor(flat, dtype=torch.long, device=token_nll.device)       # [N, 4]
    row, start, tag_start, tag = index.unbind(-1)
    nll = token_nll[row]                                                           # [N, T]
    t = torch.arange(token_nll.shape[1], device=token_nll.device)                 # [T]
    own = (t >= start[:, None]) & (t < tag_start[:, None])                        # [N, T]
    in_tag = (t >= tag_start[:, None]) & (t <= tag[:, None])
    count = own.sum(-1)
    has_own = count > 0
    zero = nll.new_zeros(())
    own_max = torch.where(has_own, nll.masked_fill(~own, float("-inf")).amax(-1), zero)
    own_mean = torch.where(has_own, nll.masked_fill(~own, 0.0).sum(-1) / count.clamp(min=1), zero)
    step = torch.stack([own_max, own_mean, nll.masked_fill(~in_tag, 0.0).sum(-1)], dim=-1)  # [N, 3]
    # running maxima over each row's steps: rows padded to S steps, cummax along them, read back
    lengths = [len(r) for r in spans]
    S = max(lengths)
    slot = torch.tensor([b * S + j for b, n in enumerate(lengths) for j in range(n)], device=token_nll.device)
    padded = step.new_zeros((len(spans) * S, 3)).index_copy(0, slot, step)   # zeros after a row's last step
    running = padded.view(len(spans), S, 3).cummax(dim=1).values.reshape(-1, 3)[slot]
    return torch.cat([step, running], dim=-1)                                   # [N, 6]


def save_head(directory: str | Path, weight: Sequence[float], bias: float) -> Path:
    """Write a step_likelihood head ([len(STEP_FEATURES)] weights and a bias) as HEAD_FILE."""
    if len(weight) != len(STEP_FEATURES):
        raise ValueError(f"a step_likelihood head has {len(STEP_FEATURES)} weights, got {len(weight)}")
    path = Path(directory) / HEAD_FILE
    path.write_text(json.dumps({"features": list(STEP_FEATURES), "weight": [float(w) for w in weight],
                                "bias": float(bias)}, indent=2) + "\n", encoding="utf-8")
    return path


def load_head(directory: str | Path) -> tuple[list[float], float]:
    """(weight, bias) of a step_likelihood head; ValueError (naming the file) if missing or not this version's."""
    path = Path(directory) / HEAD_FILE
    if not path.is_file():
        raise ValueError(f"{directory}: a step_likelihood PRM needs {HEAD_FILE} (its head), not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or set(data) != {"features", "weight", "bias"}:
        raise ValueError(f"{path}: must hold exactly the keys features, weight, bias")
    if data["features"] != list(STEP_FEATURES):
        raise ValueError(f"{path}: features {data['features']} are not this version's {list(STEP_FEATURES)}")
    weight, bias = data["weight"], data["bias"]
    if not isinstance(weight, list) or len(weight) != len(STEP_FEATURES) or \
            not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weight + [bias]):
        raise ValueError(f"{path}: weight must be {len(STEP_FEATURES)} numbers and bias a number")
    return [float(w) for w in weight], float(bias)


def label_token_ids(tokenizer: Any, fmt: PRMFormat) -> tuple[int, int]:
    """(good_id, bad_id) of a causal_lm PRM; each label must be exactly one token."""
    out = []
    for name in ("good_token", "bad_token"):
        ids = tokenize(tokenizer, getattr(fmt, name))
        if len(ids) != 1:
            raise ValueError(f"{name} {getattr(fmt, name)!r} must be one token, tokenizes to {ids}")
        out.append(ids[0])
    return out[0], out[1]
