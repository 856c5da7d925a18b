"""glibc malloc settings for the long-running server process: fewer arenas, and a periodic trim.

Why: the server runs 64 gRPC handler threads. glibc gives threads their own malloc arenas (up to
8 per core); requests of very different sizes (a 2 MiB string, then thousands of small items) leave
freed memory scattered over those arenas, where it stays in the process's RSS. That is growth that
tracks the work done, not a leak of Python objects, and is what the soaks showed (docs/benchmarks.md,
"Load and soak"). Two standard remedies, both glibc-only and no-ops elsewhere:

- `limit_arenas(n)`: mallopt(M_ARENA_MAX, n), before the handler threads start (threads that already
  have an arena keep it);
- `fix_mmap_threshold(b)`: mallopt(M_MMAP_THRESHOLD, b). By default glibc raises the threshold to the
  size of every mmap'd block freed (up to 32 MiB), so after one 2 MiB request is freed, later 2 MiB
  buffers come from the arenas, where they fragment and stay; a fixed threshold keeps every large
  block in its own mapping, returned to the kernel when freed;
- `Trimmer`: a daemon thread that calls malloc_trim(0) every `every_s` seconds, returning free pages
  at the top of every arena and, since glibc 2.8, free whole pages inside them to the kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

__all__ = ["limit_arenas", "fix_mmap_threshold", "trim", "Trimmer"]

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # <malloc.h>
M_MMAP_THRESHOLD = -3


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # glibc only (musl and macOS have neither)
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(n: int) -> bool:
    """At most `n` malloc arenas from now on; False where glibc's mallopt is not available or n < 1."""
    libc = _libc()
    if libc is None or n < 1:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, n))


def fix_mmap_threshold(size: int) -> bool:
    """Blocks of at least `size` bytes get their own mapping, always (no dynamic threshold)."""
    libc = _libc()
    if libc is None or size < 1:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, size))


def trim() -> bool:
    """malloc_trim(0): True if memory was given back to the kernel."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class Trimmer:
    """malloc_trim(0) every `every_s` seconds on a daemon thread, until stop()."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.trims = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="verirl-malloc-trim", daemon=True)

    def start(self) -> Trimmer:
        if _libc() is not None and self.every_s > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                trim()
                self.trims += 1
            except Exception:  # a failed trim must never take the server down
                log.exception("malloc_trim failed")
