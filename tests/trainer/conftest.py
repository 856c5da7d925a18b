"""Fixtures of the trainer tests: the tiny model on disk, a real verifier server on a free port.

No __init__.py in this folder: a `tests/trainer` package would shadow the real `trainer` package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.tiny import build_tiny
    return build_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def verifier_address() -> Iterator[str]:
    """A real gRPC verifier server (port 0) for the module; the trainer reaches it through the client."""
    from verifier_service.config import ServerConfig
    from verifier_service.server import create_server
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def seven_data(tmp_path_factory) -> Path:
    """Problems whose gold is always 7 (test_grpo.py's trivially learnable task)."""
    from tasks.types import Problem
    path = tmp_path_factory.mktemp("seven") / "problems.jsonl"
    rows = [Problem(id=f"q{i}", prompt=f"Question {i}: which number?\n", gold="7").to_dict() for i in range(16)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
