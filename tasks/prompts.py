"""Prompt templates, plain and chat.

A style is a named function `Problem -> str` in `PROMPTS`, picked once (rule: variants live in a table).
Instructions match what the verifier extracts: math answers in \\boxed{} (its first extractor), code in
one fenced block of the language (its default: the last block), steps separated by blank lines (the
usual PRM step separator), and the synthetic family in its own one-calculation-per-line format.

Chat prompts go through the model's own chat template: `render_chat` calls the tokenizer's
`apply_chat_template` when the tokenizer has a template, so a prompt looks the way the model was trained
to see it. Tokenizers without one (the demo's char-level model) get a plain role-prefixed rendering.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from tasks.types import CHECK_CODE, Problem

__all__ = ["math_prompt", "code_prompt", "steps_prompt", "synthetic_prompt", "bare_prompt", "PROMPTS",
           "default_style", "build_prompt", "chat_messages", "render_chat", "format_prompt"]

Message = dict[str, str]


def math_prompt(problem: Problem) -> str:
    return f"{problem.prompt}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def _language(problem: Problem) -> str:
    return str(problem.metadata.get("language", "python"))


def code_prompt(problem: Problem) -> str:
    """A function stub with its entry point defined in the prompt (HumanEval) is completed; any other
    prompt is a task description (MBPP, stdin/stdout tasks)."""
    lang = _language(problem)
    entry = (problem.tests or {}).get("entry_point")
    if entry and re.search(rf"def\s+{re.escape(entry)}\s*\(", problem.prompt):
        return (f"Complete the following {lang.capitalize()} function. Reply with the whole function, "
                f"imports included, in one ```{lang} code block.\n\n```{lang}\n{problem.prompt.rstrip()}\n```")
    return f"{problem.prompt}\n\nWrite the solution in {lang.capitalize()}, in one ```{lang} code block."


def steps_prompt(problem: Problem) -> str:
    return (f"{problem.prompt}\n\nSolve it step by step. Separate the steps with a blank line, and put "
            f"the final answer within \\boxed{{}}.")


def synthetic_prompt(problem: Problem) -> str:
    """For the synthetic family: the format `tasks.synthetic.check_steps` judges."""
    final = "\\boxed{<number>}" if problem.metadata.get("answer_style") == "boxed" else "#### <number>"
    return (f"{problem.prompt}\nWrite one calculation per line, as a + b = c, using the result of the line "
            f"before. End with the answer on its own line as {final}.")


def bare_prompt(problem: Problem) -> str:
    """The question and a newline: for models trained from scratch on the format (the demo)."""
    return problem.prompt + "\n"


PROMPTS: dict[str, Callable[[Problem], str]] = {
    "math": math_prompt, "code": code_prompt, "steps": steps_prompt, "synthetic": synthetic_prompt,
    "bare": bare_prompt,
}


def default_style(problem: Problem) -> str:
    """"code" for code problems, "synthetic" for the synthetic family, else "math"."""
    if CHECK_CODE in problem.checks:
        return "code"
    if problem.metadata.get("source") == "synthetic":
        return "synthetic"
    return "math"


def build_prompt(problem: Problem, style: str | None = None) -> str:
    style = style or default_style(problem)
    if style not in PROMPTS:
        raise ValueError(f"unknown prompt style {style!r}; known: {sorted(PROMPTS)}")
    return PROMPTS[style](problem)


def chat_messages(problem: Problem, style: str | None = None, system: str | None = None) -> list[Message]:
    """[system?, user] messages for a chat model."""
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": build_prompt(problem, style)}]


def render_chat(tokenizer: Any, messages: list[Message], *, add_generation_prompt: bool = True) -> str:
    """The messages as the model's own chat template renders them (text, not token ids).

    Falls back to plain "<Role>: <content>" blocks when the tokenizer is None or has no chat template
    (a transformers tokenizer without one would raise instead).
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages)
    return text + ("Assistant:" if add_generation_prompt else "")


def format_prompt(problem: Problem, style: str | None = None, *, tokenizer: Any = None,
                  system: str | None = None, chat: bool = False) -> str:
    """One call for trainers: the plain prompt, or with `chat` the rendered chat prompt (`system` and
    `tokenizer` apply only then)."""
    if not chat:
        return build_prompt(problem, style)
    return render_chat(tokenizer, chat_messages(problem, style, system))
