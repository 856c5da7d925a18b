"""Trainer throughput on a GPU (H100): generation, a training step's MFU, and one GRPO step.

Usage (GPU):  .venv/bin/python bench/bench_grpo_gpu.py [--parts generate,train,grpo] [--out FILE]
Check on CPU: .venv/bin/python bench/bench_grpo_gpu.py --tiny      (tiny shapes, float32, seconds)

Models are random (no downloads), built from Qwen2 configs:
  generate  the ~0.5B shape (hidden 896, 24 layers, 14 heads, 2 kv heads, intermediate 4864, vocab
            151936), bf16: transformers `generate` of `--gen-batch` (64) prompts of 64 random tokens x
            `--gen-tokens` (256) new tokens (no early stop), in three modes: plain (dynamic cache),
            static (cache_implementation="static"), static_compiled (static cache + the compiled
            decode step transformers runs for static caches). tokens/s = batch x new tokens / seconds,
            after a warm-up call. Targets: 40,000 tok/s; plain gave ~10,800 before.
  train     the same shape: bf16 parameters, AdamW, a step over 8 x 1024 tokens (forward, backward,
            optimizer step), in variants: eager (sdpa attention, foreach AdamW), fused (fused AdamW),
            compiled (torch.compile of the model + fused AdamW). Gradient checkpointing off.
            MFU = model FLOPs per second / peak (989e12, H100 SXM dense bf16), model FLOPs per token
            = 6 x (parameters without the input embedding) + 12 x layers x hidden x sequence length
            (attention scores and values, forward + backward). Target >= 35%; eager gave 24% before.
  grpo      one GRPO step of trainer.grpo.train: 16 prompts x 8 samples x 256 new tokens, a Qwen2 of
            ~0.36B non-embedding parameters (hidden 1024, 24 layers, 16 heads, 8 kv heads,
            intermediate 3840) with a 128-token vocabulary (the tiny char tokenizer), bf16, hf engine,
            beta 0, rewards from the run's own verifier server; per-phase seconds of steps 2-3 (the
            first is a warm-up). For a side-by-side with TRL's GRPOTrainer at beta 0 on the same shape.
Prints one JSON object (and writes it to --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16 = {"cuda": 989e12}  # H100 SXM dense bf16; on CPU no MFU is reported

QWEN_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                intermediate_size=4864, vocab_size=151936)
QWEN_036B_V128 = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
                      intermediate_size=3840, vocab_size=128)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=512)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build(shape: dict, dtype: torch.dtype, device: str, attn: str = "sdpa") -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM
    config = Qwen2Config(**shape, max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=0,
                         eos_token_id=1, pad_token_id=2, attn_implementation=attn)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    return model


def non_embedding_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)


def bench_generate(shape: dict, dtype: torch.dtype, device: str, batch: int, new_tokens: int) -> dict:
    from transformers import GenerationConfig
    model = build(shape, dtype, device).eval()
    prompts = torch.randint(3, shape["vocab_size"], (batch, 64), device=device)
    out = {}
    for mode in ("plain", "static", "static_compiled"):
        cfg = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                               temperature=1.0, top_k=0, top_p=1.0, eos_token_id=1, pad_token_id=2)
        if mode != "plain":
            cfg.cache_implementation = "static"
        if mode == "static_compiled":
            cfg.disable_compile = False
        else:
            cfg.disable_compile = True
        try:
            with torch.no_grad():
                model.generate(prompts, attention_mask=torch.ones_like(prompts), generation_config=cfg)  # warm-up
                _sync(device)
                start = time.perf_counter()
                seqs = model.generate(prompts, attention_mask=torch.ones_like(prompts), generation_config=cfg)
                _sync(device)
                seconds = time.perf_counter() - start
            made = (seqs.shape[1] - prompts.shape[1]) * batch
            out[mode] = {"seconds": round(seconds, 3), "tokens_per_s": round(made / seconds, 1)}
        except Exception as exc:  # a mode that this transformers/torch cannot run is reported, not fatal
            out[mode] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def bench_train(shape: dict, dtype: torch.dtype, device: str, rows: int, seq: int, iters: int) -> dict:
    out = {}
    for variant in ("eager", "fused", "compiled"):
        model = build(shape, dtype, device).train()
        n = non_embedding_params(model)
        flops_per_token = 6 * n + 12 * shape["num_hidden_layers"] * shape["hidden_size"] * seq
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=variant != "eager" and device == "cuda",
                                      foreach=None if variant != "eager" else True)
        step_model = torch.compile(model) if variant == "compiled" else model
        ids = torch.randint(3, shape["vocab_size"], (rows, seq), device=device)

        def step() -> None:
            loss = step_model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        try:
            for _ in range(2):
                step()  # warm-up (compilation)
            _sync(device)
            start = time.perf_counter()
            for _ in range(iters):
                step()
            _sync(device)
            seconds = (time.perf_counter() - start) / iters
            tokens_per_s = rows * seq / seconds
            out[variant] = {"seconds_per_step": round(seconds, 4), "tokens_per_s": round(tokens_per_s, 1),
                            "non_embedding_params": n}
            if device in PEAK_BF16:
                out[variant]["mfu"] = round(tokens_per_s * flops_per_token / PEAK_BF16[device], 4)
        except Exception as exc:
            out[variant] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        del model, optimizer, step_model
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_grpo(shape: dict, device: str, dtype: str, prompts: int, group: int, new_tokens: int, steps: int,
               tmp: Path) -> dict:
    from transformers import AutoConfig, Qwen2ForCausalLM

    from trainer.config import load_config
    from trainer.grpo import train
    from trainer.tiny import build_tiny

    model_dir = build_tiny(tmp / "grpo_model", seed=0)
    config = AutoConfig.from_pretrained(model_dir)
    for k, v in shape.items():
        setattr(config, k, v)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(model_dir)
    non_embedding = non_embedding_params(model)
    del model
    cfg = load_config(ROOT / "configs/demo.yaml", [
        f"steps={steps}", f"out_dir={tmp / 'grpo_run'}", "model.tiny=false", f"model.path={model_dir}",
        f"model.device={device}", f"model.dtype={dtype}", "rollout.engine=hf", f"rollout.prompts_per_step={prompts}",
        f"rollout.group_size={group}", f"rollout.max_tokens={new_tokens}", "rollout.max_model_len=1024",
        "algo.beta=0.0", "algo.mini_batches=1", "algo.micro_batch_size=32", "optim.lr=1e-6",
        "algo.filter_zero_std=false",  # a random model earns no reward: keep every completion in the update
        "log.progress=false", "log_samples=0"])
    train(cfg)
    rows = [json.loads(line) for line in (tmp / "grpo_run" / "metrics.jsonl").read_text().splitlines()]
    measured = rows[1:] or rows
    phases = sorted({k for r in measured for k in r["seconds"]})
    return {"non_embedding_params": non_embedding, "steps_measured": len(measured),
            "seconds": {k: round(statistics.mean(r["seconds"].get(k, 0.0) for r in measured), 3) for k in phases},
            "generate_tokens_per_s": round(statistics.mean(r["generate_tokens_per_s"] for r in measured), 1),
            "completion_length": round(statistics.mean(r["completion_length"] for r in measured), 1),
            "kept": measured[-1]["kept"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="generate,train,grpo")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: checks the script runs")
    parser.add_argument("--gen-batch", type=int, default=64)
    parser.add_argument("--gen-tokens", type=int, default=256)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if args.tiny else torch.bfloat16
    result: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "torch": torch.__version__}
    parts = args.parts.split(",")
    if "generate" in parts:
        result["generate"] = bench_generate(TINY if args.tiny else QWEN_05B, dtype, device,
                                            4 if args.tiny else args.gen_batch, 8 if args.tiny else args.gen_tokens)
    if "train" in parts:
        result["train"] = bench_train(TINY if args.tiny else QWEN_05B, dtype, device, 2 if args.tiny else 8,
                                      32 if args.tiny else 1024, 2 if args.tiny else 10)
    if "grpo" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            shape = {**TINY, "vocab_size": 128} if args.tiny else QWEN_036B_V128
            result["grpo"] = bench_grpo(shape, device, "float32" if args.tiny else "bfloat16",
                                        2 if args.tiny else 16, 2 if args.tiny else 8, 8 if args.tiny else 256,
                                        2 if args.tiny else 3, Path(tmp))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
