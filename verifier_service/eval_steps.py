"""`verirl eval` lines of kind "steps": their checks, their final-answer check, and the chain summaries.

A line (issue 7): {"id", "kind": "steps", "problem", "steps": [...], "gold": <optional>, "label": <optional
index of the first wrong step, -1 if none>, "group": <optional, responses to one problem share it>}, plus
the proto's StepsItem fields ("aggregation", "threshold", "separator"). The chain goes to the service's
PRM (ScoreSteps); with a gold, the steps joined by the separator go to the math checker as a response
(CheckMath), here rather than through StepsItem.gold, so that the answer is checked even where the
server has no PRM (majority vote and pass@k need no PRM). The output's result gets "step_scores",
"aggregate", "first_error" and, with a gold, "answer": {"status", "judged", "correct", "extracted",
"normalized", "reason"}.

After the run, `finish` groups the chains, makes the answer keys for voting (extracted answers that the
math checker finds equivalent share a key), and returns chain_metrics' summary; the report is drawn
from it (report.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from .chain_metrics import ChainRecord, ChainSummary, summarize
from .client import VerifierClient
from .report import MAX_CHAINS, ChainView, write_report

__all__ = ["DEFAULT_THRESHOLD", "check_steps_line", "answer_response", "steps_result", "answer_result", "Chains",
           "finish"]

MAX_FORMS = 40           # distinct answers of a group compared pairwise by the checker (2 * C(40, 2) checks)
DEFAULT_THRESHOLD = 0.5  # first-error threshold for lines that give none: P(correct) < 0.5 means "wrong"
_SEPARATOR = "\n\n"      # the StepsItem's default separator


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_steps_line(obj: dict[str, Any]) -> str:
    """The first problem of a steps line, named by field ("" if none); the proto parse checks the rest."""
    if not isinstance(obj.get("problem"), str):
        return "'problem' is missing" if "problem" not in obj else \
            f"'problem' must be a string, got {type(obj['problem']).__name__}"
    steps = obj.get("steps")
    if steps is None and not isinstance(obj.get("text"), str):
        return "'steps' is missing (or give 'text')"
    if obj.get("separator") is not None and not isinstance(obj["separator"], str):
        return f"'separator' must be a string, got {type(obj['separator']).__name__}"
    if steps is not None and (not isinstance(steps, list) or not all(isinstance(s, str) for s in steps)):
        return "'steps' must be a list of strings"
    count = len(_steps_of(obj))
    if not count:
        return "'steps' is empty" if steps is not None else "'text' has no step"
    if "gold" in obj and obj["gold"] is not None and (isinstance(obj["gold"], bool)
                                                      or not isinstance(obj["gold"], (str, int, float))):
        return f"'gold' must be a string or a number, got {type(obj['gold']).__name__}"
    label = obj.get("label")
    if label is not None:
        if not _is_int(label):
            return f"'label' must be an integer (index of the first wrong step, -1 if none), got {label!r}"
        if not -1 <= label < count:
            return f"'label' must be in [-1, {count - 1}], got {label}"
    group = obj.get("group")
    if group is not None and (isinstance(group, bool) or not isinstance(group, (str, int))):
        return f"'group' must be a string or an integer, got {type(group).__name__}"
    threshold = obj.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        return f"'threshold' must be a number, got {type(threshold).__name__}"
    return ""


def _steps_of(obj: dict[str, Any]) -> list[str]:
    if obj.get("steps") is not None:
        return list(obj["steps"])
    separator = obj.get("separator") or _SEPARATOR
    return [s for s in obj["text"].split(separator) if s.strip()]


def answer_response(obj: dict[str, Any]) -> str:
    """What the math checker reads as the response: the chain's text (its extractors find the answer)."""
    return (obj.get("separator") or _SEPARATOR).join(_steps_of(obj))


def steps_result(prm: Any) -> dict[str, Any]:
    """The output line's result from the service's StepsResult (the answer is added apart); aggregate and
    first_error are null when the PRM did not judge the chain (the proto's zeros would read as scores)."""
    return {"status": prm.status, "judged": prm.judged, "step_scores": list(prm.step_scores),
            "aggregate": prm.score if prm.judged else None, "first_error": prm.first_error if prm.judged else None,
            "reason": prm.reason}


ANSWER_KEYS = ("status", "judged", "correct", "extracted", "normalized", "reason")


def answer_result(math: dict[str, Any]) -> dict[str, Any]:
    """The "answer" part of a steps result from the math check's result (or its error)."""
    return {k: math[k] for k in ANSWER_KEYS if k in math}


@dataclass
class _Chain:
    record: ChainRecord
    extracted: str | None          # the raw extracted answer (the checker re-reads it for voting)
    normalized: str | None
    view: ChainView | None         # kept for the first MAX_CHAINS chains only: the report's text


@dataclass
class Chains:
    """What the run keeps of each steps line for the summaries: scores and verdicts, and the text of the
    first MAX_CHAINS lines only (on a large file, memory grows by the scores alone)."""

    items: list[_Chain] = field(default_factory=list)

    def add(self, number: int, obj: dict[str, Any], result: dict[str, Any], *, well_formed: bool) -> None:
        """One line's outcome; a malformed line counts as a chain that was not judged, without label or group."""
        judged = bool(result["judged"])
        answer = result.get("answer") or {}
        answered = bool(answer.get("judged"))
        extracted = (answer.get("extracted") or None) if answered else None
        group = obj.get("group") if well_formed else None
        record = ChainRecord(
            id=str(obj.get("id", f"line {number}")), step_scores=tuple(result.get("step_scores", ())),
            aggregate=result["aggregate"] if judged else None, first_error=result["first_error"] if judged else None,
            label=obj.get("label") if well_formed else None, group=None if group is None else str(group),
            correct=bool(answer["correct"]) if answered else None)
        view = None
        if len(self.items) < MAX_CHAINS:
            view = ChainView(record, str(obj.get("problem", "")), tuple(_steps_of(obj)) if well_formed else (),
                             result["status"], result.get("reason", ""), extracted)
        self.items.append(_Chain(record, extracted, answer.get("normalized") or None, view))


def _form(c: _Chain) -> str:
    """The cheap part of answer equivalence: the checker's normalized form, and an exact rational for a
    plain number, so that "0.5", "1/2" and "2/4" need no pairwise check."""
    text = c.normalized or c.extracted or ""
    try:
        return f"number:{Fraction(text.replace(' ', ''))}"
    except (ValueError, ZeroDivisionError):
        return text


def _answer_keys(client: VerifierClient, chains: Sequence[_Chain]) -> tuple[list[str | None], int]:
    """Per chain, a key shared by the chains of its group whose final answers the math checker finds
    equivalent; and the number of groups with more than MAX_FORMS distinct forms.

    Answers of one form (`_form`) share a key at once. In a group of at most MAX_FORMS distinct forms,
    every two forms are also compared by the checker (each as a boxed response against the other as
    gold, both ways: one "correct" joins them), closed transitively (union-find); a larger group is
    left at its forms, as the pairs grow quadratically."""
    by_group: dict[str, dict[str, str]] = {}  # group -> form -> an extracted answer of that form
    for c in chains:
        if c.record.group is not None and c.extracted is not None:
            by_group.setdefault(c.record.group, {}).setdefault(_form(c), c.extracted)
    crowded = sum(len(forms) > MAX_FORMS for forms in by_group.values())
    pairs = [(g, a, b) for g, forms in by_group.items() if len(forms) <= MAX_FORMS
             for i, a in enumerate(forms) for b in list(forms)[i + 1:]]
    items = [{"id": str(k), "response": f"\\boxed{{{by_group[g][x]}}}", "gold": by_group[g][y]}
             for k, (g, a, b) in enumerate(pairs) for x, y in ((a, b), (b, a))]
    verdicts = client.check_math(items) if items else []
    parent = {(g, form): (g, form) for g, forms in by_group.items() for form in forms}

    def root(node: tuple[str, str]) -> tuple[str, str]:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for k, (g, a, b) in enumerate(pairs):
        if verdicts[2 * k].correct or verdicts[2 * k + 1].correct:
            parent[root((g, b))] = root((g, a))
    keys = [None if c.record.group is None or c.extracted is None else root((c.record.group, _form(c)))[1]
            for c in chains]
    return keys, crowded


def finish(client: VerifierClient, chains: Chains, *, report: Path | None = None, source: str = "") -> ChainSummary:
    """The summary of the run's chains (answer keys from the service), and the report if asked."""
    keys, crowded = _answer_keys(client, chains.items)
    if crowded:
        print(f"verirl: {crowded} group(s) have over {MAX_FORMS} distinct final answers; their answers are "
              "compared by normalized form only (no pairwise checks)", file=sys.stderr)
    records = [replace(c.record, answer=key) for c, key in zip(chains.items, keys)]
    summary = summarize(records)
    if report is not None:
        views = [replace(c.view, record=r) for c, r in zip(chains.items, records) if c.view is not None]
        write_report(report, summary, records, views, source=source)
    return summary
