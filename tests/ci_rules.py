"""What a test does when something it needs is missing here: a skip, except under CI (`CI` set), where
it is a failure. CI's machine has all of it (root for the sandbox, PSI, Chromium, torch and the PRM's
packages), so a skip there would hide a check that never ran."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def unavailable(message: str, *, module: bool = False) -> NoReturn:
    """Skip (the whole module with `module`), or fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (under CI a failure, not a skip)", pytrace=False)
    pytest.skip(message, allow_module_level=module)


def require_root(what: str, *, module: bool = False) -> None:
    if os.geteuid() != 0:
        unavailable(f"{what} needs root", module=module)


def require_modules(*names: str) -> list[ModuleType]:
    """The modules, imported; one missing is unavailable() (the import error names it)."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            unavailable(f"could not import {name!r}: {exc}")
    return modules
