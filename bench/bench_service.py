"""Latency of the service core: pool round trip, single-item CheckMath through gRPC, timeouts.

Usage: .venv/bin/python bench/bench_service.py [--n 2000] [--workers 2]
Prints one JSON object. What is measured:
  pool_round_trip_us    one trivial job (builtins:len) through WorkerPool.run, mean
  grpc_check_math_ms    one CheckMath call of one simple item, distinct items (no cache), p50/p99
  grpc_cached_ms        the same with a cached item (gRPC + servicer overhead only), p50/p99
  timeout_lateness_ms   how long after a 0.5 s deadline the TIMEOUT outcome arrives, max of 5
  respawn_ms            from a TIMEOUT outcome to the next job answered by the replaced worker
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

from verifier_service.workers import Job, WorkerPool


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {"p50": round(ordered[len(ordered) // 2] * 1e3, 3), "p99": round(ordered[int(len(ordered) * 0.99)] * 1e3, 3)}


def bench_pool(n: int) -> dict[str, float]:
    with WorkerPool(1) as pool:
        for _ in range(100):
            pool.run(Job("builtins:len", ("abc",)))
        start = time.perf_counter()
        for _ in range(n):
            pool.run(Job("builtins:len", ("abc",)))
        round_trip_us = (time.perf_counter() - start) / n * 1e6
        lateness, respawn = [], []
        for _ in range(5):
            start = time.perf_counter()
            pool.run(Job("time:sleep", (60,), timeout_s=0.5))
            timed_out = time.perf_counter()
            pool.run(Job("builtins:len", ("abc",)))
            lateness.append(timed_out - start - 0.5)
            respawn.append(time.perf_counter() - timed_out)
    return {"pool_round_trip_us": round(round_trip_us, 1), "timeout_lateness_ms": round(max(lateness) * 1e3, 2),
            "respawn_ms": round(statistics.median(respawn) * 1e3, 2)}


def bench_grpc(n: int, workers: int) -> dict[str, dict[str, float]]:
    # Imported here, not at the top: the forkserver imports this main module once, and grpc in
    # it makes every worker fork slower (see verifier_service/workers.py).
    import grpc

    from verifier_service.config import ServerConfig
    from verifier_service.proto import verifier_pb2 as pb
    from verifier_service.proto import verifier_pb2_grpc as pb_grpc
    from verifier_service.server import create_server

    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=workers))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VerifierStub(channel)

            def timed(response: str) -> float:
                start = time.perf_counter()
                stub.CheckMath(pb.CheckMathRequest(items=[pb.MathItem(gold="1/2", response=response)]))
                return time.perf_counter() - start

            for i in range(100):
                timed(f"\\boxed{{{i}}}")
            fresh = [timed(f"The answer is \\boxed{{{i}/{2 * i}}}") for i in range(1, n + 1)]
            cached = [timed("\\boxed{0.5}") for _ in range(n)]
    finally:
        server.stop(0)
    return {"grpc_check_math_ms": _percentiles(fresh), "grpc_cached_ms": _percentiles(cached)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = {"machine": f"{platform.machine()} {platform.python_version()}", "date": time.strftime("%Y-%m-%d")}
    result.update(bench_pool(args.n))
    result.update(bench_grpc(args.n, args.workers))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
