"""SFT: labels exactly on completion tokens (hand-checked), packing keeps attention within examples,
chat and prompt/completion records, micro-batch invariance, the tiny model's eval loss falls, resume
changes nothing, the result loads as GRPO's policy, configs and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.cli import main
from trainer.sft import (IGNORE, Example, build_rows, collate, completion_nll, example_from_record, tokenize)
from trainer.sft_config import SFTConfig, load_sft_config
from trainer.tiny import build_tokenizer

ROOT = Path(__file__).resolve().parents[2]
SFT_CONFIGS = sorted((ROOT / "configs").glob("sft_*.yaml"))
# a few seconds of the demo config: small data, a short schedule, no greedy generation
QUICK = ["data.num_examples=256", "eval.examples=32", "eval.accuracy_problems=0", "batch_size=16",
         "micro_batch_size=16", "optim.warmup_steps=2"]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tiny_dir):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval()


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


def test_reloaded_tiny_tokenizer_keeps_spaces_and_newlines(tok, tiny_dir):
    """SFT (and GRPO, vLLM) load the tokenizer with AutoTokenizer, which gives a qwen2 directory a
    Qwen2Tokenizer: it must give the ids of the tokenizer built in memory, one per character."""
    from transformers import AutoTokenizer

    from trainer.tiny import CHARACTERS
    reloaded = AutoTokenizer.from_pretrained(tiny_dir)
    text = "<|im_start|>user\nAnn has 12 apples.\n19 - 5 = 14\n#### 14<|endoftext|>" + CHARACTERS
    assert ids(reloaded, text) == ids(tok, text) and len(ids(tok, text)) == len(text) - len("<|im_start|><|endoftext|>") + 2
    assert reloaded.decode(ids(reloaded, text)) == text == tok.decode(ids(tok, text))


def test_labels_are_exactly_the_completion_tokens(tok):
    a, b, c, d, x = (tok.convert_tokens_to_ids(ch) for ch in "abcdx")
    eos = tok.eos_token_id
    seg1 = tokenize(Example("ab", "cd"), tok)
    seg2 = tokenize(Example("x", "c"), tok)
    assert seg1 == ([a, b], [c, d, eos]) and seg2 == ([x], [c, eos])
    rows, dropped = build_rows([seg1, seg2], max_length=16, pack=True)
    assert dropped == 0 and rows == [[seg1, seg2]]
    batch = collate(rows + [[seg2]], pad_id=tok.pad_token_id)
    I = IGNORE
    assert batch.labels.tolist() == [[I, I, c, d, eos, I, c, eos], [I, c, eos, I, I, I, I, I]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3, 4]]
    assert batch.input_ids[1].tolist() == [x, c, eos] + [tok.pad_token_id] * 5


def test_loss_is_the_completion_tokens_nll(tok, model):
    """By hand: -log p(c | ab) - log p(d | abc) - log p(eos | abcd), over 3 tokens."""
    seg = tokenize(Example("ab", "cd"), tok)
    with torch.no_grad():
        nll, n = completion_nll(model, collate([[seg]], tok.pad_token_id))
        full = seg[0] + seg[1]
        logp = model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)   # [5, V]
    expected = -sum(float(logp[t - 1, full[t]]) for t in (2, 3, 4))
    assert n == 3 and float(nll) == pytest.approx(expected, rel=1e-5)


def test_packing_keeps_attention_within_examples(tok, model):
    """A packed row (and a padded batch) gives the same per-example losses as the examples alone."""
    segs = [tokenize(Example(p, c), tok) for p, c in [("Ann has 3.\n", "3 + 4 = 7"), ("Q?\n", "#### 12"),
                                                        ("Bob has 9 pens.\n", "9 - 2 = 7\n#### 7")]]
    with torch.no_grad():
        alone = [completion_nll(model, collate([[s]], tok.pad_token_id)) for s in segs]
        packed = completion_nll(model, collate([segs], tok.pad_token_id))
        padded = completion_nll(model, collate([[s] for s in segs], tok.pad_token_id))
    total, count = sum(float(x) for x, _ in alone), sum(n for _, n in alone)
    for nll, n in (packed, padded):
        assert n == count and float(nll) == pytest.approx(total, rel=1e-5)


def test_rows_drop_long_examples_and_pack_greedily():
    seg = lambda n: ([1], [2] * (n - 1))  # noqa: E731  an example of n tokens
    rows, dropped = build_rows([seg(3), seg(4), seg(9), seg(2), seg(5)], max_length=8, pack=True)
    assert dropped == 1 and [[len(p) + len(c) for p, c in r] for r in rows] == [[3, 4], [2, 5]]
    rows, _ = build_rows([seg(3), seg(4)], max_length=8, pack=False)
    assert len(rows) == 2


def test_records_prompt_completion_and_chat(tok):
    assert example_from_record({"prompt": "Q\n", "completion": "A"}, tok) == Example("Q\n", "A", True)
    chat = example_from_record({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                                             {"role": "assistant", "content": "A"}]}, tok)
    assert chat.prompt == "<|im_start|>system\nS<|endoftext|>\n<|im_start|>user\nQ<|endoftext|>\n<|im_start|>assistant\n"
    assert chat.completion == "A<|endoftext|>\n" and not chat.add_eos  # the template's turn end is the target
    prompt, completion = tokenize(chat, tok)
    assert completion == ids(tok, "A") + [tok.eos_token_id] + ids(tok, "\n")
    for bad in ({"messages": [{"role": "user", "content": "Q"}]}, {"question": "Q", "answer": "A"}):
        with pytest.raises(ValueError):
            example_from_record(bad, tok)


def test_gradient_does_not_depend_on_micro_batch(tok, tiny_dir):
    from transformers import AutoModelForCausalLM
    segs = [tokenize(Example(f"Q{i}?\n", "1 + 2 = 3\n" * (i % 3 + 1)), tok) for i in range(6)]
    rows = [[s] for s in segs]

    def grads(micro: int) -> list[torch.Tensor]:
        m = AutoModelForCausalLM.from_pretrained(tiny_dir)
        parts = [collate(rows[s:s + micro], tok.pad_token_id) for s in range(0, len(rows), micro)]
        tokens = sum(int((b.labels[:, 1:] != IGNORE).sum()) for b in parts)
        for b in parts:
            (completion_nll(m, b)[0] / tokens).backward()
        return [p.grad.clone() for p in m.parameters()]

    for g1, g6 in zip(grads(1), grads(6)):
        torch.testing.assert_close(g1, g6, rtol=1e-4, atol=1e-6)


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(path / "model.safetensors")


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sft_lowers_eval_loss_and_feeds_grpo(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.config import load_config
    from trainer.sft import train
    result = train(load_sft_config(ROOT / "configs/sft_demo.yaml",
                                   QUICK + ["steps=40", "eval.every=20", f"out_dir={tmp_path}"]))
    history = result["eval_history"]
    assert [h["step"] for h in history] == [0, 20, 40]
    assert history[0]["eval_loss"] > 4.0 and history[-1]["eval_loss"] < 0.6 * history[0]["eval_loss"], history
    metrics = read_metrics(tmp_path)
    assert [m["step"] for m in metrics] == list(range(41))
    model_dir = Path(result["model_dir"])
    before, after = weights(tmp_path / "tiny_model"), weights(model_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # GRPO's policy and reference: a transformers directory named by model.path
    cfg = load_config(ROOT / "configs/demo.yaml", ["model.tiny=false", f"model.path={model_dir}"])
    policy = AutoModelForCausalLM.from_pretrained(cfg.model.path)
    assert AutoTokenizer.from_pretrained(cfg.model.path).eos_token_id == policy.generation_config.eos_token_id


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(tmp_path):
    """Stop at step 3 of 6 (a checkpoint), resume in a new directory: steps 4-6 give the same losses,
    eval loss and weights as the uninterrupted run."""
    from trainer.sft import train
    common = QUICK + ["steps=6", "eval.every=3", "checkpoint_every=3", "data.pack=true", "batch_size=4",
                      "micro_batch_size=3"]
    train(load_sft_config(ROOT / "configs/sft_demo.yaml", common + [f"out_dir={tmp_path / 'full'}"]))
    train(load_sft_config(ROOT / "configs/sft_demo.yaml", common + [
        f"out_dir={tmp_path / 'resumed'}", f"resume={tmp_path / 'full' / 'checkpoint-3'}"]))
    full, resumed = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "resumed")
    assert [m["step"] for m in resumed] == [4, 5, 6]
    for a, b in zip(full[4:], resumed):
        for key in ("loss", "lr", "completion_tokens", "eval_loss"):
            assert (key in a) == (key in b)
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    w_full, w_resumed = weights(tmp_path / "full/final/model"), weights(tmp_path / "resumed/final/model")
    for k in w_full:
        torch.testing.assert_close(w_resumed[k], w_full[k], rtol=1e-5, atol=1e-6)


def test_jsonl_records_with_a_held_out_split(tmp_path):
    rows = [{"prompt": f"{i} + 1?\n", "completion": f"#### {i + 1}"} for i in range(10)]
    rows += [{"messages": [{"role": "user", "content": f"{i} + 2?"}, {"role": "assistant", "content": f"#### {i + 2}"}]}
             for i in range(10)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from trainer.sft import train
    result = train(load_sft_config(None, ["steps=2", "batch_size=4", "micro_batch_size=4", "eval.examples=5",
                                          "data.source=jsonl", f"data.path={path}", f"out_dir={tmp_path / 'out'}"]))
    first = read_metrics(tmp_path / "out")[0]
    assert (first["train_rows"], first["eval_rows"]) == (15, 5)
    assert Path(result["model_dir"], "model.safetensors").exists()


@pytest.mark.parametrize("path", SFT_CONFIGS, ids=lambda p: p.name)
def test_shipped_sft_config_loads(path):
    cfg = load_sft_config(path)
    assert isinstance(cfg, SFTConfig) and cfg.data.source == "synthetic" and cfg.model.tiny


def test_sft_config_overrides_and_errors():
    cfg = load_sft_config(ROOT / "configs/sft_demo.yaml", ["steps=7", "data.pack=true", "optim.lr=1e-4"])
    assert (cfg.steps, cfg.data.pack, cfg.optim.lr) == (7, True, 1e-4)
    assert SFT_CONFIGS and SFTConfig().optim.lr == 1e-5  # SFT's own optimizer defaults, not GRPO's
    for override, message in [("data.pakc=true", "data.pakc"), ("rollout.group_size=4", "rollout"),
                              ("data.source=parquet", "data.source"), ("steps=0", "steps"),
                              ("data.source=jsonl", "data.path"), ("eval.every=-1", "eval")]:
        with pytest.raises(ValueError, match=message.replace(".", r"\.")):
            load_sft_config(ROOT / "configs/sft_demo.yaml", [override])
    with pytest.raises(ValueError, match="accuracy_problems"):
        load_sft_config(ROOT / "configs/sft_demo.yaml", ["data.source=jsonl", "data.path=x.jsonl"])


def test_cli_print_config_and_error(capsys):
    config = str(ROOT / "configs/sft_demo.yaml")
    assert main(["sft", "--config", config, "steps=7", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] == 7 and printed["data"]["source"] == "synthetic"
    assert main(["sft", "--config", config, "stepz=7"]) == 2
    assert "stepz" in capsys.readouterr().err


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_early_answer_teacher(tok, fraction):
    """data.early_answer_fraction: multi-step problems get "first step, then its result as the answer"
    (wrong unless the chain happens to come back to that value); one-step problems keep their reference
    solution."""
    from tasks.synthetic import check_steps, split_solution
    from trainer.sft import _synthetic_problems, synthetic_examples
    cfg = load_sft_config(None, ["data.source=synthetic", "data.min_steps=1", "data.max_steps=3", "data.max_value=20",
                                 f"data.early_answer_fraction={fraction}"])
    problems = _synthetic_problems(cfg, 200, "train")
    examples = synthetic_examples(problems, cfg, tok)
    wrong = 0
    for p, ex in zip(problems, examples):
        steps = split_solution(ex.completion)
        multi = len(p.metadata["ops"]) > 1
        if fraction and multi:
            assert len(steps) == 2 and check_steps(p, steps)[0]
            assert steps[1] == f"#### {p.metadata['values'][1]}"
            wrong += steps[1] != f"#### {p.gold}"
        else:
            assert ex.completion == p.metadata["solution"]
    multi = sum(len(p.metadata["ops"]) > 1 for p in problems)
    assert multi > 100 and wrong >= (0.9 * multi if fraction else 0)
