"""Step-labelled data: ProcessBench-style files, PRM800K-style ratings, and TRL's PRM format.

Three shapes of the same thing, and the conversions between them:

- ProcessBench (evaluation): `{"id", "problem", "steps": [...], "label": <index of the first wrong step,
  -1 if none>, "final_answer_correct": bool}`; `verirl eval` lines of kind "steps" are the same plus
  `"kind": "steps"` and an optional `"gold"`, so one loader reads both.
- TRL (PRM training): `{"prompt", "completions": [step, ...], "labels": [per step]}`.
- PRM800K (human ratings per step: 1 good, 0 neutral, -1 bad). "Let's Verify Step by Step" counts
  neutral steps as correct, so `neutral=True` is the default; pass False to count them wrong, or a
  float (e.g. 0.5) for a soft label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from tasks.files import DatasetError, read_jsonl, write_jsonl
from tasks.types import StepChain

__all__ = ["split_steps", "load_processbench", "write_processbench", "to_processbench", "to_eval_line",
           "to_trl", "from_trl", "load_prm800k"]


def split_steps(text: str, separator: str = "\n\n") -> list[str]:
    """Split a solution into steps (blank-line separated by default), dropping empty pieces."""
    return [s.strip() for s in text.split(separator) if s.strip()]


def load_processbench(path: str | Path) -> list[StepChain]:
    """Chains from a ProcessBench-style JSONL file (or `verirl eval` "steps" lines with a label).

    Fields other than problem/steps/label/id/gold (e.g. "generator", "final_answer_correct") are kept
    in `metadata`.
    """
    out = []
    for i, row in enumerate(read_jsonl(path)):
        where = f"{path}: row {i}"
        missing = [k for k in ("problem", "steps", "label") if k not in row]
        if missing:
            raise DatasetError(f"{where}: missing {missing} (fields: {sorted(row)})")
        if not isinstance(row["steps"], list) or not all(isinstance(s, str) for s in row["steps"]):
            raise DatasetError(f"{where}: 'steps' must be a list of strings")
        try:
            chain = StepChain(problem=row["problem"], steps=tuple(row["steps"]), first_error=int(row["label"]),
                              gold=row.get("gold"), id=str(row.get("id", i)),
                              metadata={k: v for k, v in row.items()
                                        if k not in ("problem", "steps", "label", "id", "gold", "kind")})
        except ValueError as e:
            raise DatasetError(f"{where}: {e}") from e
        out.append(chain)
    return out


def to_processbench(chain: StepChain) -> dict[str, Any]:
    """ProcessBench's fields; `final_answer_correct` and `generator` are written when the metadata has them."""
    row: dict[str, Any] = {"id": chain.id, "problem": chain.problem, "steps": list(chain.steps),
                           "label": chain.first_error}
    for key in ("final_answer_correct", "generator"):
        if key in chain.metadata:
            row[key] = chain.metadata[key]
    if chain.gold is not None:
        row["gold"] = chain.gold
    return row


def write_processbench(chains: Iterable[StepChain], path: str | Path) -> int:
    return write_jsonl((to_processbench(c) for c in chains), path)


def to_eval_line(chain: StepChain) -> dict[str, Any]:
    """A `verirl eval` line of kind "steps" (issue 7's shape), label included."""
    line: dict[str, Any] = {"id": chain.id, "kind": "steps", "problem": chain.problem, "steps": list(chain.steps),
                            "label": chain.first_error}
    if chain.gold is not None:
        line["gold"] = chain.gold
    return line


def to_trl(chain: StepChain) -> dict[str, Any]:
    """TRL's stepwise-supervision record; labels are the chain's prefix labels (see `StepChain.labels`)."""
    return {"prompt": chain.problem, "completions": list(chain.steps), "labels": chain.labels()}


def from_trl(record: Mapping[str, Any], *, threshold: float = 0.5) -> StepChain:
    """A chain whose first error is the first label that is False (or below `threshold` when soft)."""
    labels = [float(x) for x in record["labels"]]
    if len(labels) != len(record["completions"]):
        raise DatasetError(f"{len(labels)} labels for {len(record['completions'])} completions")
    first = next((i for i, x in enumerate(labels) if x < threshold), -1)
    return StepChain(problem=record["prompt"], steps=tuple(record["completions"]), first_error=first,
                     id=str(record.get("id", "")))


def _rating_label(rating: int, neutral: bool | float) -> bool | float:
    if rating not in (-1, 0, 1):
        raise DatasetError(f"rating {rating!r} is not -1, 0 or 1")
    return {1: True, -1: False}.get(rating, neutral)


def _prm800k_trajectory(label: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(text, rating) of the steps a PRM800K labeler walked through, up to the first bad one.

    Per step the labeler rated candidate completions and continued with `chosen_completion`, or wrote
    `human_completion` (counted as good). A step with neither is where the labeling stopped: there the
    first bad-rated candidate (else the first candidate) ends the trajectory. Unrated steps end it too,
    before them: an unlabelled step must not become a label.
    """
    out: list[tuple[str, int]] = []
    for step in label.get("steps", []):
        completions = step.get("completions") or []
        chosen, human = step.get("chosen_completion"), step.get("human_completion")
        if chosen is not None:
            text, rating = completions[chosen]["text"], completions[chosen].get("rating")
        elif human is not None:
            text, rating = (human["text"] if isinstance(human, Mapping) else str(human)), 1
        else:
            bad = [c for c in completions if c.get("rating") == -1]
            pick = bad[0] if bad else (completions[0] if completions else None)
            if pick is not None and pick.get("rating") is not None:
                out.append((pick["text"], pick["rating"]))
            break
        if rating is None:
            break
        out.append((text, rating))
        if rating == -1:
            break
    return out


def load_prm800k(path: str | Path, *, neutral: bool | float = True) -> list[dict[str, Any]]:
    """TRL records from PRM800K's JSONL, or from a flat file of {problem|prompt, steps|completions, ratings}.

    `neutral` is the label of a 0 ("neutral") rating: True by default, as in the paper. Records left with
    no labelled step are dropped.
    """
    out = []
    for i, row in enumerate(read_jsonl(path)):
        where = f"{path}: row {i}"
        try:
            if isinstance(row.get("label"), Mapping):  # the PRM800K release
                prompt = row["question"]["problem"]
                pairs = _prm800k_trajectory(row["label"])
            else:
                prompt = row["problem"] if "problem" in row else row["prompt"]
                steps = row["steps"] if "steps" in row else row["completions"]
                if len(steps) != len(row["ratings"]):
                    raise DatasetError(f"{len(steps)} steps but {len(row['ratings'])} ratings")
                pairs = list(zip(steps, row["ratings"]))
            labels = [_rating_label(r, neutral) for _, r in pairs]
        except (KeyError, IndexError, TypeError, DatasetError) as e:
            raise DatasetError(f"{where}: not a PRM800K-like row ({type(e).__name__}: {e})") from e
        if pairs:
            out.append({"prompt": prompt, "completions": [t for t, _ in pairs], "labels": labels})
    return out
