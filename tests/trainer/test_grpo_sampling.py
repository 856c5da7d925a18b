"""The GRPO step's sampling side: bucketed weight copies, generation overlapped with scoring (a real
verifier server), dynamic sampling, the metric sinks (JSONL, TensorBoard, progress callback) and
`verirl plot` on a real run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tasks.types import Problem
from trainer.config import load_config
from trainer.grpo import _draw_count
from trainer.rewards import RewardSettings, merge_scored, score_completions
from trainer.rollout import SamplingConfig, engine_class
from trainer.rollout.pipeline import chunk_bounds, generate_and_score
from trainer.rollout.vllm_engine import bucketed_weights, weight_buckets

ROOT = Path(__file__).resolve().parents[2]


def tiny(tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32), AutoTokenizer.from_pretrained(tiny_dir)


@pytest.mark.parametrize("sizes, limit, expected", [
    ([("a", 4), ("b", 4), ("c", 4)], 8, [["a", "b"], ["c"]]),
    ([("a", 4), ("b", 4), ("c", 4)], 100, [["a", "b", "c"]]),
    ([("a", 10), ("b", 1), ("c", 10)], 8, [["a"], ["b"], ["c"]]),  # too big for any bucket: alone
    ([("a", 3), ("b", 9), ("c", 3), ("d", 3)], 8, [["a"], ["b"], ["c", "d"]]),
    ([], 8, []),
])
def test_weight_buckets_table(sizes, limit, expected):
    assert weight_buckets(sizes, limit) == expected


def test_bucketed_weights_convert_one_bucket_at_a_time(tiny_dir):
    model, _ = tiny(tiny_dir)
    state = model.state_dict()
    limit = 64 * 1024
    stats: dict[str, int] = {}
    pairs = list(bucketed_weights(model, limit, torch.bfloat16, "cpu", stats))
    assert [n for n, _ in pairs] == list(state)  # every tensor, in order, once
    for name, t in pairs:
        assert t.dtype == torch.bfloat16 and torch.equal(t, state[name].to(torch.bfloat16))
    biggest = max(t.numel() * 2 for t in state.values())
    assert stats["buckets"] > 3 and stats["largest_bucket_bytes"] <= max(limit, biggest)


def test_chunk_bounds():
    assert chunk_bounds(5, 2) == [(0, 2), (2, 5)]
    assert chunk_bounds(2, 4) == [(0, 1), (1, 2)]
    assert chunk_bounds(6, 1) == [(0, 6)]


@pytest.mark.parametrize("B, useful, drawn, expected", [(8, 0, 8, 8), (8, 2, 8, 8), (8, 4, 8, 8), (8, 6, 16, 6),
                                                        (8, 7, 8, 2), (8, 1, 8, 8)])
def test_dynamic_sampling_draw_count(B, useful, drawn, expected):
    assert _draw_count(B, useful, drawn) == expected


def test_generate_and_score_in_chunks_equals_one_call(tiny_dir, verifier_address):
    """Three chunks scored as they finish give the rewards of scoring everything at once."""
    from verifier_service.client import VerifierClient
    model, tokenizer = tiny(tiny_dir)
    engine = engine_class("hf")(model, tokenizer)
    problems = [Problem(id=f"p{i}", prompt=f"Q{i}\n", gold=str(i)) for i in range(5)]
    settings = RewardSettings(math=1.0)
    with VerifierClient(verifier_address) as client:
        calls = []

        def score(start, part):
            calls.append((start, len(part)))
            return score_completions(client, [problems[start + b] for b, g in enumerate(part) for _ in g.completions],
                                     [c.text for g in part for c in g.completions], settings)

        groups, parts, timing = generate_and_score(engine, [p.prompt for p in problems], 4,
                                                   SamplingConfig(max_tokens=4, seed=3), score, chunks=3)
        whole = score_completions(client, [p for p in problems for _ in range(4)],
                                  [c.text for g in groups for c in g.completions], settings)
    assert calls == [(0, 1), (1, 2), (3, 2)] and timing.chunks == 3
    assert [g.prompt for g in groups] == [p.prompt for p in problems]
    merged = merge_scored(parts)
    assert merged.rewards == whole.rewards and merged.valid == whole.valid
    assert merged.statuses == whole.statuses and merged.judged_counts == whole.judged_counts == {"math": 20}
    assert merged.check_means["math"] == pytest.approx(whole.check_means["math"])
    assert timing.generate > 0 and timing.reward_busy > 0 and 0 <= timing.reward_wait <= timing.reward_busy + 1e-3


def test_hf_engine_stops_at_stop_strings(tiny_dir):
    """Stop strings end a completion: text cut before the stop string, its tokens kept (as vLLM does)."""
    model, tokenizer = tiny(tiny_dir)
    engine = engine_class("hf")(model, tokenizer)
    groups = engine.generate(["Ann has 12 apples.\n", "x"], 8, SamplingConfig(max_tokens=24, seed=1, stop=("\n", " ")))
    completions = [c for g in groups for c in g.completions]
    at_stop = 0
    for c in completions:
        assert "\n" not in c.text and " " not in c.text and len(c.logprobs) == len(c.token_ids)
        decoded = tokenizer.decode(c.token_ids, skip_special_tokens=True)
        if c.finish_reason == "stop" and c.token_ids[-1] != tokenizer.eos_token_id:
            assert decoded == c.text + decoded[len(c.text)] and decoded[-1] in "\n "
            at_stop += 1
    assert at_stop >= 2  # seeded: several samples did stop at a stop string


def test_dynamic_sampling_logging_and_plot(tmp_path, verifier_address):
    """A random policy rarely answers '7', so most groups have zero variance: dynamic sampling draws
    more prompts (logged), the metrics reach metrics.jsonl, TensorBoard and the on_step callback (which
    ends the run early), and `verirl plot` draws the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from trainer.grpo import train
    from verifier_service.cli import main as verirl
    data = tmp_path / "seven.jsonl"
    data.write_text("".join(json.dumps(Problem(id=f"q{i}", prompt=f"Question {i}: which number?\n", gold="7").to_dict())
                            + "\n" for i in range(64)))
    out = tmp_path / "run"
    cfg = load_config(ROOT / "configs/demo.yaml", [
        "steps=3", "rollout.engine=hf", f"out_dir={out}", f"data.path={data}", "data.source=jsonl",
        f"reward.address={verifier_address}", "rollout.max_tokens=1", "rollout.prompts_per_step=4",
        "rollout.group_size=8", "rollout.score_chunks=2", "algo.dynamic_sampling=true", "algo.max_sampling_rounds=2",
        "log.tensorboard=true", "log.progress=false", "optim.lr=1e-2"])
    seen = []

    def on_step(step, metrics, policy):
        seen.append((step, metrics["reward_mean"]))
        return step == 2  # ends the run after step 2 of 3

    result = train(cfg, on_step=on_step)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s for s, _ in seen] == [1, 2] and [r for _, r in seen] == [m["reward_mean"] for m in rows]
    assert result["step"] == 2 and (out / "checkpoint-2-final" / "model").is_dir()
    first = rows[0]
    assert first["sampling_rounds"] > 1 and first["prompts_sampled"] > 4
    assert first["completions"] == 4 * 8  # the batch keeps its size: useful groups first, then zero ones
    assert first["zero_std_groups_sampled"] >= first["zero_std_groups"]
    assert first["reward_mean_sampled"] <= first["reward_mean"]  # the set-aside groups were all wrong
    assert first["kept"] == 8 * (4 - first["zero_std_groups"])
    assert set(first["seconds"]) >= {"generate", "reward", "reward_busy", "logprobs", "update", "total"}
    assert 0 <= first["reward_overlap_fraction"] <= 1
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("reward_mean")] == [1, 2]
    assert [e.value for e in events.Scalars("reward_mean")] == pytest.approx([m["reward_mean"] for m in rows])
    assert "seconds/generate" in events.Tags()["scalars"]
    assert verirl(["plot", str(out)]) == 0
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert math.isfinite(rows[-1]["reward_mean"])


def test_plot_refuses_a_directory_without_metrics(tmp_path, capsys):
    from trainer.plot import main
    assert main([str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize("overrides, message", [
    (["rollout.sampler=beam"], "rollout.sampler"),
    (["rollout.sampler=prm_steps"], "reward.address"),
    (["rollout.score_chunks=0"], "rollout.score_chunks"),
    (["algo.max_sampling_rounds=-1"], "algo.max_sampling_rounds"),
    (["log.tensorbord=true"], "log.tensorbord"),
    (["step_sampler.candidates=0"], "step_sampler"),
])
def test_new_config_keys_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(ROOT / "configs/demo.yaml", overrides)


def test_flatten_scalars_and_json_line():
    from trainer.logging_sinks import flatten_scalars, json_line
    metrics = {"step": 3, "loss": float("nan"), "seconds": {"generate": 1.5, "reward": 0}, "ok": True,
               "statuses": {"math": {"CORRECT": 2}}, "note": "x"}
    assert flatten_scalars(metrics) == {"step": 3.0, "seconds/generate": 1.5, "seconds/reward": 0.0,
                                        "statuses/math/CORRECT": 2.0}
    assert json.loads(json_line(metrics))["loss"] is None


def test_a_sink_asked_for_but_missing_is_an_error(tmp_path, monkeypatch):
    import sys

    from trainer.logging_sinks import LogConfig, MetricSinks
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as if not installed, wherever this runs
    with pytest.raises(RuntimeError, match="pip install wandb"):
        MetricSinks(tmp_path, LogConfig(wandb=True, progress=False), total_steps=1)
