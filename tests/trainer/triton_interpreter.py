"""Triton kernels on the CPU for the tests: code run in a child process under Triton's interpreter
(TRITON_INTERPRET=1 must be set before the kernels are first built, so not in the test process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_interpreted(code: str) -> str:
    """Runs `code` (dedented) with the repository importable; returns its stdout, or fails the test."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                            timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
