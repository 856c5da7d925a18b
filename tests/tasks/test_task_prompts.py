"""Prompt templates and chat rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import (PROMPTS, Problem, build_prompt, chat_messages, default_style, format_prompt, generate,
                   load_humaneval, load_mbpp, render_chat)

FIX = Path(__file__).resolve().parents[1] / "fixtures"
MATH = Problem(id="m", prompt="What is 2 + 2?", gold="4")


def test_math_and_steps_prompts():
    assert build_prompt(MATH).startswith("What is 2 + 2?\n\n") and "\\boxed{}" in build_prompt(MATH)
    steps = build_prompt(MATH, "steps")
    assert "blank line" in steps and "\\boxed{}" in steps
    assert build_prompt(MATH, "bare") == "What is 2 + 2?\n"


def test_code_prompts():
    he = load_humaneval(FIX / "humaneval_slice.jsonl.gz", limit=1)[0]
    text = build_prompt(he)
    assert "Complete the following Python function" in text
    assert f"```python\n{he.prompt.rstrip()}\n```" in text
    mbpp = load_mbpp(FIX / "mbpp_slice.jsonl", limit=1)[0]
    text = build_prompt(mbpp)
    assert text.startswith(mbpp.prompt) and "```python" in text and "Complete" not in text


def test_synthetic_prompt_names_the_answer_format():
    p = generate(1)[0]
    assert build_prompt(p).startswith(p.prompt) and "#### <number>" in build_prompt(p)


@pytest.mark.parametrize("problem, style", [
    (MATH, "math"),
    (Problem(id="c", prompt="Add.", tests={"assert": "assert True"}, checks=("code",)), "code"),
    (generate(1)[0], "synthetic"),
])
def test_default_style(problem, style):
    assert default_style(problem) == style and style in PROMPTS


def test_unknown_style():
    with pytest.raises(ValueError, match="unknown prompt style"):
        build_prompt(MATH, "poem")


class TemplateTokenizer:
    """Stands in for a transformers tokenizer that has a chat template."""

    chat_template = "{{ messages }}"

    def __init__(self):
        self.calls = []

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        self.calls.append((messages, tokenize, add_generation_prompt))
        return "<|im_start|>" + "|".join(m["content"] for m in messages) + ("<gen>" if add_generation_prompt else "")


def test_render_chat_uses_the_models_template():
    tok = TemplateTokenizer()
    messages = chat_messages(MATH, system="Be brief.")
    assert [m["role"] for m in messages] == ["system", "user"]
    out = render_chat(tok, messages)
    assert tok.calls == [(messages, False, True)] and out.endswith("<gen>")
    assert format_prompt(MATH, tokenizer=tok, chat=True, system="Be brief.") == out


def test_render_chat_without_a_template_is_plain():
    class NoTemplate:
        chat_template = None

    messages = chat_messages(MATH)
    expected = f"User: {build_prompt(MATH)}\n\nAssistant:"
    assert render_chat(None, messages) == expected == render_chat(NoTemplate(), messages)
    assert render_chat(None, messages, add_generation_prompt=False) == f"User: {build_prompt(MATH)}\n\n"
    assert format_prompt(MATH) == build_prompt(MATH)


def test_render_chat_with_a_real_tokenizer():
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    pytest.importorskip("jinja2")  # transformers renders chat templates with it
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}" \
                        "{% if add_generation_prompt %}<assistant>{% endif %}"
    assert render_chat(tok, chat_messages(MATH, "bare")) == "<user>What is 2 + 2?\n<assistant>"
