"""The `verirl` command: `serve` runs the verifier; `eval` and `demo` come from evaluate.py.

`eval` and `demo` are registered by verifier_service.evaluate, imported only when one of
them is asked for, so `verirl serve` does not depend on the evaluation code (or the
client it pulls in).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from typing import Callable, Sequence

__all__ = ["main", "build_parser"]

_EVALUATE = "verifier_service.evaluate"
_BORROWED = {  # subcommand -> (help, adder, runner) in verifier_service.evaluate
    "eval": ("score a JSONL file of responses (embedded service unless --server)", "add_eval_arguments", "run_eval"),
    "demo": ("the end-to-end demo", "add_demo_arguments", "run_demo"),
}


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import DEFAULT_ADDRESS, ServerConfig
    defaults = ServerConfig()
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help=f"HOST:PORT to bind (default {DEFAULT_ADDRESS})")
    parser.add_argument("--workers", type=int, default=defaults.math_workers,
                        help="math worker processes (default: CPU count)")
    parser.add_argument("--math-timeout", type=float, default=defaults.math_timeout_s,
                        help="default per-check deadline in seconds")
    parser.add_argument("--queue-capacity", type=int, default=defaults.queue_capacity,
                        help="items allowed to wait for a worker before RESOURCE_EXHAUSTED")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    parser.add_argument("--cache-size", type=int, default=defaults.cache_size, help="results kept by content; 0: off")
    parser.add_argument("--grace", type=float, default=defaults.grace_s,
                        help="seconds in-flight work may take to finish on SIGTERM/SIGINT")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")


def _serve(args: argparse.Namespace) -> int:
    from .config import ServerConfig
    from .server import create_server

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig(address=args.address, math_workers=args.workers, math_timeout_s=args.math_timeout,
                              max_math_timeout_s=max(args.math_timeout, ServerConfig.max_math_timeout_s),
                              queue_capacity=args.queue_capacity, metrics_port=args.metrics_port,
                              cache_size=args.cache_size, grace_s=args.grace)
    except ValueError as exc:
        print(f"verirl serve: {exc}", file=sys.stderr)
        return 2
    if not config.is_loopback:
        print("=" * 78 + f"\nWARNING: binding {config.address}: the verifier has NO authentication; anyone who\n"
              "can reach this address can use it. Bind 127.0.0.1 unless the network is trusted.\n" + "=" * 78,
              file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        server, port = create_server(config)
    except OSError as exc:
        print(f"verirl serve: {exc}", file=sys.stderr)
        return 1
    print(f"verirl serve: listening on {config.host}:{port} ({config.math_workers} math workers"
          + (f", metrics on :{server.metrics.port}" if server.metrics.port else "") + ")", flush=True)
    while not stop.wait(3600):  # a bare wait() would not wake for signals
        pass
    print(f"verirl serve: draining (up to {config.grace_s:g} s)", flush=True)
    server.stop()
    print("verirl serve: stopped", flush=True)
    return 0


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; evaluate.py is imported only if `argv` asks for one of its subcommands."""
    parser = argparse.ArgumentParser(prog="verirl", description="RL post-training with verifiable rewards.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the verifier gRPC service")
    _add_serve_arguments(serve)
    serve.set_defaults(run=_serve)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, adder, runner) in _BORROWED.items():
        child = sub.add_parser(name, help=help_text)
        if name == wanted:
            evaluate = importlib.import_module(_EVALUATE)
            getattr(evaluate, adder)(child)
            child.set_defaults(run=getattr(evaluate, runner))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
