"""PRM training: targets exactly at the tags (hand-checked), the loss by hand for hard and soft labels,
the truncation policy, bad records named, first-error F1 by table, micro-batch invariance, the tiny PRM's
loss falls and its directory carries verirl_prm.json, configs and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tasks.prm_format import PRMFormat, render_ids
from trainer.cli import main
from trainer.prm import (NO_TARGET, StepLikelihoodPRM, check_record, collate, encode, encode_all, first_error_f1,
                         predicted_first_error, prm_losses, tag_loss)
from trainer.prm_config import PRMConfig, load_prm_config
from trainer.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parents[2]
PRM_CONFIGS = sorted((ROOT / "configs").glob("prm_*.yaml"))
FMT = PRMFormat(kind="token_classification", step_tag="@", step_separator="\n", max_length=64)
# a few seconds of the demo config: small data, short chains
QUICK = ["data.num_problems=128", "eval.examples=32", "eval.batch_size=32", "batch_size=8", "micro_batch_size=8",
         "optim.warmup_steps=2"]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tiny_dir):
    from transformers import AutoModelForTokenClassification
    return AutoModelForTokenClassification.from_pretrained(tiny_dir, num_labels=2).eval()


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


def test_targets_only_at_the_tags(tok):
    """"ab" + "\\nc@" + "\\nde@": the labels sit on the two "@" and nowhere else."""
    record = {"prompt": "ab", "completions": ["c", "de"], "labels": [1, 0.25]}
    enc, lost = encode(record, tok, FMT, "error")
    assert lost == 0 and enc.ids == ids(tok, "ab\nc@\nde@") and enc.tags == [4, 8] and enc.first_error == 1
    assert (enc.ids, enc.tags) == render_ids(tok, FMT, "ab", ["c", "de"])  # the serving side's rendering
    other, _ = encode({"prompt": "x", "completions": ["y"], "labels": [False]}, tok, FMT, "error")
    batch = collate([enc, other], pad_id=tok.pad_token_id)
    N = NO_TARGET
    assert batch.targets.tolist() == [[N, N, N, N, 1.0, N, N, N, 0.25], [N, N, N, 0.0, N, N, N, N, N]]
    assert batch.attention_mask.tolist() == [[1] * 9, [1] * 4 + [0] * 5]
    assert batch.input_ids[1].tolist() == ids(tok, "x\ny@") + [tok.pad_token_id] * 5


def test_tag_loss_is_soft_cross_entropy_at_tags(tok, model):
    """By hand: -(y log p1 + (1-y) log p0) at each tag, summed; hard and soft labels alike."""
    enc, _ = encode({"prompt": "Q?", "completions": ["1 + 2 = 3", "#### 4"], "labels": [1.0, 0.3]}, tok, FMT, "error")
    batch = collate([enc], tok.pad_token_id)
    with torch.no_grad():
        loss, n = tag_loss(model, batch)
        logp = model(input_ids=torch.tensor([enc.ids])).logits[0].log_softmax(-1)  # [L, 2]
    expected = -(1.0 * logp[enc.tags[0], 1] + 0.3 * logp[enc.tags[1], 1] + 0.7 * logp[enc.tags[1], 0])
    assert n == 2 and float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_truncation_is_an_error_or_an_explicit_counted_choice(tok, capsys):
    fmt = PRMFormat(kind="token_classification", step_tag="@", step_separator="\n", max_length=12)
    long = {"prompt": "abc", "completions": ["1234", "5678", "9"], "labels": [1, 1, 0]}  # 3+6+6+3 = 18 tokens
    short = {"prompt": "a", "completions": ["b"], "labels": [1]}
    with pytest.raises(ValueError, match=r"train record 1: 18 tokens > data\.max_length=12"):
        encode_all([short, long], tok, fmt, "error", "train")
    kept, counts = encode_all([short, long], tok, fmt, "drop_example", "train")
    assert len(kept) == 1 and counts == {"train_dropped_examples": 1, "train_dropped_labels": 3}
    kept, counts = encode_all([long], tok, fmt, "keep_prefix", "train")
    assert counts == {"train_dropped_examples": 0, "train_dropped_labels": 2}
    assert kept[0].ids == ids(tok, "abc\n1234@") and kept[0].tags == [8] and kept[0].labels == [1.0]
    kept, counts = encode_all([{"prompt": "a" * 20, "completions": ["b"], "labels": [1]}], tok, fmt, "keep_prefix", "t")
    assert kept == [] and counts == {"t_dropped_examples": 1, "t_dropped_labels": 1}
    assert "left out 1 chains and 1 step labels" in capsys.readouterr().err


@pytest.mark.parametrize("record, field", [
    ({"completions": ["a"], "labels": [1]}, "'prompt'"),
    ({"prompt": "p", "completions": ["a", "b"], "labels": [1]}, "one label per step"),
    ({"prompt": "p", "completions": [], "labels": []}, "one label per step"),
    ({"prompt": "p", "completions": ["a"], "labels": [1.5]}, "in \\[0, 1\\]"),
    ({"prompt": "p", "completions": ["a"], "labels": ["yes"]}, "'labels'"),
    ({"prompt": "p", "completions": "a", "labels": [1]}, "'completions'"),
])
def test_bad_records_name_the_field(record, field):
    with pytest.raises(ValueError, match=field):
        check_record(record, "row 3")


@pytest.mark.parametrize("predicted, labelled, err, ok", [
    ([1, -1, 0, -1], [1, -1, 0, -1], 1.0, 1.0),
    ([1, 0, 2, -1], [1, -1, 0, -1], 0.5, 0.5),    # one error found, one misplaced; one false alarm
    ([-1, -1], [0, -1], 0.0, 1.0),                # never flags: F1 0
])
def test_first_error_f1(predicted, labelled, err, ok):
    scores = first_error_f1(predicted, labelled)
    f1 = 2 * err * ok / (err + ok) if err + ok else 0.0
    assert (scores["acc_erroneous"], scores["acc_correct"], scores["f1"]) == pytest.approx((err, ok, f1))


def test_predicted_first_error_uses_the_threshold():
    assert predicted_first_error([0.9, 0.4, 0.1], 0.5) == 1
    assert predicted_first_error([0.9, 0.4, 0.1], 0.3) == 2
    assert predicted_first_error([0.9, 0.6], 0.5) == -1


def test_gradient_does_not_depend_on_micro_batch(tok, tiny_dir):
    from transformers import AutoModelForTokenClassification
    chains = [encode({"prompt": f"Q{i}?", "completions": ["1 + 2 = 3"] * (i % 3 + 1) + ["#### 3"],
                      "labels": [1.0] * (i % 3 + 1) + [i / 6]}, tok, FMT, "error")[0] for i in range(6)]

    def grads(micro: int) -> list[torch.Tensor]:
        torch.manual_seed(0)  # the same random head in both models
        m = AutoModelForTokenClassification.from_pretrained(tiny_dir, num_labels=2)
        tags = sum(len(c.tags) for c in chains)
        for s in range(0, len(chains), micro):
            (tag_loss(m, collate(chains[s:s + micro], tok.pad_token_id))[0] / tags).backward()
        return [p.grad.clone() for p in m.parameters()]

    for g1, g6 in zip(grads(1), grads(6)):
        torch.testing.assert_close(g1, g6, rtol=1e-4, atol=1e-6)


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """A few steps on synthetic chains (the demo config, small)."""
    from trainer.prm import train
    out = tmp_path_factory.mktemp("prm")
    return out, train(load_prm_config(ROOT / "configs/prm_demo.yaml",
                                      QUICK + ["steps=12", "eval.every=0", "optim.lr=3e-3", f"out_dir={out}"]))


def test_loss_falls_and_the_result_is_a_prm_directory(trained):
    """The training loss falls, weights change, and the final directory is a token-classification model
    with the verirl_prm.json the service reads."""
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification
    out, result = trained
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == list(range(13))
    assert metrics[0]["train_chains"] == 128 and metrics[0]["train_dropped_examples"] == 0
    first, last = sum(m["loss"] for m in metrics[1:4]) / 3, sum(m["loss"] for m in metrics[-3:]) / 3
    assert last < first - 0.02, (first, last)
    assert result["eval_history"][-1]["step"] == 12 and 0 <= result["eval_f1"] <= 1
    model_dir = Path(result["model_dir"])
    fmt = PRMFormat.load(model_dir)
    assert (fmt.kind, fmt.step_tag, fmt.step_separator, fmt.correct_label, fmt.max_length) == \
        ("token_classification", "@", "\n", 1, 256)
    prm = AutoModelForTokenClassification.from_pretrained(model_dir)
    assert prm.config.num_labels == 2 and prm.config.id2label[1] == "correct"
    before, after = load_file(out / "tiny_model/model.safetensors"), load_file(model_dir / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)


def test_the_service_serves_the_trained_prm_with_the_trainers_scores(trained, tok):
    """`verirl serve --prm DIR`'s server (real gRPC, port 0) gives the step scores the trainer computes."""
    from transformers import AutoModelForTokenClassification

    from tasks.corruptions import step_chains
    from tasks.synthetic import SyntheticConfig, generate
    from trainer.prm import step_probabilities
    from verifier_service.client import VerifierClient
    from verifier_service.config import ServerConfig
    from verifier_service.prm.config import PRMConfig as ServedPRM
    from verifier_service.server import create_server
    model_dir = Path(trained[1]["model_dir"])
    fmt = PRMFormat.load(model_dir)
    chains = step_chains(generate(6, split="heldout", seed=1, config=SyntheticConfig(max_value=30)), seed=1)
    encoded = [encode({"prompt": c.problem, "completions": list(c.steps), "labels": c.labels()}, tok, fmt,
                      "error")[0] for c in chains]
    local, _ = step_probabilities(AutoModelForTokenClassification.from_pretrained(model_dir), encoded,
                                  tok.pad_token_id, 4, "cpu")
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1,
                                              prm=ServedPRM(dir=str(model_dir), device="cpu")))
    try:
        with VerifierClient(f"127.0.0.1:{port}") as client:
            served = client.score_steps([{"id": str(i), "problem": c.problem, "steps": list(c.steps)}
                                         for i, c in enumerate(chains)])
    finally:
        server.stop(0)
    assert_served_like_local(served, local)


def assert_served_like_local(served, local) -> None:
    """Every chain judged by the server, with the trainer's own step probabilities and their min."""
    assert all(r.judged for r in served), served[:2]
    for r, mine in zip(served, local):
        assert list(r.step_scores) == pytest.approx(mine, abs=1e-4)
        assert r.score == pytest.approx(min(mine), abs=1e-4)  # default_aggregation: min


def test_jsonl_records_with_soft_labels(tmp_path):
    rows = [{"prompt": f"Ann has {i}.", "completions": [f"{i} + 1 = {i + 1}", f"#### {i + 1}"],
             "labels": [1.0, round(i / 20, 2)]} for i in range(20)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from trainer.prm import train
    train(load_prm_config(None, ["steps=2", "batch_size=4", "micro_batch_size=2", "eval.examples=5",
                                 "data.source=jsonl", f"data.path={path}", f"out_dir={tmp_path / 'out'}"]))
    first = read_metrics(tmp_path / "out")[0]
    assert (first["train_chains"], first["eval_chains"]) == (15, 5)
    # held-out first errors come from the labels (< 0.5): records i < 10 have one at step 1
    assert first["eval_erroneous_chains"] + first["eval_correct_chains"] == 5


@pytest.mark.parametrize("path", PRM_CONFIGS, ids=lambda p: p.name)
def test_shipped_prm_config_loads(path):
    cfg = load_prm_config(path)
    assert isinstance(cfg, PRMConfig) and cfg.data.source == "synthetic" and cfg.model.tiny


def test_prm_config_overrides_and_errors():
    cfg = load_prm_config(ROOT / "configs/prm_demo.yaml", ["steps=7", "data.truncation=keep_prefix"])
    assert (cfg.steps, cfg.data.truncation) == (7, "keep_prefix")
    for override, message in [("data.truncatoin=error", "data.truncatoin"), ("data.truncation=cut", "data.truncation"),
                              ("data.source=parquet", "data.source"), ("steps=0", "steps"),
                              ("data.source=jsonl", "data.path"), ("eval.threshold=1.5", "threshold"),
                              ("format.default_aggregation=max", "format.default_aggregation"),
                              ("data.source=math_shepherd", "shepherd.policy"),
                              ("shepherd.labels=medium", "shepherd.labels"),
                              ("data.error_kinds=[typo]", "data.error_kinds")]:
        with pytest.raises(ValueError, match=message.replace(".", r"\.")):
            load_prm_config(ROOT / "configs/prm_demo.yaml", [override])


def test_cli_print_config_and_error(capsys):
    config = str(ROOT / "configs/prm_demo.yaml")
    assert main(["prm", "--config", config, "steps=7", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] == 7 and printed["format"]["step_tag"] == "@"
    assert main(["prm", "--config", config, "stepz=7"]) == 2
    assert "stepz" in capsys.readouterr().err


# ---------------------------------------------------------------- step_likelihood
SL = PRMFormat(kind="step_likelihood", step_tag="@", step_separator="\n", max_length=64)


def likelihood_model(tiny_dir, detach: bool = True) -> StepLikelihoodPRM:
    model = StepLikelihoodPRM.from_pretrained(tiny_dir, torch.float32, detach)
    with torch.no_grad():  # a head that reads every feature (a fresh one is all zeros)
        model.head.weight.copy_(torch.tensor([[-0.3, -0.2, -0.1, -0.2, -0.1, -0.05]]))
        model.head.bias.fill_(2.0)
    return model


def test_next_token_targets_are_the_right_steps_own_tokens_and_tags(tok):
    """"ab" + "\nc@" + "\nde@", step 0 right, step 1 wrong: the LM's targets are "c@" only (not the
    problem, not the separators, not the wrong step)."""
    enc, _ = encode({"prompt": "ab", "completions": ["c", "de"], "labels": [1, 0]}, tok, SL, "error")
    assert enc.spans == [(3, 4, 4), (6, 8, 8)]
    batch = collate([enc], tok.pad_token_id)
    assert batch.lm_mask[0].nonzero()[:, 0].tolist() == [3, 4]


def test_step_likelihood_losses_by_hand(tok, tiny_dir):
    """The tag loss is the cross-entropy of sigmoid(w . features + b), the features computed by hand from
    the LM's full-vocabulary NLLs; the next-token loss sums the NLLs of the right steps' tokens."""
    from transformers import AutoModelForCausalLM
    model = likelihood_model(tiny_dir)
    enc, _ = encode({"prompt": "Q?", "completions": ["1 + 2 = 3", "#### 4"], "labels": [1.0, 0.0]}, tok, SL, "error")
    with torch.no_grad():
        loss, n, lm, n_lm = prm_losses(model, collate([enc], tok.pad_token_id))
        logp = AutoModelForCausalLM.from_pretrained(tiny_dir)(torch.tensor([enc.ids])).logits[0].log_softmax(-1)
    nll = [0.0] + [-float(logp[t - 1, enc.ids[t]]) for t in range(1, len(enc.ids))]
    w, b = model.head.weight[0].tolist(), model.head.bias.item()
    running, expected = [0.0] * 3, 0.0
    for (start, tag_start, tag), y in zip(enc.spans, enc.labels):
        f = [max(nll[start:tag_start]), sum(nll[start:tag_start]) / (tag_start - start), sum(nll[tag_start:tag + 1])]
        running = [max(x, r) for x, r in zip(f, running)]
        p = torch.sigmoid(torch.tensor(sum(wi * x for wi, x in zip(w, f + running)) + b))
        expected -= y * float(p.log()) + (1 - y) * float((1 - p).log())
    start, _, tag = enc.spans[0]
    assert (n, n_lm) == (2, tag + 1 - start)
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert float(lm) == pytest.approx(sum(nll[start:tag + 1]), rel=1e-4)


@pytest.mark.parametrize("detach", [True, False])
def test_step_likelihood_gradient_does_not_depend_on_micro_batch(tok, tiny_dir, detach):
    """Both losses, each divided by the whole batch's count, accumulated over micro-batches: the same
    gradients; with detached features the tag loss reaches the head only."""
    chains = [encode({"prompt": f"Q{i}?", "completions": ["1 + 2 = 3"] * (i % 3 + 1) + ["#### 3"],
                      "labels": [1.0] * (i % 3 + 1) + [float(i % 2)]}, tok, SL, "error")[0] for i in range(6)]
    tags = sum(len(c.tags) for c in chains)
    lm_tokens = int(collate(chains, tok.pad_token_id).lm_mask.sum())

    def grads(micro: int, lm_weight: float) -> list[torch.Tensor]:
        m = likelihood_model(tiny_dir, detach)
        for s in range(0, len(chains), micro):
            loss, _, lm, _ = prm_losses(m, collate(chains[s:s + micro], tok.pad_token_id))
            (loss / tags + lm_weight * lm / lm_tokens).backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in m.parameters()]

    for g1, g6 in zip(grads(1, 1.0), grads(6, 1.0)):
        torch.testing.assert_close(g1, g6, rtol=1e-4, atol=1e-6)
    tag_only = grads(6, 0.0)  # [LM parameters..., head weight, head bias]
    assert any(g.abs().sum() > 0 for g in tag_only[-2:])
    assert all(g.abs().sum() == 0 for g in tag_only[:-2]) == detach


@pytest.fixture(scope="module")
def trained_sl(tmp_path_factory) -> tuple[Path, dict]:
    """A few steps of the demo config (step_likelihood, small)."""
    from trainer.prm import train
    out = tmp_path_factory.mktemp("prm_sl")
    return out, train(load_prm_config(ROOT / "configs/prm_demo.yaml", QUICK + [
        "format.kind=step_likelihood", "steps=8", "eval.every=0", f"out_dir={out}"]))


def test_step_likelihood_result_is_a_served_prm_with_the_trainers_scores(trained_sl, tok):
    """The directory holds the LM, its head file and verirl_prm.json (kind step_likelihood); the LM's
    weights and the head changed; `verirl serve --prm DIR`'s server (real gRPC, port 0) gives the step
    scores the trainer computes, and its candidate scores equal those of the full chains."""
    from safetensors.torch import load_file

    from tasks.corruptions import step_chains
    from tasks.prm_format import HEAD_FILE, load_head
    from tasks.synthetic import SyntheticConfig, generate
    from trainer.prm import step_probabilities
    from verifier_service.client import VerifierClient
    from verifier_service.config import ServerConfig
    from verifier_service.prm.config import PRMConfig as ServedPRM
    from verifier_service.server import create_server
    out, result = trained_sl
    model_dir = Path(result["model_dir"])
    fmt = PRMFormat.load(model_dir)
    assert (fmt.kind, fmt.step_tag, fmt.step_separator) == ("step_likelihood", "@", "\n")
    assert (model_dir / HEAD_FILE).is_file() and load_head(model_dir)[0] != [0.0] * 6
    assert "lm_loss" in read_metrics(out)[-1]
    before, after = load_file(out / "tiny_model/model.safetensors"), load_file(model_dir / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    chains = step_chains(generate(6, split="heldout", seed=1, config=SyntheticConfig(max_value=12)), seed=1)
    encoded = [encode({"prompt": c.problem, "completions": list(c.steps), "labels": c.labels()}, tok, fmt,
                      "error")[0] for c in chains]
    local, _ = step_probabilities(StepLikelihoodPRM.from_pretrained(model_dir, torch.float32, True), encoded,
                                  tok.pad_token_id, 4, "cpu")
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1, sandbox="off",
                                              prm=ServedPRM(dir=str(model_dir), device="cpu")))
    try:
        with VerifierClient(f"127.0.0.1:{port}") as client:
            served = client.score_steps([{"id": str(i), "problem": c.problem, "steps": list(c.steps)}
                                         for i, c in enumerate(chains)])
            c = chains[0]
            [cands] = client.score_candidates([{"id": "c", "problem": c.problem, "prefix_steps": list(c.steps[:1]),
                                                "candidates": list(c.steps[1:2]) + ["#### 1", "3 + 4 = 7"]}])
            alone = [client.score_steps([{"id": "x", "problem": c.problem, "steps": [c.steps[0], step]}])[0]
                     .step_scores[-1] for step in list(c.steps[1:2]) + ["#### 1", "3 + 4 = 7"]]
    finally:
        server.stop(0)
    assert_served_like_local(served, local)
    assert cands.judged and list(cands.scores) == pytest.approx(alone, abs=1e-5)


def test_step_likelihood_training_raises_first_error_f1(tmp_path):
    """A short run learns to find first errors: chains whose right steps are a fixed phrase after a random
    problem text, a wrong step that phrase with one letter changed. The LM learns the phrase, the head
    learns that an unlikely letter means a wrong step, and held-out F1 goes from 0 (the fresh head says
    0.5 everywhere: no error flagged) to most of the way. It fails if a step's span took in the problem
    text (random letters: every step 0 would look wrong). The synthetic task itself needs minutes
    (docs/benchmarks.md)."""
    import random

    from trainer.prm import train
    rng = random.Random(0)
    phrase = "so far so good"

    def record() -> dict:
        steps, labels = [phrase] * rng.randint(1, 3), []
        wrong = rng.randrange(len(steps)) if rng.random() < 0.5 else -1
        if wrong >= 0:
            k = rng.randrange(len(phrase))
            steps[wrong] = phrase[:k] + rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != phrase[k]]) + \
                phrase[k + 1:]
        labels = [float(wrong == -1 or j < wrong) for j in range(len(steps))]
        problem = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(20)) + "?"
        return {"prompt": problem, "completions": steps, "labels": labels}

    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(record()) + "\n" for _ in range(400)))
    result = train(load_prm_config(None, [
        "format.kind=step_likelihood", "data.source=jsonl", f"data.path={path}", "eval.examples=100",
        "steps=60", "batch_size=16", "micro_batch_size=16", "eval.every=0", "optim.lr=3e-3",
        "optim.warmup_steps=5", f"out_dir={tmp_path / 'out'}"]))
    first, last = result["eval_history"][0], result["eval_history"][-1]
    assert first["eval_f1"] == 0.0
    assert last["eval_f1"] > 0.6, last


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(tmp_path):
    """Stop at step 3 of 6 (a checkpoint), resume in a new directory: steps 4-6 give the same losses,
    eval scores and weights as the uninterrupted run; the checkpoint's model is a servable PRM."""
    from safetensors.torch import load_file

    from trainer.prm import train
    common = QUICK + ["steps=6", "eval.every=3", "checkpoint_every=3", "batch_size=4", "micro_batch_size=3"]
    train(load_prm_config(ROOT / "configs/prm_demo.yaml", common + [f"out_dir={tmp_path / 'full'}"]))
    assert PRMFormat.load(tmp_path / "full/checkpoint-3/model").kind == "token_classification"
    train(load_prm_config(ROOT / "configs/prm_demo.yaml", common + [
        f"out_dir={tmp_path / 'resumed'}", f"resume={tmp_path / 'full' / 'checkpoint-3'}"]))
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "resumed")
    assert [m["step"] for m in resumed] == [4, 5, 6]
    for a, b in zip(full[4:], resumed):
        for key in ("loss", "lr", "tags", "eval_loss", "eval_f1"):
            assert (key in a) == (key in b)
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    w_full = load_file(tmp_path / "full/final/model/model.safetensors")
    w_resumed = load_file(tmp_path / "resumed/final/model/model.safetensors")
    for k in w_full:
        torch.testing.assert_close(w_resumed[k], w_full[k], rtol=1e-5, atol=1e-6)
