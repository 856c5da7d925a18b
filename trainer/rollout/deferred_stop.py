"""`generate`'s deferred stop check, on CUDA too, inside `deferred_stop_checks()`.

After every decode step `generate` asks whether all rows have finished, and reading that answer on the
host waits for the device: the host cannot queue the next step while the current one runs. transformers
has the cure built in (`DeferredStopCheck`: the answer is copied asynchronously and read one step
late, and the one extra step is undone at the end) but turns it on only for Apple's "mps" devices
("we should enable it for cuda if we observe perf gains", transformers 5.19). We observed them: on an
H100, the ~0.5B Qwen2 shape with the static compiled cache decodes 1.39x faster with it at 64 and 128
rows (docs/benchmarks.md, 2026-11-26 fifth session).

The switch is the library's own `DeferredStopCheck.is_supported`, wrapped once so that it also says
yes for a CUDA device while the calling thread is inside `deferred_stop_checks()`; everything else
(other threads, other callers of `generate` in the process, such as TRL in the benchmarks) gets the
library's answer. The generated tokens are the same either way: the extra step runs after every row
has finished and is removed from the output; callers that record per-step values must drop the
surplus (token_sampler.TokenSampler and hf_engine's library recorder both do).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

__all__ = ["deferred_stop_checks"]

_state = threading.local()
_installed = False
_install_lock = threading.Lock()


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        from transformers.generation import utils

        library = utils.DeferredStopCheck.is_supported

        def is_supported(device, cache, cache_is_returned, is_assistant):
            if library(device, cache, cache_is_returned, is_assistant=is_assistant):
                return True
            if is_assistant or getattr(device, "type", None) not in getattr(_state, "device_types", ()):
                return False
            return cache is None or cache.is_croppable or not cache_is_returned  # the library's own rule

        utils.DeferredStopCheck.is_supported = staticmethod(is_supported)
        _installed = True


@contextlib.contextmanager
def deferred_stop_checks(enabled: bool = True, device_types: tuple[str, ...] = ("cuda",)) -> Iterator[None]:
    """While inside (and `enabled`), `generate` calls of this thread on `device_types` defer their stop
    check. On the CPU there is nothing to overlap (the host runs the step), so only CUDA by default;
    tests pass ("cpu",) to run the deferred path here."""
    if not enabled:
        yield
        return
    _install()
    outer = getattr(_state, "device_types", ())
    _state.device_types = outer + tuple(device_types)  # nested: the outer devices stay deferred
    try:
        yield
    finally:
        _state.device_types = outer
