"""Shared fixtures: names of the test-only worker functions (tests/slow_functions.py)."""

from __future__ import annotations

from typing import Callable

import pytest

import slow_functions


@pytest.fixture(scope="session")
def slow_fn() -> Callable[[str], str]:
    """`slow_fn("spin")` -> the "module:function" name a worker process can import."""
    return lambda name: f"{slow_functions.__name__}:{name}"
