"""GRPO updates on one device against N devices (torchrun + FSDP2, trainer/distributed.py): the same
global batch, so losses and gradients must agree (within bf16 tolerance) and the step time says how
well the update scales.

Usage (the GPU run; NCCL_NVLS_ENABLE=0 is set for every process):
    .venv/bin/python bench/bench_fsdp.py --nproc 2 --steps 6 [--compile-layers] [--out docs/bench_fsdp.json]
Check on the CPU (gloo, a tiny fp32 model, seconds):
    .venv/bin/python bench/bench_fsdp.py --tiny --device cpu
The same random model as a directory, for a whole GRPO run under torchrun (generation included):
    .venv/bin/python bench/bench_fsdp.py --save-model /tmp/qwen2_05b_random

The model is a random Qwen2 with the shape of Qwen2-0.5B (hidden 896, 24 layers, 14 heads, 2 KV heads,
intermediate 4864, vocab 151936, tied embeddings) in bf16 on cuda; `--tiny` is hidden 128, 2 layers,
vocab 512, fp32. The rollout batch is synthetic and fixed (`--prompts` groups of `--group`, prompt and
completion lengths drawn up to `--prompt-len`/`--completion-len`, one advantage per completion), so
generation does not enter the timing. Each of `--steps` steps is what a GRPO step does after scoring:
old log-probs without a graph, then one optimizer step (AdamW) accumulated over micro-batches of
`--micro` rows (the ratio is taken to the first step's log-probs, as in later PPO epochs over one
batch, so that the loss moves with the weights), the loss divided by the batch's token total (DAPO's token aggregation), grad clipping.
With N processes every rank holds its share of whole groups (`--prompts` must divide by N).
`logp_mean` (each step's mean log-prob of the batch's tokens) tracks the weights of both runs. The
first step compares like with like (same weights); later steps add the drift of bf16 rounding
through AdamW (whose update is about lr per element whatever the gradient's size).

The single-device run and the N-process run are separate processes (this script with `--role
worker`); the parent compares them and prints one JSON object: per-step loss and grad norm of both,
their max relative difference, a first-step gradient fingerprint (per-parameter norms and random
projections, compared before any weights differ), the median step time after `--warmup` steps,
throughput, scaling efficiency T1 / (N * TN) and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off, before any process group exists

QWEN2_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True)
TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=256, vocab_size=512, tie_word_embeddings=True)


def build_model(args: argparse.Namespace, device: str):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    shape = TINY if args.tiny else QWEN2_05B
    config = Qwen2Config(**shape, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6)
    torch.manual_seed(args.seed)  # the same random weights in every process
    model = Qwen2ForCausalLM(config).to(dtype=getattr(torch, args.dtype), device=device)
    return model.train()


def build_rollouts(args: argparse.Namespace, vocab: int):
    """The fixed synthetic batch: Rollouts of prompts x group rows, and [rows, T] advantages."""
    import torch

    from trainer.grpo import collate
    from trainer.rollout import Completion, Group
    g = torch.Generator().manual_seed(args.seed + 1)
    groups, advantages = [], []
    for b in range(args.prompts):
        plen = int(torch.randint(args.prompt_len // 2, args.prompt_len + 1, (1,), generator=g))
        prompt = tuple(torch.randint(3, vocab, (plen,), generator=g).tolist())
        comps = []
        for _ in range(args.group):
            n = int(torch.randint(max(1, args.completion_len // 4), args.completion_len + 1, (1,), generator=g))
            comps.append(Completion(tuple(torch.randint(3, vocab, (n,), generator=g).tolist()), "",
                                    tuple([-1.0] * n), "stop"))
        groups.append(Group(f"p{b}", prompt, tuple(comps)))
        rewards = torch.randn(args.group, generator=g)
        advantages.append((rewards - rewards.mean()) / (rewards.std() + 1e-4))       # [group]
    r = collate(groups, 0)
    adv = torch.cat(advantages)[:, None] * r.mask                                     # [rows, T]
    return r, adv


def save_model(args: argparse.Namespace) -> None:
    """The bench's model as a directory GRPO loads: ids the char tokenizer lacks decode to nothing, so
    the model's larger vocabulary is harmless (it samples noise; the run exercises the code path)."""
    from trainer.tiny import EOS, build_tokenizer
    tokenizer = build_tokenizer()
    args.dtype = "float32"
    model = build_model(args, "cpu")
    eos = tokenizer.convert_tokens_to_ids(EOS)
    model.config.eos_token_id = model.config.bos_token_id = eos
    model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = model.generation_config.bos_token_id = eos
    model.save_pretrained(args.save_model, safe_serialization=True)
    tokenizer.save_pretrained(args.save_model)
    print(json.dumps({"saved": args.save_model, "parameters": sum(p.numel() for p in model.parameters())}))


def _sync(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fingerprint(model, world) -> tuple[list[float], list[float]]:
    """Per-parameter gradient norms and projections on fixed random directions (seeded by the
    parameter's index), in fp32, from the full gradients; every rank computes them."""
    import torch
    from torch.distributed.tensor import DTensor
    norms, projections = [], []
    for i, p in enumerate(model.parameters()):
        grad = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
        grad = grad.float().flatten()
        direction = torch.randn(grad.numel(), generator=torch.Generator(device=grad.device).manual_seed(i),
                                device=grad.device)
        norms.append(float(grad.norm()))
        projections.append(float(grad @ direction) / grad.numel() ** 0.5)
    return norms, projections


def worker(args: argparse.Namespace) -> None:
    """One process of a run: the single-device run (WORLD_SIZE unset) or one rank of N."""
    import torch

    from trainer import distributed
    from trainer.batches import accumulate_gradients, no_grad_logprobs
    from trainer.compiled_layers import CompiledLayers
    from trainer.losses import BatchScale, GRPOLoss, LossSettings
    from trainer.optim import build_optimizer

    sharded = distributed.world_size() > 1
    world = distributed.init(args.device) if sharded else distributed.World(0, 1, args.device)
    device = world.device if sharded or not args.device.startswith("cuda") else "cuda:0"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    model = build_model(args, device)
    r_all, adv_all = build_rollouts(args, model.config.vocab_size)
    offset, count = distributed.rank_slice(args.prompts, world)
    rows = torch.arange(offset * args.group, (offset + count) * args.group)
    r, adv = r_all.rows(rows).to(device), adv_all[rows].to(device)
    if sharded:
        model = distributed.shard_model(model, world)
    layers = CompiledLayers(model, args.compile_layers)  # algo.compile_layers: the same in both runs
    optimizer = build_optimizer(model, args.lr, 0.0, (0.9, 0.999))
    loss_fn = GRPOLoss(LossSettings(aggregation="token", is_level="none"))
    part = torch.arange(len(rows))

    log: dict[str, list] = {"loss": [], "grad_norm": [], "logp_mean": [], "step_s": [], "logprobs_s": [], "update_s": []}
    for step in range(args.steps):
        _sync(device)
        t0 = time.perf_counter()
        if sharded:
            with distributed.gathered(model), layers.active():
                old = no_grad_logprobs(model, r, 1.0, args.micro)[0]                 # [rows, T]
            scale = distributed.global_scale(r.mask, args.completion_len)
        else:
            with layers.active():
                old = no_grad_logprobs(model, r, 1.0, args.micro)[0]
            scale = BatchScale(tokens=float(r.mask.sum()), sequences=float(len(rows)), max_tokens=args.completion_len)
        _sync(device)
        t1 = time.perf_counter()
        if step == 0:
            first = old  # the ratio's reference for every step, so that the loss moves with the weights
        optimizer.zero_grad(set_to_none=True)
        with layers.active():
            if sharded:
                loss = distributed.accumulate_sharded(model, loss_fn, r, first, None, adv, part, args.micro, scale,
                                                      1.0, {})
            else:
                loss = accumulate_gradients(model, loss_fn, r, first, None, adv, part, args.micro, scale, 1.0, {})
        _sync(device)
        t2 = time.perf_counter()
        if step == 0:  # not timed: compared before any update, while the weights are the same everywhere
            norms, projections = fingerprint(model, world)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(device)  # the peak of the steps, not of the fingerprint
        _sync(device)
        t3 = time.perf_counter()
        norm = distributed.grad_norm(model, 1.0) if sharded else float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        optimizer.step()
        _sync(device)
        t4 = time.perf_counter()
        logp_sum = float(old.double().sum())  # [rows, T] masked log-probs under this step's weights
        log["loss"].append(sum(distributed.gather_objects(loss, world)) if sharded else loss)
        log["logp_mean"].append((sum(distributed.gather_objects(logp_sum, world)) if sharded else logp_sum)
                                / float(r_all.mask.sum()))
        log["grad_norm"].append(norm)
        log["logprobs_s"].append(t1 - t0)
        log["update_s"].append((t2 - t1) + (t4 - t3))
        log["step_s"].append((t4 - t0) - (t3 - t2))
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.startswith("cuda") else 0.0
    memories = distributed.gather_objects(memory, world) if sharded else [memory]
    if world.main:
        Path(args.result).write_text(json.dumps({
            **log, "param_grad_norms": norms, "grad_projections": projections, "peak_memory_gib": memories,
            "tokens": float(r_all.mask.sum()), "rows": len(r_all.mask), "processes": world.size}))
    if sharded:
        distributed.end_process_group()
        distributed.leave(0)  # the result is written: skip the teardown that can abort a rank


def _max_rel(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def compare(single: dict, multi: dict, n: int, warmup: int) -> dict:
    t1 = statistics.median(single["step_s"][warmup:])
    tn = statistics.median(multi["step_s"][warmup:])
    proj_1, proj_n = single["grad_projections"], multi["grad_projections"]
    scale = max(abs(x) for x in proj_1)
    return {
        "max_rel_diff": {"loss": _max_rel(multi["loss"], single["loss"]),
                         "logp_mean": _max_rel(multi["logp_mean"], single["logp_mean"]),
                         "grad_norm": _max_rel(multi["grad_norm"], single["grad_norm"]),
                         "first_step_loss": _max_rel(multi["loss"][:1], single["loss"][:1]),
                         "first_step_grad_norm": _max_rel(multi["grad_norm"][:1], single["grad_norm"][:1]),
                         "first_step_param_grad_norms": _max_rel(multi["param_grad_norms"], single["param_grad_norms"]),
                         "first_step_grad_projections": max(abs(x - y) for x, y in zip(proj_n, proj_1)) / scale},
        "step_s_median": {"1": round(t1, 4), str(n): round(tn, 4)},
        "update_s_median": {"1": round(statistics.median(single["update_s"][warmup:]), 4),
                            str(n): round(statistics.median(multi["update_s"][warmup:]), 4)},
        "tokens_per_s_per_device": {"1": round(single["tokens"] / t1, 1), str(n): round(multi["tokens"] / tn / n, 1)},
        "scaling_efficiency": round(t1 / (n * tn), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("parent", "worker"), default="parent")
    parser.add_argument("--result", default="", help="worker: where to write its JSON")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="hidden 128, 2 layers, vocab 512, fp32 (checking)")
    parser.add_argument("--dtype", default="", help="default: bfloat16 on cuda, float32 with --tiny on cpu")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the timing")
    parser.add_argument("--prompts", type=int, help="groups in the global batch (default 16; --tiny 4)")
    parser.add_argument("--group", type=int, help="completions per group (default 8; --tiny 4)")
    parser.add_argument("--prompt-len", type=int, help="longest prompt (default 128; --tiny 16)")
    parser.add_argument("--completion-len", type=int, help="longest completion (default 512; --tiny 24)")
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--compile-layers", action="store_true",
                        help="both runs through compiled decoder layers (algo.compile_layers)")
    parser.add_argument("--lr", type=float, default=1e-5,
                        help="bf16 weights move only where lr exceeds their resolution (~1e-4 at 0.02)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="also write the JSON here")
    parser.add_argument("--save-model", default="", metavar="DIR",
                        help="write the random model (fp32) with trainer/tiny.py's char tokenizer to DIR, for a "
                             "GRPO run under torchrun (model.path=DIR), and exit")
    args = parser.parse_args()
    args.dtype = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    for key, full, tiny in (("prompts", 16, 4), ("group", 8, 4), ("prompt_len", 128, 16), ("completion_len", 512, 24)):
        if getattr(args, key) is None:
            setattr(args, key, tiny if args.tiny else full)
    if args.role == "worker":
        worker(args)
        return
    if args.save_model:
        save_model(args)
        return
    if args.prompts % args.nproc:
        parser.error(f"--prompts {args.prompts} must divide by --nproc {args.nproc}")

    passed = ["--device", args.device, "--dtype", args.dtype, "--steps", str(args.steps), "--prompts",
              str(args.prompts), "--group", str(args.group), "--prompt-len", str(args.prompt_len),
              "--completion-len", str(args.completion_len), "--micro", str(args.micro), "--lr", str(args.lr),
              "--seed", str(args.seed)] + (["--tiny"] if args.tiny else []) + (
                  ["--compile-layers"] if args.compile_layers else [])
    script = str(Path(__file__).resolve())
    # torchrun's default of one OpenMP thread per process, for the single run too (a fair CPU check)
    env = {"OMP_NUM_THREADS": "1", **os.environ, "NCCL_NVLS_ENABLE": "0"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, launcher in (("1", [sys.executable, script]),
                               (str(args.nproc), [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node", str(args.nproc), script])):
            path = Path(tmp) / f"{name}.json"
            subprocess.run([*launcher, "--role", "worker", "--result", str(path), *passed], check=True, env=env)
            results[name] = json.loads(path.read_text())
    import torch
    single, multi = results["1"], results[str(args.nproc)]
    report = {
        "machine": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
        "config": {k: v for k, v in vars(args).items() if k not in ("role", "result", "out")},
        "rows": single["rows"], "completion_tokens": single["tokens"],
        **compare(single, multi, args.nproc, args.warmup),
        "peak_memory_gib": {"1": single["peak_memory_gib"], str(args.nproc): multi["peak_memory_gib"]},
        "per_step": {name: {k: res[k] for k in ("loss", "grad_norm", "logp_mean", "step_s")} for name, res in results.items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
