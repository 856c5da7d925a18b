"""The `verirl` command line: subcommands other packages register (entry points)."""

from __future__ import annotations

import json
from pathlib import Path

from verifier_service.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def test_train_is_a_registered_subcommand_handed_its_arguments(capsys):
    assert "train" in build_parser().format_help()
    code = main(["train", "grpo", "--config", str(ROOT / "configs" / "demo.yaml"), "--print-config", "seed=7"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 7


def test_train_with_an_unknown_key_is_an_error(capsys):
    assert main(["train", "grpo", "--config", str(ROOT / "configs" / "demo.yaml"), "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
