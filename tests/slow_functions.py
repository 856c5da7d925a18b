"""Worker functions for the pool and server tests: checks that never end, crash or misbehave.

They live in a plain module (not a test file) because worker processes import them by name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from verifier_service.math import MathOptions, MathVerdict, check


def spin(*_: object) -> None:
    while True:
        pass


def big_power(*_: object) -> int:
    return (7 ** (10**9)).bit_length()  # one long C call: no Python-level interruption possible


def sympy_factor(*_: object) -> object:
    import sympy
    return sympy.factorint(2**4423 - 1)


def echo(value: object) -> object:
    return value


def pid(*_: object) -> int:
    return os.getpid()


def boom(*_: object) -> None:
    raise ValueError("boom")


def unpicklable(*_: object) -> object:
    return lambda: None


def die(*_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def report_then_sleep(path: str, seconds: float) -> str:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def math_check(gold: str, response: str, options: MathOptions = MathOptions()) -> MathVerdict:
    """The real math check, unless the response is a command: "sleep:S", "spin" or "die"."""
    if response.startswith("sleep:"):
        time.sleep(float(response[6:]))
        response = gold
    elif response == "spin":
        spin()
    elif response == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return check(gold, response, options)
