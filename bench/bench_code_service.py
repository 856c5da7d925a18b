"""RunCode items per second through gRPC, against the bare CodeRunner, in one run.

Programs: HumanEval's canonical solutions with their `check(candidate)` (assert style),
cycling over the 164 tasks. Service: a real server on a loopback port (full sandbox, one slot
per core), a client sending batches of --batch items, --in-flight batches at once. Runner: the
same programs on a CodeRunner fed by 2x as many threads as slots (what the service's code queue
does), so the difference is the service's own cost (gRPC, validation, conversion, queue).

    python bench/bench_code_service.py [--n 400] [--batch 32] [--in-flight 4]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from verifier_service.code import AssertTests, CodeRequest, CodeRunner, Extraction, RunnerConfig  # noqa: E402

HUMANEVAL = os.path.join(ROOT, "tests", "fixtures", "code", "HumanEval.jsonl.gz")


def items(n: int) -> list[dict]:
    with gzip.open(HUMANEVAL, "rt") as f:
        tasks = [json.loads(line) for line in f]
    return [{"id": str(i), "language": "python", "extraction": "WHOLE",
             "response": t["prompt"] + t["canonical_solution"],
             "tests": {"assert_code": {"code": t["test"], "entry_point": t["entry_point"]}}}
            for i, t in ((i, tasks[i % len(tasks)]) for i in range(n))]


def bench_service(work: list[dict], batch: int, in_flight: int) -> tuple[float, dict[str, int]]:
    from verifier_service.client import VerifierClient
    from verifier_service.config import ServerConfig
    from verifier_service.server import create_server

    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1))
    try:
        with VerifierClient(f"127.0.0.1:{port}", timeout=600) as client:
            client.run_code(work[:4])  # warm-up
            start = time.perf_counter()
            with ThreadPoolExecutor(in_flight) as pool:
                batches = [work[i:i + batch] for i in range(0, len(work), batch)]
                results = [r for rs in pool.map(client.run_code, batches) for r in rs]
            elapsed = time.perf_counter() - start
    finally:
        server.stop(0)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return len(work) / elapsed, statuses


def bench_runner(work: list[dict]) -> float:
    requests = [CodeRequest(response=w["response"], language="python",
                            tests=AssertTests(w["tests"]["assert_code"]["code"],
                                              w["tests"]["assert_code"]["entry_point"]),
                            extraction=Extraction.WHOLE)
                for w in work]
    with CodeRunner(RunnerConfig()) as runner:
        runner.run(requests[0])
        start = time.perf_counter()
        with ThreadPoolExecutor(2 * runner.slots) as pool:
            list(pool.map(runner.run, requests))
        return len(requests) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    work = items(args.n)
    load = os.getloadavg()
    service, statuses = bench_service(work, args.batch, args.in_flight)
    runner = bench_runner(work)
    print(json.dumps({"cores": os.cpu_count(), "n": args.n, "batch": args.batch, "in_flight": args.in_flight,
                      "service_items_per_s": round(service, 1), "runner_items_per_s": round(runner, 1),
                      "statuses": statuses, "loadavg_before": [round(x, 2) for x in load],
                      "loadavg_after": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
