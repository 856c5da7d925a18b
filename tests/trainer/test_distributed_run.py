"""`torchrun --nproc_per_node 2 -m trainer.cli grpo` on the CPU (gloo): a 2-step tiny GRPO run with
rewards from a real verifier server, the one rank 0 starts (reward.address empty) and whose address
it sends to rank 1, and a KL reference model. Only rank 0 writes metrics and checkpoints; metrics count the global batch; the
checkpoint (gathered from the shards) loads as a plain transformers model with moved weights. The same
with a vLLM engine on every rank."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tasks.types import Problem

ROOT = Path(__file__).resolve().parents[2]
PROMPTS, GROUP = 4, 32  # one-token answers to "7": with 32 samples a group, some group has signal (seeded)


def torchrun(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "trainer.cli", "grpo", "--config", str(ROOT / "configs/demo.yaml"),
            "steps=2", "rollout.engine=hf", f"out_dir={out}", "data.source=jsonl", f"data.path={data}",
            "data.prompt_style=bare", "rollout.max_tokens=1", f"rollout.prompts_per_step={PROMPTS}",
            f"rollout.group_size={GROUP}", "optim.lr=1e-2", "algo.mini_batches=2", "algo.micro_batch_size=16",
            "reward.server_math_workers=1", "log.progress=false", "checkpoint_every=1",
            "algo.beta=0.04", *extra]  # beta > 0: a (replicated) reference model and the KL term
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_two_steps_and_resume(tmp_path):
    """Two steps; then the run resumed from its step-1 checkpoint (under torchrun: the optimizer state
    is re-sharded from the full state dict) ends with the same step-2 metrics and weights."""
    from safetensors.torch import load_file
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(Problem(id=f"q{i}", prompt=f"Question {i}: which number?\n",
                                               gold="7").to_dict()) + "\n" for i in range(16)))
    out = tmp_path / "run"
    proc = torchrun(data, out)
    results = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1  # rank 0 alone prints the (global) result
    printed = json.loads(results[0])
    assert printed["step"] == 2

    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]  # rank 0 alone wrote
    for m in metrics:
        assert m["world_size"] == 2 and m["completions"] == PROMPTS * GROUP
        assert sum(m["statuses"]["math"].values()) == PROMPTS * GROUP  # both ranks' completions were judged
        assert 0 <= m["reward_mean"] <= 1 and m["unjudged"] == 0
    assert sum(m["kept"] for m in metrics) > 0
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) for m in metrics if m["kept"])
    assert all(math.isfinite(m["kl"]) and m["kl"] >= 0 for m in metrics if m["kept"])
    assert printed["reward_history"] == [m["reward_mean"] for m in metrics]

    before = load_file(out / "tiny_model" / "model.safetensors")
    from transformers import AutoModelForCausalLM
    final = out / "checkpoint-2-final"
    after = AutoModelForCausalLM.from_pretrained(final / "model").state_dict()
    assert before.keys() <= after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (out / "checkpoint-1" / "model" / "model.safetensors").exists()
    blob = torch.load(final / "recipe_state.pt", weights_only=False)
    assert blob["step"] == 2 and blob["data_position"] == 2 * PROMPTS
    assert blob["optimizer"]["state"]  # the full optimizer state, gathered from both ranks

    resumed = tmp_path / "resumed"
    torchrun(data, resumed, f"resume={out / 'checkpoint-1'}")
    again = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in again] == [2]
    assert metrics[1]["kept"] > 0  # step 2 updates the weights (seeded), so equal weights say something
    for key in ("reward_mean", "loss", "grad_norm", "kept", "statuses"):
        assert again[0][key] == metrics[1][key], key
    end = load_file(resumed / "checkpoint-2-final" / "model" / "model.safetensors")
    assert all(torch.equal(end[k], v) for k, v in load_file(final / "model" / "model.safetensors").items())


@pytest.mark.slow
@pytest.mark.parametrize("tensor_parallel", [1, 2])
def test_torchrun_vllm_engines(tmp_path, tensor_parallel):
    """rollout.engine=vllm under torchrun (vLLM's external launcher): an engine per rank, or one engine
    sharded over both ranks (tensor parallel 2: each rank gets its own prompts' groups). After each
    optimizer step the engines get the new weights, gathered from the shards: the importance weights
    of step 2 stay at 1 (without the sync they were 0.95 here)."""
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(Problem(id=f"q{i}", prompt=f"Question {i}: which number?\n",
                                               gold="7").to_dict()) + "\n" for i in range(16)))
    out = tmp_path / "run"
    torchrun(data, out, "rollout.engine=vllm", "rollout.vllm_dtype=float32",
             f"rollout.vllm_tensor_parallel={tensor_parallel}")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert m["world_size"] == 2 and m["completions"] == PROMPTS * GROUP
        assert sum(m["statuses"]["math"].values()) == PROMPTS * GROUP and m["unjudged"] == 0
        assert m["seconds"]["weight_sync"] > 0
    assert metrics[0]["kept"] > 0  # step 1 moved the weights (seeded), so step 2 tells whether they were synced
    assert metrics[1]["kept"] > 0 and abs(metrics[1]["is_weight"] - 1) < 0.01
    assert (out / "checkpoint-2-final" / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_torchrun_dynamic_sampling_batch_std_and_compiled_layers(tmp_path):
    """algo.dynamic_sampling with the batch-std advantage under torchrun (trainer/distributed_sampling.py):
    groups of 2 one-token answers often have no signal, so the ranks sample extra rounds together;
    the data position advances by every prompt drawn, and every completion scored is counted once.
    The trainer's passes run through compiled decoder layers (algo.compile_layers) over the shards."""
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(Problem(id=f"q{i}", prompt=f"Question {i}: which number?\n",
                                               gold="7").to_dict()) + "\n" for i in range(64)))
    out = tmp_path / "run"
    torchrun(data, out, "rollout.group_size=2", "algo.dynamic_sampling=true", "algo.max_sampling_rounds=3",
             "algo.advantage=grpo_batch_std", "algo.mini_batches=1", "algo.compile_layers=true")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert m["completions"] == PROMPTS * 2  # the batch: prompts_per_step groups, split over the ranks
        assert m["prompts_sampled"] >= PROMPTS and m["prompts_sampled"] % 2 == 0
        assert sum(m["statuses"]["math"].values()) == m["prompts_sampled"] * 2  # all rounds, each once
        assert 1 <= m["sampling_rounds"] <= 4
        assert m["zero_std_groups_sampled"] <= m["prompts_sampled"]
    assert any(m["sampling_rounds"] > 1 for m in metrics)  # seeded: extra rounds happen in this run
    assert sum(m["kept"] for m in metrics) > 0 and all(math.isfinite(m["loss"]) for m in metrics if m["kept"])
    blob = torch.load(out / "checkpoint-2-final" / "recipe_state.pt", weights_only=False)
    assert blob["data_position"] == sum(m["prompts_sampled"] for m in metrics)


@pytest.mark.slow
def test_bench_fsdp_tiny_on_cpu_agrees(tmp_path):
    """bench/bench_fsdp.py's CPU check: one process and two gloo ranks give the same per-step losses,
    log-probs and gradients of the tiny fp32 model (so the GPU run compares like with like)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/bench_fsdp.py"), "--tiny", "--device", "cpu",
                           "--steps", "3", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert len(report["per_step"]["2"]["loss"]) == 3
    assert all(v < 1e-5 for v in report["max_rel_diff"].values()), report["max_rel_diff"]
    losses = report["per_step"]["1"]["loss"]
    assert losses[0] != losses[-1]  # the loss follows the weights, so agreeing is not trivial
    assert report["scaling_efficiency"] > 0


def _stop_worker(rank: int, port: int, data: str, out: str, address: str) -> None:
    """One rank of grpo.train under torchrun's environment; rank 1's on_step ends the run after step 1."""
    from trainer.config import load_config
    from trainer.grpo import train
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs/demo.yaml", [
        "steps=3", "rollout.engine=hf", f"out_dir={out}", "data.source=jsonl", f"data.path={data}",
        "data.prompt_style=bare", "rollout.max_tokens=1", "rollout.prompts_per_step=2", "rollout.group_size=4",
        f"reward.address={address}", "log.progress=false"])

    def on_step(step: int, metrics: dict, policy) -> bool:
        # the policy is usable here (parameters gathered): a forward on one rank only must not hang
        if rank == 1:
            policy(input_ids=torch.tensor([[5, 6, 7]]), use_cache=False)
        return rank == 1

    result = train(cfg, on_step=on_step)
    assert result["step"] == 1
    from trainer.distributed import leave
    leave(0)  # as a torchrun rank does (trainer/cli.py): interpreter teardown can abort a rank


@pytest.mark.slow
def test_on_step_on_any_rank_ends_the_run(tmp_path, verifier_address):
    """grpo.train hands over under WORLD_SIZE=2; `on_step` runs on every rank with the policy usable,
    and one rank's stop ends every rank's run (final checkpoint at step 1); rewards from
    `reward.address`, a server of this test process."""
    import socket

    import torch.multiprocessing as mp
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(Problem(id=f"q{i}", prompt=f"Q{i}?\n", gold="7").to_dict()) + "\n"
                            for i in range(4)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    mp.spawn(_stop_worker, args=(port, str(data), str(out), verifier_address), nprocs=2, join=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1]
    assert (out / "checkpoint-1-final" / "model" / "model.safetensors").exists()
    assert not (out / "checkpoint-2-final").exists()
