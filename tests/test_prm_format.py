"""The shared PRM input format: the config file round-trips, bad keys fail, tags land where the contract says."""

from __future__ import annotations

import pytest

from tasks.prm_format import FORMAT_FILE, PRMFormat, label_token_ids, render_ids


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
