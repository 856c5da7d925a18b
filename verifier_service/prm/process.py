"""The PRM process: the model loaded once, in a process of its own, fed batches over a pipe.

Why a process: torch and the weights stay out of the server process (the math and code paths
start fast and never load torch), a crash of the model (a segfault, the OOM killer, a kill -9)
takes down only this process, and a hung forward pass can be killed. Started with "spawn", so
the child begins clean (no copy of the server's threads or gRPC state).

Protocol (one request in flight at a time; only the batcher thread talks to the process):
  child  -> parent  ("ready", info) once loaded, or ("failed", reason); info["probe"] is PROBE
                    rendered by transformers' AutoTokenizer, for the parent to compare with its own
  parent -> child   (op, payload)  op "rows": (rows, positions, spans); op "candidates": (prefix, suffixes,
                    positions, spans, prefix_spans) (engine.Job)
  child  -> parent  ("ok", result) or ("error", reason) for an exception of the forward pass
A dead child shows as end-of-file on the pipe.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

from tasks.prm_format import PRMFormat

__all__ = ["PRMProcess", "PRMDied", "PRMHung", "PRMFailed", "PRMStartError"]

log = logging.getLogger(__name__)


class PRMStartError(RuntimeError):
    """The PRM process could not load the model."""


class PRMDied(RuntimeError):
    """The process ended while a batch was in it."""


class PRMHung(RuntimeError):
    """The process did not answer before the deadline (it has been killed)."""


class PRMFailed(RuntimeError):
    """The forward pass raised (the process lives on); the message is the exception."""


def _child_main(conn: Any, directory: str, fmt: dict[str, Any], device: str, compile: bool = False) -> None:
    from transformers import AutoTokenizer

    from tasks.prm_format import render_ids

    from .model import PRMModel
    from .text import PROBE

    try:
        model = PRMModel.load(directory, PRMFormat.from_dict(fmt), device, compile=compile)
        probe = render_ids(AutoTokenizer.from_pretrained(directory), model.fmt, *PROBE)
    except Exception as exc:  # the boundary: the parent reports why the model did not load
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", {**model.describe(), "probe": probe}))
    ops = {"rows": model.score_rows, "candidates": model.score_candidates}
    while True:
        try:
            op, payload = conn.recv()
        except EOFError:  # the parent closed the pipe (or died): nothing more to do
            return
        if op == "stop":
            return
        try:
            conn.send(("ok", ops[op](*payload)))
        except Exception as exc:  # the boundary: a failed batch is reported, the process serves on
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class PRMProcess:
    """Handle on one PRM process. Not thread-safe: one caller (the batcher thread) at a time."""

    def __init__(self, directory: str, fmt: PRMFormat, device: str, start_timeout_s: float,
                 compile: bool = False) -> None:
        self.directory = directory
        self.fmt = fmt
        self.device = device
        self.compile = compile
        self.start_timeout_s = start_timeout_s
        self.info: dict[str, Any] = {}
        self._proc: Any = None
        self._conn: Any = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self) -> dict[str, Any]:
        """Start the process and wait until the model is loaded; PRMStartError if it is not."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_child_main, args=(child, self.directory, self.fmt.to_dict(), self.device, self.compile),
                           name="verirl-prm", daemon=True)
        started = time.monotonic()
        proc.start()
        child.close()  # the child's end lives only in the child: its death is then EOF here
        self._proc, self._conn = proc, parent
        try:
            if not parent.poll(self.start_timeout_s):
                raise PRMStartError(f"the PRM did not load within {self.start_timeout_s:g} s")
            message = parent.recv()
        except (EOFError, OSError):
            self.kill()
            raise PRMStartError(f"the PRM process exited while loading (exit code {proc.exitcode})") from None
        except PRMStartError:
            self.kill()
            raise
        if message[0] != "ready":
            self.kill()
            raise PRMStartError(f"the PRM could not load {self.directory}: {message[1]}")
        self.info = message[1]
        log.info("PRM process %d loaded %s in %.1f s (%s)", proc.pid, self.directory, time.monotonic() - started,
                 {k: v for k, v in self.info.items() if k != "probe"})
        return self.info

    def call(self, op: str, payload: tuple, deadline: float) -> Any:
        """Run one op; raises PRMDied, PRMHung (after killing it) or PRMFailed."""
        try:
            self._conn.send((op, payload))
            if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                self.kill()
                raise PRMHung("the PRM did not answer before the deadline; its process was killed")
            status, value = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self._reap()
            raise PRMDied(f"the PRM process died while scoring (exit code {code})") from None
        if status == "error":
            raise PRMFailed(value)
        return value

    def _reap(self) -> int | None:
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        return self._proc.exitcode

    def kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join()
        if self._conn is not None:
            self._conn.close()

    def stop(self, grace_s: float = 5.0) -> None:
        """Ask the process to exit, kill it if it has not within `grace_s`."""
        if self._proc is None:
            return
        try:
            self._conn.send(("stop", ()))
        except (OSError, BrokenPipeError):
            pass
        self._proc.join(timeout=grace_s)
        self.kill()
