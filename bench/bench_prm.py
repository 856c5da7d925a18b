"""PRM step-scoring throughput: batched bf16 length-sorted passes vs a naive baseline, in one run.

A random-weight Qwen2 token-classification PRM (2 labels) is built in memory (no download):
`--model 0.5b` is Qwen2-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate
4864, vocab 151936), `--model tiny` a 2-layer hidden-128 one for a CPU check. The chains are random
token ids of random lengths with a step tag every ~`--step-tokens` tokens (tokenization is not timed:
the server tokenizes in its own process, before batching).

Modes, over the same chains and weights:
  batched  the service's path (PRMModel.score_rows): every chain sorted by length, cut into passes of
           at most --batch-tokens padded tokens (prm/batching.py), bf16 on a GPU, inference_mode;
  naive    one request (a group of --group chains, as a trainer sends them) at a time, padded to the
           request's longest chain, fp32, no sorting across requests.
Reported: real (unpadded) tokens per second of the second pass over the chains (the steady state; the
first pass, which meets every pass shape for the first time, is reported beside it), the padding
share, and the fraction of the bf16 FLOP
bound: 2 x (non-embedding parameters) x tokens / time, over the rate of a large bf16 matmul measured
on the same device. The bound leaves out attention's FLOPs (small next to the matmuls below ~2k
tokens at this width), so the fraction slightly understates the real utilisation.

    python bench/bench_prm.py --device cuda --model 0.5b [--chains 1024] [--out result.json]
    python bench/bench_prm.py --device cpu --model tiny       # a check that it runs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tasks.prm_format import PRMFormat  # noqa: E402
from verifier_service.prm.batching import padded_tokens, plan_batches  # noqa: E402
from verifier_service.prm.model import PRMModel  # noqa: E402

SHAPES = {
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True),
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=256, vocab_size=1000, max_position_embeddings=4096, tie_word_embeddings=True),
}


def build_model(shape: str, seed: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    torch.manual_seed(seed)
    config = Qwen2Config(**SHAPES[shape], num_labels=2, torch_dtype="float32")
    return Qwen2ForTokenClassification(config)


def make_chains(n: int, min_len: int, max_len: int, step_tokens: int, vocab: int, seed: int):
    """(ids, tag_positions) per chain; lengths log-uniform in [min_len, max_len] (many short, some long)."""
    rng = random.Random(seed)
    chains = []
    for _ in range(n):
        length = int(round(min_len * (max_len / min_len) ** rng.random()))
        ids = [rng.randrange(vocab) for _ in range(length)]
        positions = list(range(min(step_tokens, length) - 1, length, step_tokens))
        if positions[-1] != length - 1:
            positions.append(length - 1)
        chains.append((ids, positions))
    return chains


def non_embedding_params(model) -> int:
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def matmul_rate(device: str, dtype, size: int, repeats: int) -> float:
    """FLOP/s of a square matmul of `size` in `dtype` (the denominator of the bound)."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_batched(prm: PRMModel, chains, budget: int, device: str) -> tuple[float, float, int]:
    """(seconds of the first pass over every chain, seconds of a second pass, padded tokens per pass).

    The chains go in length-sorted passes. The first pass meets each pass shape for the first time and
    pays for it (a compiled graph, cuDNN attention plans, allocator growth); the second is the steady
    state that a long-running service reaches, and is the number reported as throughput."""
    batches = plan_batches([len(ids) for ids, _ in chains], budget)
    prm.score_rows(*zip(*chains[:2]))  # kernels, allocator
    seconds = []
    for _ in range(2):
        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            prm.score_rows([chains[i][0] for i in batch], [chains[i][1] for i in batch])
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds[0], seconds[1], sum(padded_tokens([len(chains[i][0]) for i in b]) for b in batches)


def run_naive(prm: PRMModel, chains, group: int, device: str) -> tuple[float, int]:
    """Seconds for the same chains as requests of `group`, one at a time, each padded to its longest."""
    requests = [chains[i:i + group] for i in range(0, len(chains), group)]
    prm.score_rows(*zip(*chains[:2]))
    _sync(device)
    start = time.perf_counter()
    for request in requests:
        prm.score_rows([ids for ids, _ in request], [pos for _, pos in request])
    _sync(device)
    return time.perf_counter() - start, sum(padded_tokens([len(ids) for ids, _ in r]) for r in requests)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", choices=sorted(SHAPES), default="0.5b")
    parser.add_argument("--chains", type=int, default=1024)
    parser.add_argument("--min-len", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=2048)
    parser.add_argument("--step-tokens", type=int, default=64)
    parser.add_argument("--batch-tokens", type=int, default=32768, help="padded tokens per batched pass")
    parser.add_argument("--group", type=int, default=8, help="chains per request of the naive baseline")
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--compile", action="store_true",
                        help="also the batched path through a torch.compile'd model (PRMModel(compile=True))")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args(argv)

    import torch

    fast_dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32  # CPU bf16 matmuls are slow
    model = build_model(args.model, args.seed)
    params = non_embedding_params(model)
    chains = make_chains(args.chains, args.min_len, args.max_len, args.step_tokens,
                         SHAPES[args.model]["vocab_size"], args.seed)
    tokens = sum(len(ids) for ids, _ in chains)
    fmt = PRMFormat(kind="token_classification", step_tag="<tag>", max_length=args.max_len)

    naive = PRMModel.wrap(model.to(args.device, torch.float32), fmt, args.device)
    naive_s, naive_padded = run_naive(naive, chains, args.group, args.device)
    check = chains[:4]  # both paths must give the same scores, up to the bf16 rounding
    reference = naive.score_rows(*zip(*check))
    fast = PRMModel.wrap(model.to(args.device, fast_dtype), fmt, args.device)  # the same module, cast in place
    fast_first_s, fast_s, fast_padded = run_batched(fast, chains, args.batch_tokens, args.device)
    diff = max(abs(a - b) for x, y in zip(fast.score_rows(*zip(*check)), reference) for a, b in zip(x, y))
    compiled = {}
    if args.compile:
        fast_c = PRMModel.wrap(model, fmt, args.device, compile=True)
        compiled_first_s, compiled_s, _ = run_batched(fast_c, chains, args.batch_tokens, args.device)
        compiled = {"compiled_tokens_per_s": tokens / compiled_s,
                    "compiled_first_pass_tokens_per_s": tokens / compiled_first_s,
                    "compiled_max_score_diff_vs_fp32": max(abs(a - b) for x, y in zip(fast_c.score_rows(*zip(*check)),
                                                                                     reference) for a, b in zip(x, y))}
    rate = matmul_rate(args.device, fast_dtype, args.matmul_size if args.device.startswith("cuda") else 1024,
                       repeats=20 if args.device.startswith("cuda") else 5)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or
        platform.machine(),
        "device": args.device, "model": args.model, "non_embedding_params": params, "chains": len(chains),
        "real_tokens": tokens, "fast_dtype": str(fast_dtype).removeprefix("torch."),
        "batched_tokens_per_s": tokens / fast_s, "batched_first_pass_tokens_per_s": tokens / fast_first_s,
        "batched_padding_share": 1 - tokens / fast_padded,
        "naive_tokens_per_s": tokens / naive_s, "naive_padding_share": 1 - tokens / naive_padded,
        "speedup": naive_s / fast_s, "matmul_flops_per_s": rate,
        "batched_fraction_of_flop_bound": 2 * params * tokens / fast_s / rate,
        "naive_fraction_of_flop_bound": 2 * params * tokens / naive_s / rate,
        **({"compiled_fraction_of_flop_bound": 2 * params * compiled["compiled_tokens_per_s"] / rate} if compiled
           else {}),
        "max_score_diff_fast_vs_fp32": diff, **compiled,
        "settings": {k: getattr(args, k) for k in ("batch_tokens", "group", "min_len", "max_len", "step_tokens")},
    }
    print(f"{result['machine']} {args.device}, {args.model} ({params / 1e6:.2f}M non-embedding params), "
          f"{len(chains)} chains, {tokens} tokens")
    print(f"  batched {result['fast_dtype']} length-sorted: {result['batched_tokens_per_s']:,.0f} tok/s "
          f"(padding {result['batched_padding_share']:.1%}, {result['batched_fraction_of_flop_bound']:.1%} of the "
          f"FLOP bound; first pass {result['batched_first_pass_tokens_per_s']:,.0f})")
    print(f"  naive fp32 per request:  {result['naive_tokens_per_s']:,.0f} tok/s "
          f"(padding {result['naive_padding_share']:.1%}, {result['naive_fraction_of_flop_bound']:.1%})")
    if compiled:
        print(f"  batched, compiled: {compiled['compiled_tokens_per_s']:,.0f} tok/s "
              f"({2 * params * compiled['compiled_tokens_per_s'] / rate:.1%} of the FLOP bound; first pass "
              f"{compiled['compiled_first_pass_tokens_per_s']:,.0f})")
    print(f"  speedup {result['speedup']:.1f}x; matmul {rate / 1e12:.3g} TFLOP/s; max |score diff| {diff:.2e}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
