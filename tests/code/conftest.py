"""The `runner` fixture: one started runner per test module (starting fork-servers costs ~0.2 s)."""

from __future__ import annotations

import pytest
from sandbox_helpers import start_runner


@pytest.fixture(scope="module")
def runner():
    """One slot, so that "the next run" always lands in the same slot as the attack. CPU-hog
    demotion off: these tests judge limits, and a demoted program on a machine busy with other
    jobs is starved into "not judged" instead of its TIMEOUT (test_cpu_demotion.py covers that)."""
    r = start_runner(slots=1, demote_after_ms=0)
    yield r
    r.close()
