"""PRM scoring without the server: aggregation, batching plan, format resolution, and the
offline PRMScorer against a plain forward pass of each kind of tiny random PRM."""

from __future__ import annotations

import math

import pytest

from prm_models import STEP_TAG, build_prm, require_torch
from tasks.prm_format import FORMAT_FILE, PRMFormat, likelihood_features, load_head, render_ids, render_spans
from verifier_service.prm import PRMConfig, aggregate, first_error, resolve_format
from verifier_service.prm.batching import padded_tokens, plan_batches

CHAINS = [
    ("What is 2+3?", ["2+3=5", "So the answer is 5."]),
    ("Solve x+1=3.", ["x = 3-1", "x = 2", "Check: 2+1=3", "Done."]),
    ("hi", ["a" * 80]),
    ("Count to three.", ["one", "two two", "three three three"]),
]


@pytest.mark.parametrize("name, scores, expected", [
    ("min", [0.9, 0.2, 0.7], 0.2),
    ("prod", [0.5, 0.5, 0.8], 0.2),
    ("last", [0.9, 0.2, 0.7], 0.7),
    ("mean", [0.9, 0.3, 0.6], 0.6),
    ("min", [0.4], 0.4),
    ("prod", [1.0, 1.0], 1.0),
])
def test_aggregation_table(name, scores, expected):
    assert math.isclose(aggregate(name, scores), expected)


@pytest.mark.parametrize("scores, threshold, expected", [
    ([0.9, 0.2, 0.1], 0.5, 1),
    ([0.9, 0.8], 0.5, -1),
    ([0.4, 0.9], 0.5, 0),
    ([0.5], 0.5, -1),       # "under" the threshold: equal is not an error
    ([0.1, 0.1], None, -1),
])
def test_first_error_table(scores, threshold, expected):
    assert first_error(scores, threshold) == expected


def test_plan_batches_sorts_and_respects_budget():
    lengths = [50, 3, 40, 7, 45, 5, 200]
    batches = plan_batches(lengths, budget=100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert padded_tokens([lengths[i] for i in batch]) <= 100 or len(batch) == 1
    assert batches[-1] == [6]                                  # over the budget: alone
    assert [lengths[i] for i in batches[0]] == [3, 5, 7]       # short rows together, not with long ones
    assert padded_tokens([lengths[i] for b in batches for i in b]) > sum(
        padded_tokens([lengths[i] for i in b]) for b in batches)  # less padding than one big batch


def test_resolve_format_overrides_and_context_cap(tmp_path):
    (tmp_path / "config.json").write_text('{"max_position_embeddings": 256}')
    PRMFormat(kind="causal_lm", step_tag=" ки", max_length=4096).save(tmp_path)
    fmt = resolve_format(PRMConfig(dir=str(tmp_path), good_token="Y", aggregation="prod"))
    assert (fmt.good_token, fmt.default_aggregation, fmt.max_length, fmt.step_tag) == ("Y", "prod", 256, " ки")


def test_resolve_format_without_file_needs_flags(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="--prm-kind"):
        resolve_format(PRMConfig(dir=str(tmp_path)))
    fmt = resolve_format(PRMConfig(dir=str(tmp_path), kind="token_classification", step_tag="<s>"))
    assert fmt.kind == "token_classification" and not (tmp_path / FORMAT_FILE).exists()


def test_prm_config_rejects_unknown_keys():
    from verifier_service.config import ServerConfig

    with pytest.raises(ValueError, match="unknown PRMConfig keys: tag"):
        PRMConfig.from_dict({"dir": "x", "tag": "y"})
    with pytest.raises(ValueError, match="unknown PRMConfig keys: tag"):
        ServerConfig.from_dict({"prm": {"dir": "x", "tag": "y"}})
    assert ServerConfig.from_dict({"prm": {"dir": "x", "timeout_s": 5}}).prm == PRMConfig(dir="x", timeout_s=5)
    with pytest.raises(ValueError, match="PRMConfig.batch_tokens"):
        PRMConfig(dir="x", batch_tokens=0)


# ---------------------------------------------------------------- against the model

@pytest.fixture(scope="module")
def prms(tmp_path_factory):
    require_torch()
    root = tmp_path_factory.mktemp("prm")
    return {"causal_lm": build_prm(root / "lm", "causal_lm", seed=1),
            "token_classification": build_prm(root / "tc", "token_classification", seed=2),
            "bradley_terry": build_prm(root / "bt", "token_classification", seed=3, num_labels=1),
            "step_likelihood": build_prm(root / "sl", "step_likelihood", seed=6)}


def _reference(directory, problem, steps):
    """P(correct) at the tags from a plain, unbatched forward pass of the whole model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

    fmt = PRMFormat.load(directory)
    tok = AutoTokenizer.from_pretrained(directory)  # the trainer's tokenizer: the server's ids must match it
    ids, positions = render_ids(tok, fmt, problem, steps)
    auto = AutoModelForTokenClassification if fmt.kind == "token_classification" else AutoModelForCausalLM
    model = auto.from_pretrained(directory).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]        # [T, V] or [T, L]
    if fmt.kind == "step_likelihood":
        return [torch.sigmoid(z).item() for z in _likelihood_logits(directory, tok, fmt, problem, steps, logits)]
    if fmt.kind == "causal_lm":
        good, bad = (tok(t, add_special_tokens=False)["input_ids"][0] for t in (fmt.good_token, fmt.bad_token))
        return [torch.softmax(logits[p][[good, bad]], -1)[0].item() for p in positions]
    if model.config.num_labels == 1:
        return [torch.sigmoid(logits[p][0]).item() for p in positions]
    return [torch.softmax(logits[p], -1)[fmt.correct_label].item() for p in positions]


def _likelihood_logits(directory, tok, fmt, problem, steps, logits):
    """The head's logit per step, by hand: every token's NLL from the full vocabulary, max and mean over
    exactly ids[start:tag_start], the tag's sum, running maxima, then w . f + b."""
    import torch

    ids, spans = render_spans(tok, fmt, problem, steps)
    nll = [0.0] + [-logits[t - 1].log_softmax(-1)[ids[t]].item() for t in range(1, len(ids))]
    weight, bias = load_head(directory)
    out, running = [], [0.0, 0.0, 0.0]
    for start, tag_start, tag in spans:
        own = nll[start:tag_start]
        f = [max(own), sum(own) / len(own), sum(nll[tag_start:tag + 1])]
        running = [max(a, b) for a, b in zip(running, f)]
        out.append(torch.tensor(sum(w * x for w, x in zip(weight, f + running)) + bias))
    return out


@pytest.mark.parametrize("kind", ["causal_lm", "token_classification", "bradley_terry", "step_likelihood"])
def test_scorer_batched_equals_plain_forward(prms, kind):
    from verifier_service.prm import PRMScorer

    scorer = PRMScorer(str(prms[kind]), device="cpu", batch_tokens=256)  # several padded passes
    got = scorer.score_many(CHAINS)
    for (problem, steps), scores in zip(CHAINS, got):
        assert len(scores) == len(steps)
        assert scores == pytest.approx(_reference(prms[kind], problem, steps), abs=1e-5)
        assert all(0 < s < 1 for s in scores)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["causal_lm", "token_classification"])
def test_compiled_scorer_equals_plain_forward(prms, kind):
    """`compile=True` (verirl serve --prm-compile): the same scores through the compiled forward, over
    passes of different shapes (one dynamic graph)."""
    from verifier_service.prm import PRMScorer

    scorer = PRMScorer(str(prms[kind]), device="cpu", batch_tokens=256, compile=True)
    for (problem, steps), scores in zip(CHAINS, scorer.score_many(CHAINS)):
        assert scores == pytest.approx(_reference(prms[kind], problem, steps), abs=1e-5)


@pytest.mark.parametrize("kind", ["causal_lm", "token_classification", "step_likelihood"])
def test_candidates_share_prefix_and_equal_full_chains(prms, kind):
    from verifier_service.prm import PRMScorer

    scorer = PRMScorer(str(prms[kind]), device="cpu")
    candidates = ["x = 2", "x = 4 because 3+1", "I give up."]
    got = scorer.score_candidates("Solve x+1=3.", ["x = 3-1"], candidates)
    alone = [scorer.score("Solve x+1=3.", ["x = 3-1", c])[-1] for c in candidates]
    assert got == pytest.approx(alone, abs=1e-5)


def test_server_tokenizer_matches_transformers(prms):
    """The server tokenizes with `tokenizers` alone (no torch in its process); the ids must equal
    what the trainer's AutoTokenizer gives for the same chain."""
    from transformers import AutoTokenizer

    from verifier_service.prm.text import load_tokenizer

    fmt = PRMFormat.load(prms["causal_lm"])
    fast, auto = load_tokenizer(prms["causal_lm"]), AutoTokenizer.from_pretrained(prms["causal_lm"])
    for problem, steps in CHAINS:
        assert render_ids(fast, fmt, problem, steps) == render_ids(auto, fmt, problem, steps)
    assert STEP_TAG in fmt.step_tag


def test_scorer_refuses_too_long(prms):
    from verifier_service.prm import PRMScorer

    scorer = PRMScorer(str(prms["causal_lm"]), device="cpu", max_length=40)
    with pytest.raises(ValueError, match="exceeds max_length 40"):
        scorer.score("p", ["a" * 60])


def test_step_likelihood_features_read_the_step_tokens_only(prms):
    """The features are the LM's NLLs of each step's own tokens (after the problem and the separator) and
    of its tag: a step whose one token the LM finds less likely gets a higher max NLL, changing step 1
    leaves step 0's features alone, and the running max covers both."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = prms["step_likelihood"]
    fmt = PRMFormat.load(directory)
    tok = AutoTokenizer.from_pretrained(directory)
    lm = AutoModelForCausalLM.from_pretrained(directory).eval()
    problem, first = "Ann has 5 pens.", "5 + 4 = 9"

    def token_nll(ids):
        with torch.no_grad():
            logp = lm(torch.tensor([ids])).logits[0].log_softmax(-1)                         # [T, V]
        return torch.nn.functional.pad(-logp[:-1].gather(-1, torch.tensor(ids[1:])[:, None])[:, 0], (1, 0))  # [T]

    ids, spans = render_spans(tok, fmt, problem, [first, "0"])
    assert spans[0][:2] == (len(problem + fmt.step_separator), len(problem + fmt.step_separator + first))
    digits = [tok(str(d))["input_ids"][0] for d in range(10)]
    with torch.no_grad():
        logp = lm(torch.tensor([ids[:spans[1][0]]])).logits[0, -1].log_softmax(-1)[digits]   # [10]
    likely, unlikely = str(int(logp.argmax())), str(int(logp.argmin()))
    assert likely != unlikely
    features = {}
    for digit in (likely, unlikely):
        ids, spans = render_spans(tok, fmt, problem, [first, digit])
        nll = token_nll(ids)
        features[digit] = likelihood_features(nll[None], [spans])                            # [2, 6]
        start, tag_start, tag = spans[1]
        assert features[digit][1, 0] == pytest.approx(float(nll[start]))                      # one own token
        assert features[digit][1, 2] == pytest.approx(float(nll[tag_start:tag + 1].sum()))
        assert features[digit][0, 0] == pytest.approx(float(nll[spans[0][0]:spans[0][1]].max()))
    assert torch.equal(features[likely][0], features[unlikely][0])
    assert features[unlikely][1, 0] > features[likely][1, 0]
    assert torch.equal(features[unlikely][1, 3:], torch.maximum(features[unlikely][0, :3], features[unlikely][1, :3]))
