"""Code checking: model-written Python or C++ run against tests in an isolated sandbox.

`CodeRunner(RunnerConfig()).start()` then `.run(CodeRequest) -> CodeVerdict` (thread-safe) and
`.close()`. The runner never raises for bad input or bad code: every outcome is a verdict with an
explicit status. Threat model: docs/sandbox.md and the docstrings of isolation.py and runner.py.
No grpc here: the servicer converts proto <-> these types.

Names are imported on first use (PEP 562): the fork-servers import this package too, and every
module they hold makes each of their forks slower (~0.1 ms per MiB on our machines).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CodeRunner", "RunnerConfig", "SandboxUnavailable", "CodeRequest", "CodeVerdict", "CodeStatus",
    "CodeLimits", "CodeTests", "StdioCase", "StdioTests", "AssertTests", "CallCase", "CallTests",
    "TestOutcome", "Whitespace", "Extraction", "JUDGED", "LANGUAGES",
]

_RUNNER = {"CodeRunner", "RunnerConfig", "SandboxUnavailable"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(".runner" if name in _RUNNER else ".types", __name__), name)
