"""`verirl train ...`: the trainer's command line, exposed as `main(argv)`.

    verirl train grpo --config configs/demo.yaml rollout.group_size=4 optim.lr=1e-4
    verirl train sft --config configs/sft_demo.yaml steps=100

The `verirl` CLI (verifier_service/cli.py) hands everything after `train` to `main` and imports this
module lazily inside that subcommand, so the service's commands never import torch. Also runnable as
`python -m trainer.cli grpo --config FILE [key=value ...]`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from typing import Any, NoReturn, Sequence

__all__ = ["main", "build_parser", "RECIPES"]

# recipe -> (config loader, train function, result keys printed), as "module:name"; imported lazily
RECIPES = {
    "grpo": ("trainer.config:load_config", "trainer.grpo:train", ("step", "reward_mean", "reward_history")),
    "sft": ("trainer.sft_config:load_sft_config", "trainer.sft:train", ("step", "loss", "eval_history", "model_dir")),
    "prm": ("trainer.prm_config:load_prm_config", "trainer.prm:train", ("step", "loss", "eval_f1", "model_dir")),
    "rm": ("trainer.rm_config:load_rm_config", "trainer.reward_model:train", ("step", "loss", "eval_history", "model_dir")),
    "dpo": ("trainer.dpo_config:load_dpo_config", "trainer.dpo:train", ("step", "loss", "eval_history", "model_dir")),
    "ppo": ("trainer.ppo_config:load_ppo_config", "trainer.ppo:train", ("step", "reward_mean", "reward_history", "model_dir")),
}  # rm, prm, dpo, ppo join here (issue 4)


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verirl train", description="Train a policy with a recipe.")
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--config", required=True, help="YAML file (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=1e-5")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    from trainer.config import to_dict
    load, run, keys = RECIPES[args.recipe]
    try:
        cfg = _resolve(load)(args.config, args.overrides)
    except (ValueError, OSError) as exc:
        print(f"verirl train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    result = _resolve(run)(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank has the same (global) result
        print(json.dumps({k: result[k] for k in keys if k in result}), flush=True)
    return 0


def _main_torchrun_rank() -> NoReturn:
    """A torchrun rank ends through `distributed.leave`, also after an error (its traceback printed
    first): by then the run's work is done and written (checkpoints behind a barrier, sinks closed,
    the process group destroyed), and what interpreter teardown would add can only fail: a C++ thread
    still joinable can abort the rank, and vLLM's finalizers would tear down groups already destroyed."""
    from trainer.distributed import leave
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    leave(code)


if __name__ == "__main__":  # vLLM starts helpers with spawn: the guard keeps them from rerunning this
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _main_torchrun_rank()
    sys.exit(main())
