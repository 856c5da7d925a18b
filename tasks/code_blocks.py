"""Finding the code to run in a model response: fenced Markdown blocks.

A leaf module (imports nothing of the project) so that dataset code and the verifier agree on
what "the code in a response" is. A block is a ``` or ~~~ fence of three or more characters;
its info string names the language. Untagged blocks count for every language; blocks tagged
with another language are skipped. A final fence that is never closed (a response cut off by
the token limit) still counts as a block running to the end of the response.
"""

from __future__ import annotations

import re

__all__ = ["extract_code", "find_blocks", "MODES", "LANGUAGE_TAGS"]

MODES = ("LAST_BLOCK", "FIRST_BLOCK", "ALL_BLOCKS", "WHOLE")

LANGUAGE_TAGS = {
    "python": frozenset({"python", "py", "python3", "py3"}),
    "cpp": frozenset({"cpp", "c++", "cc", "cxx", "hpp", "h++"}),
}

_OPEN = re.compile(r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


def find_blocks(response: str) -> list[tuple[str, str]]:
    """Every fenced block as (language tag in lower case, or "", body) in order of appearance."""
    blocks: list[tuple[str, str]] = []
    lines = response.splitlines()
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        fence = opened.group("fence")
        words = opened.group("info").strip().split()
        tag = words[0].lower().lstrip("{.").rstrip("}") if words else ""
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[i])
            i += 1
        blocks.append((tag, "\n".join(body) + "\n" if body else ""))
        i += 1
    return blocks


def extract_code(response: str, language: str = "python", mode: str = "LAST_BLOCK") -> str | None:
    """The code to run, or None when the response holds no block of the language."""
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode {mode!r}; expected one of {MODES}")
    if mode == "WHOLE":
        return response if response.strip() else None
    tags = LANGUAGE_TAGS.get(language, frozenset({language}))
    bodies = [body for tag, body in find_blocks(response) if (not tag or tag in tags) and body.strip()]
    if not bodies:
        return None
    if mode == "FIRST_BLOCK":
        return bodies[0]
    if mode == "LAST_BLOCK":
        return bodies[-1]
    return "\n".join(bodies)
