"""Find the final answer in a model response.

Shared by the verifier (what gets graded) and by the tasks (gold answers from
reference solutions), so both read answers the same way. Each extractor is a
named function; callers pick an ordered list and the first that finds
something wins.

- boxed_last / boxed_all: `\\boxed{...}` and `\\fbox{...}` with nested braces,
  also `\\boxed 5` (no braces). boxed_all returns every box: several answers.
- answer_is: "the (final) answer is X", "Answer: X", "**Answer:** X".
- gsm8k_hashes: "#### 42" (GSM8K's reference format).
- last_number: the last number in the text (a fallback; sign, decimals,
  thousands separators and a fraction a/b kept).
- bare_answer: the text itself when it is a short answer, not prose
  (`\\frac{1}{2}`, `x^2+1`, `$(1,2)$`, `Monday`): without it the last-number
  fallback would read `\\frac{1}{2}` as 2.
- whole_response: the text itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = [
    "EXTRACTORS",
    "DEFAULT_ORDER",
    "extract_answers",
    "boxed_contents",
    "last_boxed",
    "gold_from_solution",
]

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def boxed_contents(text: str) -> list[str]:
    """Every `\\boxed{...}` / `\\fbox{...}` content, in order of appearance."""
    found: list[tuple[int, str]] = []
    for command in _BOX_COMMANDS:
        start = 0
        while (at := text.find(command, start)) != -1:
            start = at + len(command)
            content = _argument_after(text, start)
            if content is not None:
                found.append((at, content.strip()))
    return [content for _, content in sorted(found)]


def _argument_after(text: str, pos: int) -> str | None:
    """The braced argument starting at `pos` (after optional spaces), or `\\boxed 5` style."""
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        return None
    if text[pos] != "{":
        if text[pos - 1] != " ":  # \boxedfoo is another command, not a box
            return None
        match = re.match(r"[^\s$]+", text[pos:])
        return match.group(0) if match else None
    depth = 0
    for i in range(pos, len(text)):
        char = text[i]
        if char == "\\":
            continue
        if char == "{" and text[i - 1] != "\\":
            depth += 1
        elif char == "}" and text[i - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : i]
    return None  # unbalanced: the box never closes


def last_boxed(text: str) -> str | None:
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


def _boxed_last(text: str) -> list[str]:
    box = last_boxed(text)
    return [box] if box else []


def _boxed_all(text: str) -> list[str]:
    boxes = [box for box in boxed_contents(text) if box]
    if len(boxes) <= 1:
        return boxes
    return [", ".join(dict.fromkeys(boxes))]  # several boxes = one answer with several parts


# A lookahead, so matches overlap: in "Final Answer: The final answer is $5$" the last one wins.
_ANSWER_IS = re.compile(r"(?=answer\s*\**\s*(?:is\b|:|=)\s*:?\s*\**\s*(.+))", re.IGNORECASE)
_MATH_SPAN = re.compile(r"^(\$\$?|\\\(|\\\[)((?:\\\$|[^$])*?)(\$\$?|\\\)|\\\])")
_REASON_CLAUSE = re.compile(r",?\s+(?:since|because|as|which|so that|given that|i\.e\.|e\.g\.)\s.*$", re.IGNORECASE)


def _answer_is(text: str) -> list[str]:
    matches = list(_ANSWER_IS.finditer(text))
    for match in reversed(matches):
        answer = _clip_sentence(match.group(1))
        if answer:
            return [answer]
    return []


def _clip_sentence(text: str) -> str:
    """The answer phrase: up to the end of the line, without a trailing period, reason or markup."""
    line = text.split("\n", 1)[0].strip()
    math_span = _MATH_SPAN.match(line)
    if math_span:  # "$5$. I hope it is correct." -> "5"
        return math_span.group(2).strip()
    line = re.sub(r"\.\s.*$", "", line)  # a second sentence on the same line
    line = _REASON_CLAUSE.sub("", line)
    return line.rstrip(" .").strip("*").strip()


_HASHES = re.compile(r"####\s*(.+)")


def _gsm8k_hashes(text: str) -> list[str]:
    matches = _HASHES.findall(text)
    if not matches:
        return []
    answer = matches[-1].strip().rstrip(".").strip()
    return [answer] if answer else []


_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?(?!\w)"
    r"|(?<![\w.])-?\.\d+(?!\w)"
)


_SCALE_AFTER = re.compile(r"\s+(thousand|million|billion|trillion)\b", re.IGNORECASE)


def _last_number(text: str) -> list[str]:
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return []
    last = matches[-1]
    scale = _SCALE_AFTER.match(text, last.end())  # "$5 million" is 5000000, not 5
    return [last.group(0).replace(" ", "") + (f" {scale.group(1)}" if scale else "")]


def _whole_response(text: str) -> list[str]:
    stripped = text.strip()
    return [stripped] if stripped else []


_MATH_DELIMITED = re.compile(r"^(\$\$?|\\\(|\\\[).*(\$\$?|\\\)|\\\])$", re.S)
_PROSE_WORD = re.compile(r"[A-Za-z]{3,}")
_FEW_WORDS = re.compile(r"^[A-Za-z][A-Za-z'\-]*(?: [A-Za-z][A-Za-z'\-]*)?$")


def _bare_answer(text: str) -> list[str]:
    stripped = text.strip()
    if not stripped or len(stripped) > 200 or "\n" in stripped:
        return []
    if _MATH_DELIMITED.match(stripped) or _FEW_WORDS.match(stripped):
        return [stripped]
    without_latex = re.sub(r"\\(?:text|mbox|textbf|mathrm|operatorname)\s*\{[^{}]*\}|\\[a-zA-Z]+", "", stripped)
    return [] if _PROSE_WORD.search(without_latex) else [stripped]


EXTRACTORS: dict[str, Callable[[str], list[str]]] = {
    "BOXED_LAST": _boxed_last,
    "BOXED_ALL": _boxed_all,
    "ANSWER_IS": _answer_is,
    "GSM8K_HASHES": _gsm8k_hashes,
    "LAST_NUMBER": _last_number,
    "WHOLE_RESPONSE": _whole_response,
    "BARE_ANSWER": _bare_answer,
}

DEFAULT_ORDER = ("BOXED_LAST", "ANSWER_IS", "GSM8K_HASHES", "BARE_ANSWER", "LAST_NUMBER")


def extract_answers(text: str, order: Sequence[str] = DEFAULT_ORDER) -> tuple[str, str] | None:
    """(extractor name, answer) from the first extractor in `order` that finds one."""
    for name in order:
        found = EXTRACTORS[name](text)
        if found:
            return name, found[0]
    return None


def gold_from_solution(solution: str) -> str:
    """The answer of a reference solution: its last box, else its "####" line, else itself."""
    found = extract_answers(solution, ("BOXED_LAST", "GSM8K_HASHES"))
    return found[1] if found else solution.strip()
