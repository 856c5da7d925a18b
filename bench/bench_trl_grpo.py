"""GRPO steps side by side in one run: verirl's trainer against TRL's GRPOTrainer, same model, same GPU.

Usage (GPU, TRL and `datasets` importable, e.g. from carried wheels):
    python bench/bench_trl_grpo.py [--steps 4] [--out FILE]
Check on the CPU (tiny shapes, float32, a minute):
    python bench/bench_trl_grpo.py --tiny

The configuration is the issue's: a random Qwen2 of ~0.36B non-embedding parameters (hidden 1024, 24
layers, 16 heads, 8 KV heads, intermediate 3840) with the tiny character tokenizer's 128-token
vocabulary, bf16; 16 prompts x 8 samples x at most 256 new tokens per step, temperature 1, beta 0 (no
reference model), transformers generation on both sides (verirl's hf engine, TRL without vLLM), one
optimizer step per generation batch. Both load the same model directory, so their completion lengths
follow the same distribution (a random model stops at EOS, p ~ 1/128 per token).

verirl: `bench_grpo_gpu.bench_grpo` (trainer.grpo.train; rewards from the run's own verifier server;
micro-batches of 32 rows; the phases timed by the trainer), once per `--verirl-caches` value of
`rollout.hf_cache` (dynamic, static_compiled, paged; "+key=value" adds overrides). TRL 1.16:
`GRPOTrainer` with a local reward function (random numbers, so that no group has zero variance: the
update runs on every row, as verirl's `algo.filter_zero_std=false` does), `per_device_train_batch_size`
128 = one generation batch, whole-batch forward/backward; a callback times each optimizer step (generation included). Both report the mean of
the steps after the first (warm-up), as seconds per step and completion tokens per second. Before the
measured runs, an unmeasured `--warmup-steps` run of the first verirl variant: one run per process was
seen with its update 3x slower in steps 2-4 (the first; once, after this warm-up, the next one), so
compare the later variants (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_grpo_gpu import QWEN_036B_V128, TINY, bench_grpo, report, save, save_grpo_model  # noqa: E402


def trl_prompts(n: int, seed: int) -> list[str]:
    """The prompts verirl's run samples from (configs/demo.yaml's synthetic problems, bare style)."""
    from tasks.prompts import format_prompt
    from tasks.synthetic import SyntheticConfig, generate
    problems = generate(n, split="train", seed=seed, config=SyntheticConfig(min_steps=1, max_steps=3, max_value=12))
    return [format_prompt(p, "bare") for p in problems]


def bench_trl(model_dir: Path, device: str, dtype: str, prompts: int, group: int, new_tokens: int, steps: int,
              tmp: Path) -> dict:
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device)
    # a fingerprint given: `datasets` hashing the table itself fails on some pyarrow/dill pairings
    data = Dataset(InMemoryTable.from_pydict({"prompt": trl_prompts(prompts * (steps + 1), seed=0)}),
                   fingerprint="bench_trl_grpo")
    rng = random.Random(0)
    lengths: list[float] = []

    def reward(completions, completion_ids=None, **_):
        if completion_ids is not None:
            lengths.extend(len(c) for c in completion_ids)
        return [rng.random() for _ in completions]

    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    args = GRPOConfig(
        output_dir=str(tmp / "trl_run"), max_steps=steps, per_device_train_batch_size=prompts * group,
        gradient_accumulation_steps=1, num_generations=group, max_completion_length=new_tokens,
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, learning_rate=1e-6, num_iterations=1,
        bf16=dtype == "bfloat16", use_cpu=device == "cpu", use_vllm=False, gradient_checkpointing=False,
        logging_steps=1, report_to="none", save_strategy="no", seed=0, dataloader_num_workers=0,
        disable_tqdm=True)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                          processing_class=tokenizer, callbacks=[StepTimer()])
    trainer.train()
    measured = times[1:] or times
    per_step = statistics.mean(measured)
    mean_len = statistics.mean(lengths) if lengths else float("nan")
    import trl
    return {"trl": trl.__version__, "steps_measured": len(measured), "step_seconds": [round(t, 3) for t in times],
            "seconds_per_step": round(per_step, 3), "completion_length": round(mean_len, 1),
            "completion_tokens_per_s": round(prompts * group * mean_len / per_step, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU: checks the script runs")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--verirl-caches", default="dynamic,static_compiled",
                        help="verirl runs, comma-separated: a rollout.hf_cache value, optionally with '+'-joined "
                             "config overrides (e.g. paged+model.compile=true)")
    parser.add_argument("--warmup-steps", type=int, default=2,
                        help="an unmeasured run of the first variant first (0: none)")
    parser.add_argument("--skip-steps", type=int, default=1,
                        help="first steps of each verirl run left out of its means (2 with algo.compile_layers)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    dtype = "float32" if args.tiny else "bfloat16"
    shape = {**TINY, "vocab_size": 128} if args.tiny else QWEN_036B_V128
    prompts, group, new_tokens = (2, 2, 8) if args.tiny else (16, 8, 256)
    result: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
                    "prompts": prompts, "group": group, "max_new_tokens": new_tokens, "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = save_grpo_model(tmp / "model", shape)
        if args.warmup_steps:  # a process's first run pays one-off costs beyond its first step (seen: update 3x)
            first, *more = args.verirl_caches.split(",")[0].split("+")
            bench_grpo(model_dir, device, dtype, prompts, group, new_tokens, args.warmup_steps, tmp,
                       overrides=(f"rollout.hf_cache={first}", *more))
        for cache in args.verirl_caches.split(","):
            mode, *more = cache.split("+")
            v = bench_grpo(model_dir, device, dtype, prompts, group, new_tokens, args.steps, tmp,
                           overrides=(f"rollout.hf_cache={mode}", *more), skip=args.skip_steps)
            v["seconds_per_step"] = v["seconds"]["total"]  # the trainer's whole step, generation included
            v["completion_tokens_per_s"] = round(prompts * group * v["completion_length"] / v["seconds_per_step"], 1)
            result[f"verirl_{cache}"] = v
            save(result, args.out)  # a run cut short by its time limit keeps the variants it finished
            if device == "cuda":
                torch.cuda.empty_cache()
        result["trl"] = bench_trl(model_dir, device, dtype, prompts, group, new_tokens, args.steps, tmp)
    for cache in args.verirl_caches.split(","):
        result[f"speedup_tokens_per_s_{cache}"] = round(result[f"verirl_{cache}"]["completion_tokens_per_s"] /
                                                         result["trl"]["completion_tokens_per_s"], 2)
    report(result, args.out)


if __name__ == "__main__":
    main()
