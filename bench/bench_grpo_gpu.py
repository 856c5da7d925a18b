"""Trainer throughput on a GPU (H100): generation, a training step's MFU, and one GRPO step.

Usage (GPU):  .venv/bin/python bench/bench_grpo_gpu.py [--parts generate,engine,train,grpo] [--out FILE]
Check on CPU: .venv/bin/python bench/bench_grpo_gpu.py --tiny      (tiny shapes, float32, seconds)

Models are random (no downloads), built from Qwen2 configs:
  generate  the ~0.5B shape (hidden 896, 24 layers, 14 heads, 2 kv heads, intermediate 4864, vocab
            151936), bf16: transformers `generate` of `--gen-batch` (64) prompts of 64 random tokens x
            `--gen-tokens` (256) new tokens (no early stop), in two modes: plain (dynamic cache) and
            static (cache_implementation="static", compilation off). tokens/s = batch x new tokens /
            seconds, after a warm-up call. The issue's reference: ~10,800 tok/s at batch 64.
  engine    the same shape through verirl's hf rollout engine (what GRPO samples with: sampling
            log-probs recorded), `--engine-batches` rows (64,256) in groups of 8, per KV cache
            (`--engine-caches`: dynamic, static, static_compiled = static + transformers' compiled decode
            step, paged = transformers' continuous batching; "paged+graphs", "+async", "+compile" add
            ContinuousBatchingConfig options, PAGED_OPTIONS; "+gqa": rollout.hf_gqa_decode; "+lib":
            rollout.hf_sampler=library, generate's own multinomial draw; "+nodefer":
            rollout.hf_deferred_stop=false; "+merge": rollout.hf_merged_projections;
            "+splitkv": rollout.hf_decode_kernel=split_kv; "+nolean": the library's decode masks and inputs,
            not decode_mask.py's and decode_inputs.py's; "+nograph": transformers' compiled decode call,
            not graphed_decode.py's CUDA graphs; "+percall": a new cache and graph at every call,
            not kept across calls, static_cache_reuse.py; "+noprefill": the prompt's forward eager, not
            from a kept graph; "+autotune": the graphed steps compiled with max-autotune-no-cudagraphs;
            "+libwrites": the kept caches write keys, values and counters as the library does, not
            through kv_write.py; "+noshare": every row's prompt forward, not one per group
            (shared_prefill.py); "+nocombo": the graphed steps compiled with inductor's defaults, not its
            combo kernels (independent small kernels launched as one)).
            Target: 40,000 tok/s.
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
            first is a warm-up), and the update's MFU (forward + backward over prompt and completion
            tokens). `--grpo-variants`: one run per '+'-joined list of config overrides (e.g.
            rollout.hf_cache=paged+model.compile=true). For a side-by-side with TRL's GRPOTrainer.
Prints one JSON object (and writes it to --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository's packages, also where verirl is not installed
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
    for mode in ("plain", "static"):
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


# engine variants "paged+<option>+...": more ContinuousBatchingConfig fields for the paged mode
PAGED_OPTIONS = {"graphs": {"use_cuda_graph": True}, "nographs": {"use_cuda_graph": False},
                 "async": {"use_async_batching": True}, "compile": {"default_compile_level": 1},
                 "compile3": {"default_compile_level": 3}}


ENGINE_EXTRAS = {"gqa", "lib", "nodefer", "merge", "splitkv", "nolean", "nograph", "percall", "noprefill",
                 "autotune", "libwrites", "noshare", "nocombo"}  # "<cache>+extra+...": HFEngine options


def bench_engine(shape: dict, dtype: torch.dtype, device: str, batches: tuple[int, ...], new_tokens: int,
                 caches: tuple[str, ...], group: int = 8, repeats: int = 3) -> dict:
    """verirl's hf rollout engine (trainer/rollout/hf_engine.py) on the ~0.5B shape: `batch` rows = batch /
    group prompts of 64 characters x `group` samples, exactly `new_tokens` new tokens (the model's EOS,
    the character tokenizer's id 0, is one of 151,936 ids: a random model almost never samples it, and a
    row that does only shortens its count), per KV-cache mode. tokens/s = completion tokens / seconds,
    after a warm-up call of the same shape (compilation); the median of `repeats` timed calls, each listed."""
    from transformers import AutoTokenizer

    from trainer.rollout import SamplingConfig
    from trainer.rollout.hf_engine import HFEngine
    from trainer.tiny import build_tiny

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_tiny(Path(tmp) / "tok", seed=0))
    model = build(shape, dtype, device).eval()
    rng = __import__("random").Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789 "
    out: dict = {}
    for batch in batches:
        prompts = ["".join(rng.choice(letters) for _ in range(64)) for _ in range(batch // group)]
        for cache in caches:
            mode, *extras = cache.split("+")
            unknown = set(extras) - ENGINE_EXTRAS - set(PAGED_OPTIONS)
            if unknown:  # a misspelt variant must not run as another one
                raise ValueError(f"--engine-caches {cache!r}: unknown {sorted(unknown)}; known: "
                                 f"{sorted(ENGINE_EXTRAS | set(PAGED_OPTIONS))}")
            engine = HFEngine(model, tokenizer, max_batch_sequences=batch, cache=mode, gqa_decode="gqa" in extras,
                              sampler="library" if "lib" in extras else "fused", deferred_stop="nodefer" not in extras,
                              merged="merge" in extras, decode_kernel="split_kv" if "splitkv" in extras else "sdpa",
                              paged_options={k: v for e in extras if e in PAGED_OPTIONS
                                             for k, v in PAGED_OPTIONS[e].items()})
            engine.lean_decode = "nolean" not in extras
            engine.graphed_decode = "nograph" not in extras
            engine.keep_decode_state = "percall" not in extras
            engine.graphed_prefill_tokens = 0 if "noprefill" in extras else engine.graphed_prefill_tokens
            if "autotune" in extras or "nocombo" in extras:
                engine.decode_compile_mode = "max-autotune-no-cudagraphs" if "autotune" in extras else None
            engine.static_caches.lean_writes = "libwrites" not in extras
            engine.shared_prefill = "noshare" not in extras
            sampling = SamplingConfig(max_tokens=new_tokens, temperature=1.0, seed=0)
            try:
                engine.generate(prompts, group, sampling)  # warm-up
                rates, made = [], 0
                for _ in range(repeats):  # the same call again: its spread is part of the result
                    _sync(device)
                    start = time.perf_counter()
                    groups = engine.generate(prompts, group, sampling)
                    _sync(device)
                    made = sum(len(c.token_ids) for g in groups for c in g.completions)
                    rates.append(round(made / (time.perf_counter() - start), 1))
                name = f"{cache}_b{batch}"
                name += f"#{sum(k.split('#')[0] == name for k in out) + 1}" if name in out else ""  # a rerun
                out[name] = {"tokens_per_s": statistics.median(rates), "runs_tokens_per_s": rates, "tokens": made}
                if engine.decode_calls:  # graphed_decode.py: the last call's captures (with the run before each)
                    out[name]["captures"] = sum(call.captures for call in engine.decode_calls)
                    out[name]["capture_ms"] = round(sum(call.capture_s for call in engine.decode_calls) * 1e3, 2)
                print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)  # progress: a killed run keeps it
            except Exception as exc:  # reported, not fatal
                out[f"{cache}_b{batch}"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            if device == "cuda":
                torch.cuda.empty_cache()
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

        def step(step_model=step_model, optimizer=optimizer, ids=ids) -> None:  # bound now: deleted below
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
        del model, optimizer, step_model, step
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def save_grpo_model(path: Path, shape: dict) -> Path:
    """The tiny character tokenizer and a random Qwen2 of `shape` (seed 0) as a model directory."""
    from transformers import AutoConfig, Qwen2Config, Qwen2ForCausalLM

    from trainer.tiny import build_tiny

    model_dir = build_tiny(path, seed=0)
    settings = {**AutoConfig.from_pretrained(model_dir).to_dict(), **shape}
    settings.pop("layer_types", None)  # per-layer list of the tiny shape: rebuilt for the new layer count
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**settings)).save_pretrained(model_dir)
    return model_dir


def bench_grpo(model_dir: Path, device: str, dtype: str, prompts: int, group: int, new_tokens: int, steps: int,
               tmp: Path, overrides: tuple[str, ...] = (), skip: int = 1) -> dict:
    """`steps` GRPO steps of one config; the mean of the steps after the first `skip` (compilation)."""
    from transformers import AutoModelForCausalLM

    from trainer.config import load_config
    from trainer.grpo import train

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    non_embedding = non_embedding_params(model)
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    del model
    run_dir = Path(tempfile.mkdtemp(prefix="grpo_run", dir=tmp))
    cfg = load_config(ROOT / "configs/demo.yaml", [
        f"steps={steps}", f"out_dir={run_dir}", "model.tiny=false", f"model.path={model_dir}",
        f"model.device={device}", f"model.dtype={dtype}", "rollout.engine=hf", f"rollout.prompts_per_step={prompts}",
        f"rollout.group_size={group}", f"rollout.max_tokens={new_tokens}", "rollout.max_model_len=1024",
        "algo.beta=0.0", "algo.mini_batches=1", "algo.micro_batch_size=32", "optim.lr=1e-6",
        "algo.filter_zero_std=false",  # a random model earns no reward: keep every completion in the update
        "log.progress=false", "log_samples=0", *overrides])
    train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    measured = rows[skip:] or rows
    phases = sorted({k for r in measured for k in r["seconds"]})
    # the update's MFU: forward + backward over every real token (prompt + completion) of the kept rows,
    # 6 x non-embedding parameters per token plus attention (12 x layers x hidden x mean row length)
    update_tokens = statistics.mean(r["update_tokens"] for r in measured)
    row = update_tokens / max(1, measured[-1]["kept"])
    update_flops = update_tokens * (6 * non_embedding + 12 * layers * hidden * row)
    update_s = statistics.mean(r["seconds"]["update"] for r in measured)
    mfu = {"update_mfu": round(update_flops / update_s / PEAK_BF16[device], 4)} if device in PEAK_BF16 else {}
    return {"non_embedding_params": non_embedding, "steps_measured": len(measured), **mfu,
            "update_tokens": update_tokens,
            "seconds": {k: round(statistics.mean(r["seconds"].get(k, 0.0) for r in measured), 3) for k in phases},
            "generate_tokens_per_s": round(statistics.mean(r["generate_tokens_per_s"] for r in measured), 1),
            "completion_length": round(statistics.mean(r["completion_length"] for r in measured), 1),
            "kept": measured[-1]["kept"]}


def save(result: dict, out: str) -> None:
    """After each part: a run cut short by its time limit still leaves the parts it finished."""
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")


def report(result: dict, out: str) -> None:
    """The final result: printed, and written to `out` when given."""
    print(json.dumps(result, indent=2))
    save(result, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="generate,engine,train,grpo")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: checks the script runs")
    parser.add_argument("--gen-batch", type=int, default=64)
    parser.add_argument("--gen-tokens", type=int, default=256)
    parser.add_argument("--engine-batches", default="64,256")
    parser.add_argument("--engine-caches", default="dynamic,static,static_compiled")
    parser.add_argument("--engine-repeats", type=int, default=3, help="timed calls per variant (median reported)")
    parser.add_argument("--grpo-variants", default="rollout.hf_cache=static_compiled",
                        help="comma-separated; each a '+'-joined list of config overrides")
    parser.add_argument("--grpo-steps", type=int, default=3, help="GRPO steps per variant")
    parser.add_argument("--grpo-skip-steps", type=int, default=1,
                        help="first steps left out of the means (compilation: 2 with algo.compile_layers)")
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
    save(result, args.out)
    if "engine" in parts:
        result["engine"] = bench_engine(TINY if args.tiny else QWEN_05B, dtype, device,
                                        (8,) if args.tiny else tuple(int(b) for b in args.engine_batches.split(",")),
                                        8 if args.tiny else args.gen_tokens, tuple(args.engine_caches.split(",")),
                                        repeats=args.engine_repeats)
    save(result, args.out)
    if "train" in parts:
        result["train"] = bench_train(TINY if args.tiny else QWEN_05B, dtype, device, 2 if args.tiny else 8,
                                      32 if args.tiny else 1024, 2 if args.tiny else 10)
    save(result, args.out)
    if "grpo" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            shape = {**TINY, "vocab_size": 128} if args.tiny else QWEN_036B_V128
            model_dir = save_grpo_model(Path(tmp) / "grpo_model", shape)
            for variant in args.grpo_variants.split(","):
                overrides = tuple(variant.split("+"))
                try:
                    result[f"grpo {variant}"] = bench_grpo(
                        model_dir, device, "float32" if args.tiny else "bfloat16", 2 if args.tiny else 16,
                        2 if args.tiny else 8, 8 if args.tiny else 256, 2 if args.tiny else args.grpo_steps, Path(tmp),
                        overrides, skip=1 if args.tiny else args.grpo_skip_steps)
                except Exception as exc:  # reported, not fatal
                    result[f"grpo {variant}"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                save(result, args.out)
    report(result, args.out)


if __name__ == "__main__":
    main()
