"""`verirl train ...`: the trainer's command line, exposed as `main(argv)`.

    verirl train grpo --config configs/demo.yaml rollout.group_size=4 optim.lr=1e-4

The `verirl` CLI (verifier_service/cli.py) hands everything after `train` to `main` and imports this
module lazily inside that subcommand, so the service's commands never import torch. Also runnable as
`python -m trainer.cli grpo --config FILE [key=value ...]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

__all__ = ["main", "build_parser", "RECIPES"]

RECIPES = ("grpo",)  # sft, rm, prm, dpo, ppo join here (issue 4)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verirl train", description="Train a policy with a recipe.")
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--config", required=True, help="YAML file (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=1e-5")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from trainer.config import load_config, to_dict
    try:
        cfg = load_config(args.config, args.overrides)
    except (ValueError, OSError) as exc:
        print(f"verirl train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    from trainer.grpo import train
    result = train(cfg)
    print(json.dumps({k: result[k] for k in ("step", "reward_mean", "reward_history") if k in result}))
    return 0


if __name__ == "__main__":  # vLLM starts helpers with spawn: the guard keeps them from rerunning this
    sys.exit(main())
