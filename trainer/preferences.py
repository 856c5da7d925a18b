"""Preference pairs `{prompt, chosen, rejected}` for the reward model and DPO.

Two sources, one record shape (`PreferencePair`, JSONL with exactly these three fields):

  * synthetic (`synthetic_pairs`): for each synthetic problem, chosen = its reference solution and
    rejected = a corrupted chain of the same problem (`tasks.corruptions`: the first error at a known
    step, the later steps consistent with it, so the final answer is wrong too). Exact by construction.
  * verified (`collect_verified_pairs`, `pairs_from_verdicts`): groups of completions sampled for one
    prompt and judged by the verifier service (`trainer.rewards.score_completions`, a real gRPC client).
    A completion is correct when it was judged and its reward reaches `correct_min` (the full math score
    by default), incorrect when it was judged and falls short; completions a check could not judge
    (TIMEOUT, ...) are in neither set, never read as wrong (score with `unjudged="exclude"`: a penalised
    completion would count as judged). Every (correct, incorrect) combination of a
    prompt is a candidate pair; identical texts count once; at most `max_pairs_per_prompt` are drawn
    uniformly, with an RNG seeded by (seed, prompt), so the same groups give the same pairs.
    A prompt whose group is all correct or all incorrect gives no pair (counted in `PairStats`).

Prompts are the text the policy sees (formatted, chat template applied when configured), so DPO and
the reward model score exactly what the policy generates after.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tasks.types import Problem

__all__ = ["PreferencePair", "PairStats", "synthetic_pairs", "pairs_from_verdicts", "collect_verified_pairs",
           "read_pairs", "write_pairs", "load_pairs", "PAIR_FIELDS"]

PAIR_FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str

    def to_dict(self) -> dict[str, str]:
        return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], where: str = "record") -> PreferencePair:
        """From a JSONL record; a missing, extra, empty or non-string field is an error naming it."""
        extra = sorted(set(record) - set(PAIR_FIELDS))
        if extra:
            raise ValueError(f"{where}: unknown field(s) {extra}; a pair has {list(PAIR_FIELDS)}")
        for name in PAIR_FIELDS:
            value = record.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
        return cls(record["prompt"], record["chosen"], record["rejected"])


@dataclass(frozen=True)
class PairStats:
    prompts: int              # prompts (groups) looked at
    pairs: int                # pairs made
    prompts_without_pair: int  # all correct, all incorrect, or nothing judged
    unjudged: int             # completions no check could judge (in neither set)


def synthetic_pairs(problems: Sequence[Problem], *, seed: int = 0, prompt_style: str = "", tokenizer: Any = None,
                    chat: bool = False, kinds: Sequence[str] | None = None) -> list[PreferencePair]:
    """One pair per synthetic problem: reference solution over a corrupted chain (corruption kinds
    drawn from `kinds`, all of `tasks.corruptions.KINDS` by default; deterministic by `seed`). A problem
    that no corruption of those kinds fits (e.g. "operation" where every other operation leaves the
    value range) gives no pair."""
    from tasks.corruptions import KINDS, step_chains
    from tasks.prompts import format_prompt
    from tasks.synthetic import STEP_SEPARATOR, reference_steps
    pairs = []
    for p in problems:
        try:  # one problem at a time: the corruption RNG is seeded per problem, so this is the batch result
            (wrong,) = step_chains([p], seed=seed, error_fraction=1.0, kinds=tuple(kinds or KINDS))
        except ValueError:
            continue
        pairs.append(PreferencePair(format_prompt(p, prompt_style or None, tokenizer=tokenizer, chat=chat),
                                    STEP_SEPARATOR.join(reference_steps(p)), STEP_SEPARATOR.join(wrong.steps)))
    return pairs


def pairs_from_verdicts(prompts: Sequence[str], texts: Sequence[Sequence[str]],
                        correct: Sequence[Sequence[bool | None]], *, max_pairs_per_prompt: int,
                        seed: int = 0) -> tuple[list[PreferencePair], PairStats]:
    """Pairs from judged groups: `texts[b][g]` answers `prompts[b]`; `correct[b][g]` is True, False, or
    None (not judged: unused). Up to `max_pairs_per_prompt` distinct (correct, incorrect) pairs per
    prompt, drawn with an RNG seeded by (seed, prompt)."""
    if max_pairs_per_prompt < 1:
        raise ValueError("max_pairs_per_prompt must be >= 1")
    pairs: list[PreferencePair] = []
    without = unjudged = 0
    for prompt, group, verdicts in zip(prompts, texts, correct, strict=True):
        if len(group) != len(verdicts):
            raise ValueError(f"prompt {prompt[:40]!r}: {len(group)} texts but {len(verdicts)} verdicts")
        unjudged += sum(v is None for v in verdicts)
        good = list(dict.fromkeys(t for t, v in zip(group, verdicts) if v is True))   # distinct, in order
        bad = list(dict.fromkeys(t for t, v in zip(group, verdicts) if v is False))
        candidates = list(itertools.product(good, bad))
        if not candidates:
            without += 1
            continue
        rng = random.Random(f"verirl-pairs:{seed}:{prompt}")
        picked = rng.sample(candidates, min(max_pairs_per_prompt, len(candidates)))
        pairs.extend(PreferencePair(prompt, c, r) for c, r in picked)
    return pairs, PairStats(len(prompts), len(pairs), without, unjudged)


def collect_verified_pairs(engine: Any, client: Any, problems: Sequence[Problem], prompts: Sequence[str], *,
                           group_size: int, sampling: Any, rewards: Any, max_pairs_per_prompt: int,
                           seed: int = 0, correct_min: float = 1.0) -> tuple[list[PreferencePair], PairStats]:
    """Sample `group_size` completions per prompt with a rollout `engine` (trainer.rollout), score them
    through the verifier `client` with `rewards` (trainer.rewards.RewardSettings), and pair them."""
    from trainer.rewards import score_completions
    groups = engine.generate(list(prompts), group_size, sampling)
    texts = [[c.text for c in g.completions] for g in groups]
    scored = score_completions(client, [p for p in problems for _ in range(group_size)],
                               [t for group in texts for t in group], rewards)
    verdicts = [[(r >= correct_min) if ok else None
                 for r, ok in zip(scored.rewards[b * group_size:(b + 1) * group_size],
                                  scored.valid[b * group_size:(b + 1) * group_size])]
                for b in range(len(groups))]
    return pairs_from_verdicts(prompts, texts, verdicts, max_pairs_per_prompt=max_pairs_per_prompt, seed=seed)


def read_pairs(path: str | Path) -> list[PreferencePair]:
    from tasks.files import read_jsonl
    return [PreferencePair.from_dict(r, f"{path}: record {i + 1}") for i, r in enumerate(read_jsonl(path))]


def write_pairs(pairs: Iterable[PreferencePair], path: str | Path) -> int:
    from tasks.files import write_jsonl
    return write_jsonl((p.to_dict() for p in pairs), path)


def load_pairs(d: Any, tokenizer: Any) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out) pairs for a `trainer.rm_config.PairDataConfig` section `d`. Synthetic held-out
    pairs come from the held-out split (other arithmetic than any training problem)."""
    if d.source == "synthetic":
        from tasks.synthetic import SyntheticConfig, generate
        knobs = SyntheticConfig(min_steps=d.min_steps, max_steps=d.max_steps, max_value=d.max_value)
        common = dict(seed=d.seed, prompt_style=d.prompt_style, tokenizer=tokenizer, chat=d.chat,
                      kinds=d.corruption_kinds)
        return (synthetic_pairs(generate(d.num_pairs, split="train", seed=d.seed, config=knobs), **common),
                synthetic_pairs(generate(d.eval_pairs, split="heldout", seed=d.seed, config=knobs), **common))
    pairs = read_pairs(d.path)
    if d.eval_path:
        return pairs, read_pairs(d.eval_path)
    if len(pairs) <= d.eval_pairs:
        raise ValueError(f"{d.path}: {len(pairs)} pairs leave nothing to train on after holding out "
                         f"data.eval_pairs={d.eval_pairs}; give data.eval_path or lower data.eval_pairs")
    order = list(range(len(pairs)))
    random.Random(f"{d.seed}:heldout").shuffle(order)
    held = set(order[:d.eval_pairs])
    return [p for i, p in enumerate(pairs) if i not in held], [pairs[i] for i in sorted(held)]
