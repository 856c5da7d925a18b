"""The shared PRM input format: the config file round-trips, bad keys fail, tags land where the contract says."""

from __future__ import annotations

import pytest

from tasks.prm_format import (FORMAT_FILE, HEAD_FILE, STEP_FEATURES, PRMFormat, label_token_ids, load_head, render_ids,
                              render_spans, save_head)


class CharTokenizer:
    """One id per character (like trainer/tiny.py's tokenizer), enough to pin positions exactly."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


def test_roundtrip(tmp_path):
    fmt = PRMFormat(kind="causal_lm", step_tag=" ki", good_token="+", bad_token="-", max_length=512)
    assert fmt.save(tmp_path).name == FORMAT_FILE
    assert PRMFormat.load(tmp_path) == fmt


@pytest.mark.parametrize("data, word", [
    ({"kind": "token_classification", "step_tag": "x", "stepTag": "y"}, "unknown keys"),
    ({"kind": "regression", "step_tag": "x"}, "kind"),
    ({"kind": "token_classification"}, "missing"),
    ({"kind": "token_classification", "step_tag": ""}, "step_tag"),
    ({"kind": "token_classification", "step_tag": "x", "default_aggregation": "max"}, "default_aggregation"),
    ({"kind": "token_classification", "step_tag": "x", "max_length": 0}, "max_length"),
    ({"kind": "token_classification", "step_tag": "x", "correct_label": 2}, "correct_label"),
    ({"kind": "causal_lm", "step_tag": "x", "good_token": "+", "bad_token": "+"}, "good_token"),
])
def test_rejects(data, word):
    with pytest.raises(ValueError, match=word):
        PRMFormat.from_dict(data)


def test_render_ids_tags_at_last_tag_token():
    fmt = PRMFormat(kind="token_classification", step_tag="<t>", step_separator="|")
    ids, positions = render_ids(CharTokenizer(), fmt, "P", ["ab", "c"])
    assert "".join(map(chr, ids)) == "P|ab<t>|c<t>"
    assert positions == [6, 11]
    assert [chr(ids[p]) for p in positions] == [">", ">"]


def test_label_tokens_must_be_single():
    tok = CharTokenizer()
    assert label_token_ids(tok, PRMFormat(kind="causal_lm", step_tag="x")) == (ord("+"), ord("-"))
    with pytest.raises(ValueError, match="one token"):
        label_token_ids(tok, PRMFormat(kind="causal_lm", step_tag="x", good_token="ok"))


class MergingTokenizer(CharTokenizer):
    """One id per character, except that "|a" is one token (a merge across the separator)."""

    def __call__(self, text, add_special_tokens=False):
        ids, i = [], 0
        while i < len(text):
            if text.startswith("|a", i):
                ids.append(1000)
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return {"input_ids": ids}


def test_render_spans_own_tokens_exclude_problem_and_separator():
    """"P" + "|ab<t>" + "|c<t>": step 0's own tokens are "ab" (not the problem, not "|"), its tag "<t>"."""
    fmt = PRMFormat(kind="step_likelihood", step_tag="<t>", step_separator="|")
    ids, spans = render_spans(CharTokenizer(), fmt, "P", ["ab", "c"])
    assert spans == [(2, 4, 6), (8, 9, 11)]
    assert ["".join(map(chr, ids[a:b])) for a, b, _ in spans] == ["ab", "c"]
    assert (ids, [tag for _, _, tag in spans]) == render_ids(CharTokenizer(), fmt, "P", ["ab", "c"])
    # a merge across the separator: the whole piece counts as the step's own tokens
    ids, spans = render_spans(MergingTokenizer(), fmt, "P", ["ab", "c"])
    assert spans == [(1, 3, 5), (7, 8, 10)] and ids[1] == 1000


def test_step_likelihood_kind_and_head_round_trip(tmp_path):
    fmt = PRMFormat(kind="step_likelihood", step_tag="@", step_separator="\n", max_length=256)
    fmt.save(tmp_path)
    assert PRMFormat.load(tmp_path) == fmt
    with pytest.raises(ValueError, match=HEAD_FILE):
        load_head(tmp_path)
    weight = [-0.5, 0.25, -1.0, 0.0, 1e-3, -2.0]
    save_head(tmp_path, weight, 3.5)
    assert load_head(tmp_path) == (weight, 3.5)
    with pytest.raises(ValueError, match="6 weights"):
        save_head(tmp_path, weight[:5], 0.0)
    (tmp_path / HEAD_FILE).write_text('{"features": ["max_nll"], "weight": [1.0], "bias": 0.0}')
    with pytest.raises(ValueError, match="this version"):
        load_head(tmp_path)
    assert len(STEP_FEATURES) == 6


def test_render_spans_with_a_limit_stops_soon_after_it_and_is_exact_under_it():
    fmt = PRMFormat(kind="token_classification", step_tag="#", step_separator="|", max_length=512)
    tok = CharTokenizer()
    steps = [f"step {i} " * 5 for i in range(200)]
    whole = render_spans(tok, fmt, "P", steps)
    assert render_spans(tok, fmt, "P", steps, limit=len(whole[0])) == whole  # not over it: the same chain
    calls = []

    class Counting(CharTokenizer):
        def __call__(self, text, add_special_tokens=False):
            calls.append(text)
            return super().__call__(text, add_special_tokens)

    ids, spans = render_spans(Counting(), fmt, "P", steps, limit=100)
    assert 100 < len(ids) < len(whole[0]) and ids == whole[0][:len(ids)] and spans == whole[1][:len(spans)]
    assert len(calls) < 60  # the tag, the separator and one chunk of steps: not all 200
