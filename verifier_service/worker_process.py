"""The code that runs inside a worker process of verifier_service.workers.WorkerPool.

Kept apart from the pool so the forkserver preloads only this (and the checkers), not the
pool's threading machinery, and so it is plain what a worker does: start, warm up, then
answer `(fn, args)` messages on its pipe until the pipe closes. It has no timer of its
own: the pool enforces deadlines by killing the process.
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing.forkserver
import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

__all__ = ["worker_main", "REASON_MAX"]

REASON_MAX = 500  # characters of an exception message kept in a reason


def _resolve(name: str, table: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    fn = table.get(name)
    if fn is None:
        module, _, attr = name.partition(":")
        fn = table[name] = getattr(importlib.import_module(module), attr)
    return fn


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent (the forkserver) exits, so no orphan
    keeps running a 40 s sympy call after the server process died, even by SIGKILL.

    The forkserver exits once every holder of its "alive" pipe has closed it; each forked
    child inherits a copy (a private attribute of multiprocessing.forkserver, stable since
    3.4), so the worker closes its own, or a busy worker would keep the forkserver alive."""
    state = multiprocessing.forkserver._forkserver
    alive_fd = getattr(state, "_forkserver_alive_fd", None)  # private: tolerate its absence
    if alive_fd is not None:
        os.close(alive_fd)
        state._forkserver_alive_fd = None
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def worker_main(conn: Connection, warmup: Sequence[tuple[str, tuple]], sys_path: list[str]) -> None:
    # Ctrl-C reaches the whole process group; the server drains its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    sys.path[:] = sys_path    # like spawn: the job modules the parent can import, the worker can
    table: dict[str, Callable[..., Any]] = {}
    for name, args in warmup:
        try:
            _resolve(name, table)(*args)
        except Exception as exc:  # reported to the parent, which refuses to start
            conn.send((False, f"warm-up {name} failed: {type(exc).__name__}: {exc}"[:REASON_MAX]))
            return
    conn.send((True, os.getpid()))
    while True:
        try:
            name, args = conn.recv()
        except EOFError:      # the pool closed its end: exit quietly
            return
        try:
            reply = (True, _resolve(name, table)(*args))
        except Exception as exc:  # the boundary: a raising job becomes a FAILED outcome
            reply = (False, f"{type(exc).__name__}: {exc}"[:REASON_MAX])
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send((False, f"result of {name} cannot be pickled: {exc}"[:REASON_MAX]))
