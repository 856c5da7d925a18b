"""Where the server's Python memory goes, for a soak: `VERIRL_TRACEMALLOC=FILE verirl serve ...`.

With the variable set, `verirl serve` starts tracemalloc (15 frames) and every SIGUSR2 appends to FILE
the 25 allocation sites that grew most since the previous signal (the first signal: since start),
with the traced total. Tracing costs CPU and memory itself: for diagnosis, not for production.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import tracemalloc

__all__ = ["install_from_env", "ENV"]

ENV = "VERIRL_TRACEMALLOC"


def install_from_env() -> bool:
    path = os.environ.get(ENV)
    if not path:
        return False
    tracemalloc.start(15)
    state = {"previous": tracemalloc.take_snapshot()}
    lock = threading.Lock()

    def dump() -> None:
        with lock:
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            stats = snapshot.compare_to(state["previous"], "traceback")[:25]
            state["previous"] = snapshot
            current, peak = tracemalloc.get_traced_memory()
            with open(path, "a") as f:
                f.write(f"== {time.strftime('%H:%M:%S')} traced {current / 2**20:.1f} MiB (peak {peak / 2**20:.1f})\n")
                for stat in stats:
                    f.write(f"{stat.size_diff / 2**20:+8.2f} MiB {stat.count_diff:+8d} blocks  now "
                            f"{stat.size / 2**20:7.2f} MiB\n")
                    for line in stat.traceback.format(limit=6):
                        f.write(f"      {line}\n")

    # the handler only starts a thread: a snapshot takes seconds, and a signal handler runs between
    # bytecodes of the main thread
    signal.signal(signal.SIGUSR2, lambda *_: threading.Thread(target=dump, daemon=True).start())
    return True
