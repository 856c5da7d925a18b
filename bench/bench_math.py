"""Math checking: verirl against Math-Verify on the same labelled pairs, in one run.

    .venv/bin/pip install 'math-verify[antlr4_13_2]==0.9.0'   # the benchmark's only extra
    .venv/bin/python bench/bench_math.py [--data ../shared/data/math500_test.jsonl] [--out docs/bench_math.json]

Pairs come from the 500 MATH-500 answers: each answer against itself, against an
equivalent rewrite (label True), and against a perturbed copy with one digit
changed (label False). Both graders see the same response text ("... \\boxed{X}")
and the same gold. Each single-process grader runs in a fresh process, cold
(no result cache; verirl's parse cache is cleared per pair). verirl is also
measured through its gRPC service (2 worker processes, result cache off) and for
single-item latency through the Python client.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_FRACTION = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def rewrites(answer: str) -> list[str]:
    """Equivalent spellings of an answer (label True)."""
    out = []
    fraction = _FRACTION.match(answer)
    if fraction:
        out.append(f"{fraction.group(1)}{fraction.group(2)}/{fraction.group(3)}")
    if "\\dfrac" in answer:
        out.append(answer.replace("\\dfrac", "\\frac"))
    if re.fullmatch(r"-?\d+", answer):
        out.append(answer + ".0")
        if len(answer.lstrip("-")) > 3:
            out.append(f"{int(answer):,}")
    if answer.startswith("(") and answer.endswith(")") and "," in answer:
        out.append("\\left" + answer[:-1] + "\\right)")
    if " " in answer:  # spaces go, except where one ends a command (`\\cot x`)
        out.append(re.sub(r"(?<![a-zA-Z]) | (?![a-zA-Z])", "", answer))
    return [text for text in out if text != answer]


def perturbed(answer: str) -> str | None:
    """The answer with its last digit changed (label False); None when it has no digit."""
    digits = [m.start() for m in re.finditer(r"\d", answer)]
    if not digits:
        return None
    at = digits[-1]
    return answer[:at] + str((int(answer[at]) + 1) % 10) + answer[at + 1 :]


def build_pairs(path: Path) -> list[tuple[str, str, bool, str]]:
    answers = [json.loads(line)["answer"] for line in path.read_text().splitlines() if line.strip()]
    pairs = []
    for answer in answers:
        pairs.append((answer, answer, True, "self"))
        pairs.extend((answer, text, True, "rewrite") for text in rewrites(answer))
        wrong = perturbed(answer)
        if wrong is not None:
            pairs.append((answer, wrong, False, "perturbed"))
    return pairs


def table_pairs() -> list[tuple[str, str, bool, str]]:
    """The equivalence table of tests/math_checker (labels written for verirl: a biased judge)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from math_checker.equivalence_cases import CATEGORIES

    return [(gold, answer, label, category) for category, cases in CATEGORIES.items() for gold, answer, label in cases]


def _response(answer: str) -> str:
    return f"So the final answer is $\\boxed{{{answer}}}$."


def run_verirl(pairs, queue) -> None:
    from verifier_service.math import check
    from verifier_service.math.answer import parse_normalized

    verdicts = []
    start = time.perf_counter()
    for gold, answer, _, _ in pairs:
        parse_normalized.cache_clear()
        verdicts.append(check(gold, _response(answer)).correct)
    queue.put((time.perf_counter() - start, verdicts))


def run_math_verify(pairs, queue) -> None:
    from math_verify import parse, verify

    verdicts = []
    start = time.perf_counter()
    for gold, answer, _, _ in pairs:
        verdicts.append(bool(verify(parse(f"$\\boxed{{{gold}}}$"), parse(_response(answer)))))
    queue.put((time.perf_counter() - start, verdicts))


def in_fresh_process(target, pairs):
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(pairs, queue))
    process.start()
    seconds, verdicts = queue.get()
    process.join()
    return seconds, verdicts


def through_service(pairs, workers: int):
    from verifier_service.client import VerifierClient
    from verifier_service.config import ServerConfig
    from verifier_service.server import create_server

    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=workers, cache_size=0))
    try:
        with VerifierClient(f"127.0.0.1:{port}", timeout=600) as client:
            client.check_math([{"id": "warm", "gold": "1", "response": "\\boxed{1}"}])
            items = [{"id": str(i), "gold": g, "response": _response(a)} for i, (g, a, _, _) in enumerate(pairs)]
            start = time.perf_counter()
            results = client.check_math(items)
            seconds = time.perf_counter() - start
            latencies = []
            for i in range(300):
                t = time.perf_counter()
                client.check_math([{"id": "x", "gold": str(i), "response": f"\\boxed{{{i}}}"}])
                latencies.append((time.perf_counter() - t) * 1000)
    finally:
        server.stop(grace=1)
    return seconds, [r.correct for r in results], [r.status for r in results], latencies


def agreement(pairs, verdicts) -> dict:
    by_kind: dict[str, list[int]] = {}
    for (_, _, label, kind), verdict in zip(pairs, verdicts):
        by_kind.setdefault(kind, []).append(int(verdict == label))
    total = sum(sum(v) for v in by_kind.values()) / len(pairs)
    return {"all": round(total, 4), **{k: round(sum(v) / len(v), 4) for k, v in by_kind.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "math500_test.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_math.json")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    pairs = build_pairs(args.data)
    print(f"{len(pairs)} pairs from {args.data.name}")
    mv_s, mv = in_fresh_process(run_math_verify, pairs)
    ours_s, ours = in_fresh_process(run_verirl, pairs)
    table = table_pairs()
    table_mv_s, table_mv = in_fresh_process(run_math_verify, table)
    table_ours_s, table_ours = in_fresh_process(run_verirl, table)
    svc_s, svc, statuses, latencies = through_service(pairs, args.workers)
    latencies.sort()
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}",
        "pairs": len(pairs),
        "math_verify_single_process": {"pairs_per_s": round(len(pairs) / mv_s, 1), "agreement": agreement(pairs, mv)},
        "verirl_single_process": {"pairs_per_s": round(len(pairs) / ours_s, 1), "agreement": agreement(pairs, ours)},
        f"verirl_service_{args.workers}_workers": {
            "pairs_per_s": round(len(pairs) / svc_s, 1), "agreement": agreement(pairs, svc),
            "not_judged": sum(1 for s in statuses if s not in ("CORRECT", "INCORRECT", "NO_ANSWER")),
        },
        "our_table": {
            "pairs": len(table),
            "note": "tests/math_checker/equivalence_cases.py: labels written for verirl, so a biased judge",
            "math_verify": {"pairs_per_s": round(len(table) / table_mv_s, 1),
                            "agreement": agreement(table, table_mv)["all"]},
            "verirl": {"pairs_per_s": round(len(table) / table_ours_s, 1),
                       "agreement": agreement(table, table_ours)["all"]},
        },
        "single_item_latency_ms": {
            "p50": round(statistics.median(latencies), 3),
            "p99": round(latencies[int(len(latencies) * 0.99) - 1], 3),
        },
        "disagreements_with_labels": {
            "math_verify": [(g, a, l) for (g, a, l, _), v in zip(pairs, mv) if v != l][:40],
            "verirl": [(g, a, l) for (g, a, l, _), v in zip(pairs, ours) if v != l][:40],
        },
    }
    report["speedup_service_vs_math_verify"] = round(
        report[f"verirl_service_{args.workers}_workers"]["pairs_per_s"] / report["math_verify_single_process"]["pairs_per_s"], 1)
    report["speedup_single_process_vs_math_verify"] = round(mv_s / ours_s, 1)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "disagreements_with_labels"}, indent=1))


if __name__ == "__main__":
    main()
