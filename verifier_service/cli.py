"""The `verirl` command: `serve` runs the verifier; `eval` and `eval-demo` come from evaluate.py;
`demo` (the main job: SFT + GRPO, trainer/demo.py) and `train` are plugins of the trainer.

`eval` and `eval-demo` are registered by verifier_service.evaluate, imported only when one of
them is asked for, so `verirl serve` does not depend on the evaluation code (or the
client it pulls in).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import signal
import sys
import threading
from typing import Any, Callable, Sequence

__all__ = ["main", "build_parser"]

PLUGIN_GROUP = "verirl.commands"
_EVALUATE = "verifier_service.evaluate"
_BORROWED = {  # subcommand -> (help, adder, runner) in verifier_service.evaluate
    "eval": ("score a JSONL file of responses (embedded service unless --server)", "add_eval_arguments", "run_eval"),
    "eval-demo": ("grade the bundled math samples through an embedded service (a quick look at the verifier)",
                  "add_demo_arguments", "run_demo"),
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
    parser.add_argument("--malloc-arena-max", type=int, default=defaults.malloc_arena_max,
                        help="glibc malloc arenas of the server process; 0: glibc's default (8 per core)")
    parser.add_argument("--malloc-trim-every", type=float, default=defaults.malloc_trim_every_s, metavar="SECONDS",
                        help="return free heap pages to the kernel this often; 0: never")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=defaults.malloc_mmap_threshold, metavar="BYTES",
                        help="heap blocks this large always get their own mapping; 0: glibc's dynamic threshold")
    parser.add_argument("--grace", type=float, default=defaults.grace_s,
                        help="seconds in-flight work may take to finish on SIGTERM/SIGINT")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    _add_code_arguments(parser, defaults)
    _add_prm_arguments(parser)
    _add_access_arguments(parser)


def _add_code_arguments(parser: argparse.ArgumentParser, defaults: Any) -> None:
    from .config import SANDBOX_MODES
    code = parser.add_argument_group("code", "the code sandbox (docs/sandbox.md)")
    code.add_argument("--sandbox", choices=SANDBOX_MODES, default=defaults.sandbox,
                      help="full: every protection or no code at all (code items then answer UNAVAILABLE, and the "
                           "log says why); weak: run with what this machine has; off: run no code")
    code.add_argument("--code-slots", type=int, default=defaults.code_slots,
                      help="programs run at once, at most one core each (default 0: 4 per CPU core)")
    code.add_argument("--code-demote-after-ms", type=int, default=defaults.code_demote_after_ms, metavar="MS",
                      help="a run that has used this much CPU gets the lowest CPU weight (cpu.shares 2), so that "
                           "honest work wins the cores and the hog runs on spare cycles (default %(default)s; 0: never)")


def _add_prm_arguments(parser: argparse.ArgumentParser) -> None:
    from .prm.config import DEVICES, PRMConfig
    from tasks.prm_format import AGGREGATIONS, KINDS
    defaults = PRMConfig(dir="-")
    prm = parser.add_argument_group("prm", "process reward model step scoring (docs/prm.md); the --prm-* format "
                                    "flags describe a model without verirl_prm.json, and override the file")
    prm.add_argument("--prm", metavar="DIR", help="serve this local Hugging Face PRM directory (ScoreSteps, "
                                                  "ScoreCandidates); the server fails to start if it does not load")
    prm.add_argument("--prm-kind", choices=KINDS)
    prm.add_argument("--prm-tag", metavar="TEXT", help="the step tag appended after every step")
    prm.add_argument("--prm-separator", metavar="TEXT",
                     help="text put before every step (\\n and \\t read as newline and tab)")
    prm.add_argument("--prm-good-token", metavar="TOKEN", help="causal_lm: the token meaning a correct step")
    prm.add_argument("--prm-bad-token", metavar="TOKEN", help="causal_lm: the token meaning a wrong step")
    prm.add_argument("--prm-correct-label", type=int, choices=(0, 1),
                     help="token_classification with 2 labels: the index of 'correct'")
    prm.add_argument("--prm-aggregation", choices=AGGREGATIONS, help="default aggregation of step scores")
    prm.add_argument("--prm-max-length", type=int, metavar="TOKENS",
                     help="longest chain scored (longer: TOO_LONG); capped by the model's context")
    prm.add_argument("--prm-device", choices=DEVICES, default=defaults.device)
    prm.add_argument("--prm-batch-tokens", type=int, default=defaults.batch_tokens,
                     help="padded tokens per forward pass")
    prm.add_argument("--prm-compile", action="store_true",
                     help="torch.compile the scoring forward (faster on a GPU once compiled; docs/benchmarks.md)")
    prm.add_argument("--prm-timeout", type=float, default=defaults.timeout_s,
                     help="deadline of a PRM item in seconds, waiting included (then TIMEOUT)")


def _unescape(text: str | None) -> str | None:
    """\\n and \\t typed in a flag become a newline and a tab (a shell makes "\\n\\n" easier than a real one);
    nothing else changes, so a non-ASCII tag (Math-Shepherd's "ки") passes as is."""
    return None if text is None else text.replace("\\n", "\n").replace("\\t", "\t")


def _prm_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.prm is None:
        return None
    overrides = {"kind": args.prm_kind, "step_tag": _unescape(args.prm_tag),
                 "step_separator": _unescape(args.prm_separator), "good_token": args.prm_good_token,
                 "bad_token": args.prm_bad_token, "correct_label": args.prm_correct_label,
                 "aggregation": args.prm_aggregation, "max_length": args.prm_max_length}
    return {"dir": args.prm, "device": args.prm_device, "batch_tokens": args.prm_batch_tokens,
            "compile": args.prm_compile, "timeout_s": args.prm_timeout, **{k: v for k, v in overrides.items() if v is not None}}


TOKEN_ENV = "VERIRL_AUTH_TOKEN"


def _add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """Who may call the server, and the per-call log (docs/security.md). No flag takes a secret:
    a command line is visible to every user through `ps`."""
    access = parser.add_argument_group("access", "authentication, TLS and the per-call log (docs/security.md)")
    access.add_argument("--auth-token-file", metavar="FILE",
                        help=f"bearer tokens accepted, one per line ('#' comments); ${TOKEN_ENV} adds one more")
    access.add_argument("--tls-cert", metavar="PEM", help="server certificate chain; with --tls-key: TLS only")
    access.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    access.add_argument("--tls-client-ca", metavar="PEM",
                        help="require client certificates signed by this CA (mTLS)")
    access.add_argument("--insecure-allow-remote", action="store_true",
                        help="serve a non-loopback --address with no authentication (anyone may call it)")
    access.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON object per log line, and one access line per RPC")


def _access_settings(args: argparse.Namespace) -> dict[str, Any]:
    """ServerConfig fields from the access flags and $VERIRL_AUTH_TOKEN (ValueError/OSError if unreadable)."""
    from .config import read_token_file
    tokens = read_token_file(args.auth_token_file) if args.auth_token_file else ()
    if os.environ.get(TOKEN_ENV, "").strip():
        tokens += (os.environ[TOKEN_ENV].strip(),)
    return {"auth_tokens": tokens, "tls_cert_file": args.tls_cert, "tls_key_file": args.tls_key,
            "tls_client_ca_file": args.tls_client_ca, "allow_insecure_remote": args.insecure_allow_remote,
            "access_log": args.log_format == "json"}


def _serve(args: argparse.Namespace) -> int:
    from . import memory_debug
    from .config import ServerConfig
    from .logs import configure_logging
    from .prm.process import PRMStartError
    from .server import access_summary, create_server

    configure_logging(args.log_format, args.log_level)
    memory_debug.install_from_env()
    try:
        config = ServerConfig(address=args.address, math_workers=args.workers, math_timeout_s=args.math_timeout,
                              max_math_timeout_s=max(args.math_timeout, ServerConfig.max_math_timeout_s),
                              queue_capacity=args.queue_capacity, metrics_port=args.metrics_port,
                              cache_size=args.cache_size, malloc_arena_max=args.malloc_arena_max,
                              malloc_trim_every_s=args.malloc_trim_every,
                              malloc_mmap_threshold=args.malloc_mmap_threshold, own_process=True,
                              grace_s=args.grace, sandbox=args.sandbox,
                              code_slots=args.code_slots, code_demote_after_ms=args.code_demote_after_ms,
                              prm=_prm_settings(args), **_access_settings(args))
    except (ValueError, OSError) as exc:
        print(f"verirl serve: {exc}", file=sys.stderr)
        return 2
    if not config.is_loopback and not config.authenticated:
        print("=" * 78 + f"\nWARNING: binding {config.address}: the verifier has NO authentication; anyone who\n"
              "can reach this address can use it (--insecure-allow-remote). Give --auth-token-file or\n"
              "--tls-client-ca, or bind 127.0.0.1.\n" + "=" * 78, file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        server, port = create_server(config)
    except (OSError, ValueError, PRMStartError) as exc:
        print(f"verirl serve: {exc}", file=sys.stderr)
        return 1
    print(f"verirl serve: listening on {config.host}:{port} ({config.math_workers} math workers, "
          f"code sandbox {server.sandbox_summary()}, " + access_summary(config)
          + (f", metrics on :{server.metrics.port}" if server.metrics.port else "")
          + (f", PRM {server.prm.model} on {server.prm.info['device']}" if server.prm else "") + ")",
          flush=True)
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
    for name in _plugin_commands():  # listed in --help; main() hands them their arguments
        sub.add_parser(name, help=f"{name} (see `verirl {name} --help`)", add_help=False)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, adder, runner) in _BORROWED.items():
        child = sub.add_parser(name, help=help_text)
        if name == wanted:
            evaluate = importlib.import_module(_EVALUATE)
            getattr(evaluate, adder)(child)
            child.set_defaults(run=getattr(evaluate, runner))
    return parser


def _plugin_commands() -> dict[str, Any]:
    """Subcommands registered by other packages (pyproject: [project.entry-points."verirl.commands"]),
    found by name so this package never imports them (the trainer brings torch)."""
    return {entry.name: entry for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        plugin = _plugin_commands().get(argv[0])
        if plugin is not None:  # e.g. `verirl train grpo --config FILE`: the rest is the plugin's
            return plugin.load()(argv[1:])
    args = build_parser(argv).parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
