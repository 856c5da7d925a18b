"""The `runner` fixture: one started runner per test module (starting fork-servers costs ~0.2 s)."""

from __future__ import annotations

import pytest
from sandbox_helpers import start_runner


@pytest.fixture(scope="module")
def runner():
    """One slot, so that "the next run" always lands in the same slot as the attack."""
    r = start_runner(slots=1)
    yield r
    r.close()
