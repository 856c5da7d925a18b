"""GRPO step time on this CPU, phase by phase: the vLLM engine against the transformers engine.

Usage: .venv/bin/python bench/bench_rollout.py [--steps 4] [--runs vllm,hf,vllm_chunks2] [--out FILE]
                                               [--hidden 128 --layers 2]

Each run is `trainer.grpo.train` on configs/demo.yaml (tiny Qwen2, synthetic arithmetic, 16 prompts x
groups of 8, 48 new tokens, rewards from a verifier server started for the run) for `--steps` steps;
the first step is a warm-up and is left out of the means. `--hidden/--layers` other than the tiny
model's 128/2 build a larger random Qwen2 of the same recipe (intermediate 2 x hidden, head dim 32)
and train that instead. Runs:
    vllm          rollout.engine=vllm, score_chunks=1 (scoring after generation)
    hf            rollout.engine=hf (transformers generate), score_chunks=1
    vllm_chunks2  vLLM with score_chunks=2 (chunk 1 scored while chunk 2 generates)
    vllm_compiled vLLM's compiled model (rollout.vllm_compile=true: not enforce_eager)
Prints one JSON object: per run the mean seconds per phase, generation tokens/s, the share of the
scoring time hidden behind generation, plus the machine's load average before and after (the machine
is shared: a load above the core count means the numbers are noisy, rerun).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "vllm": ["rollout.engine=vllm", "rollout.score_chunks=1"],
    "hf": ["rollout.engine=hf", "rollout.score_chunks=1"],
    "vllm_chunks2": ["rollout.engine=vllm", "rollout.score_chunks=2"],
    "vllm_compiled": ["rollout.engine=vllm", "rollout.score_chunks=1", "rollout.vllm_compile=true"],
}


def run(name: str, steps: int, out_dir: Path, model: list[str]) -> dict:
    from trainer.config import load_config
    from trainer.grpo import train

    cfg = load_config(ROOT / "configs/demo.yaml", RUNS[name] + model + [
        f"steps={steps}", f"out_dir={out_dir / name}", "log.progress=false", "log_samples=0"])
    train(cfg)
    rows = [json.loads(line) for line in (out_dir / name / "metrics.jsonl").read_text().splitlines()][1:]
    phases = sorted({k for r in rows for k in r["seconds"]})
    return {
        "seconds": {k: round(statistics.mean(r["seconds"].get(k, 0.0) for r in rows), 3) for k in phases},
        "generate_tokens_per_s": round(statistics.mean(r["generate_tokens_per_s"] for r in rows), 1),
        "completion_length": round(statistics.mean(r["completion_length"] for r in rows), 1),
        "reward_overlap_fraction": round(statistics.mean(r["reward_overlap_fraction"] for r in rows), 3),
        "steps_measured": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", default="vllm,hf,vllm_chunks2")
    parser.add_argument("--out", default="")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                    "load_before": os.getloadavg()}
    result["model"] = {"hidden": args.hidden, "layers": args.layers}
    with tempfile.TemporaryDirectory() as tmp:
        model: list[str] = []
        if (args.hidden, args.layers) != (128, 2):
            from trainer.tiny import TinyConfig, build_tiny
            shape = TinyConfig(hidden_size=args.hidden, intermediate_size=2 * args.hidden, num_hidden_layers=args.layers,
                               num_attention_heads=args.hidden // 32, num_key_value_heads=max(1, args.hidden // 64))
            model = ["model.tiny=false", f"model.path={build_tiny(Path(tmp) / 'model', seed=0, config=shape)}"]
        for name in args.runs.split(","):
            result[name] = run(name, args.steps, Path(tmp), model)
    result["load_after"] = os.getloadavg()
    for name in ("vllm", "vllm_compiled"):
        if name in result and "hf" in result:
            result[f"generate_speedup_{name}_over_hf"] = round(result["hf"]["seconds"]["generate"]
                                                                / result[name]["seconds"]["generate"], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":  # vLLM starts helpers with spawn
    main()
