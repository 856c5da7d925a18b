"""Code checking: model-written Python or C++ run against tests in an isolated sandbox.

`CodeRunner(RunnerConfig()).start()` then `.run(CodeRequest) -> CodeVerdict` (thread-safe) and
`.close()`. The runner never raises for bad input or bad code: every outcome is a verdict with an
explicit status. Threat model: docs/sandbox.md and the docstrings of isolation.py and runner.py.
No grpc here: the servicer converts proto <-> these types.

The runner is imported on first use (PEP 562): the fork-servers import this package too, and
every module they hold makes each of their forks slower.
"""

from __future__ import annotations

import importlib
from typing import Any

from .types import (JUDGED, LANGUAGES, AssertTests, CallCase, CallTests, CodeLimits, CodeRequest, CodeStatus,
                    CodeTests, CodeVerdict, Extraction, StdioCase, StdioTests, TestOutcome, Whitespace)

__all__ = [
    "CodeRunner", "RunnerConfig", "SandboxUnavailable", "CodeRequest", "CodeVerdict", "CodeStatus",
    "CodeLimits", "CodeTests", "StdioCase", "StdioTests", "AssertTests", "CallCase", "CallTests",
    "TestOutcome", "Whitespace", "Extraction", "JUDGED", "LANGUAGES",
]

_LAZY = {"CodeRunner", "RunnerConfig", "SandboxUnavailable"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(".runner", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
