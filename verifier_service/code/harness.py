"""What runs inside the sandbox after the isolation layers are in place: the solution process's
three ways of running code, and the test process of assert-style tests.

The solution process (untrusted: it runs the candidate's code, as the slot's code uid):
- `run_program`: the code as `__main__` with stdin/stdout (stdio tests). Its output is judged
  outside, by the runner; its exit status is read by the run's init, not reported by itself.
- `serve`: the code is executed once, then function calls arrive as frames on a channel and
  each return value goes back reduced to plain data (`plain`): to the init for call-style tests
  (compared outside by the runner), to the test process for assert-style tests.

The test process (assert style: the run's init after it has started the solution process,
dropped to the slot's test uid, a *different* uid, and become not dumpable) runs the trusted
test code with every global the solution defines replaced by a proxy that calls into the
solution process. So the asserts compare plain values that the solution cannot fake, and the
solution cannot reach the test process at all: it cannot signal it, read or write its memory or
its descriptors (other uid, not dumpable, ptrace denied by seccomp), and it never held the test
code (the test process reads it, after the fork, from a descriptor the solution process never
had). `os._exit(0)`
in the solution ends the calls and every remaining test fails; printing a fake summary prints to
a stdout nobody reads for the verdict.
Stdlib only: this module is preloaded into the fork-server.
"""

from __future__ import annotations

import ast
import atexit
import builtins
import importlib
import io
import sys
import traceback
import types
from typing import Any, Callable

from . import plain, wire

__all__ = ["run_program", "serve", "run_tests", "Stopped", "Exchange", "EXIT_MEMORY", "MAX_MESSAGE"]

EXIT_MEMORY = 113          # the solution process ran out of memory (MemoryError)
MAX_MESSAGE = 64 << 20     # a frame between the solution and its peer
_EXPORT_LIMIT = 1 << 16    # a non-callable global larger than this is exported as a handle


def _fresh_stdio() -> None:
    """Text streams on fds 0-2 as the process now has them (the fork-server's were others)."""
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                                 encoding="utf-8", errors="surrogateescape")
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                                   encoding="utf-8", errors="surrogateescape")
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                                   encoding="utf-8", errors="backslashreplace",
                                                   line_buffering=True)


def _main_module() -> dict[str, Any]:
    module = types.ModuleType("__main__")
    module.__file__ = "/tmp/main.py"
    sys.modules["__main__"] = module
    sys.argv = ["main.py"]
    return module.__dict__


def _exit_status(exit: SystemExit) -> int:
    if exit.code is None:
        return 0
    if type(exit.code) is int:
        return exit.code & 0xFF
    print(exit.code, file=sys.stderr)
    return 1


def _finish(status: int) -> int:
    """What the interpreter does at exit: join non-daemon threads, run atexit, flush."""
    try:
        threading = sys.modules.get("threading")  # imported by the program if it made threads
        if threading is not None:
            threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # a broken stdout or a raising exit hook: the program failed
        return status or 1
    return status


def run_program(code: str) -> int:
    """Run `code` as a script; return its exit status."""
    _fresh_stdio()
    scope = _main_module()
    try:
        exec(compile(code, "main.py", "exec"), scope)
        status = 0
    except SystemExit as exit:
        status = _exit_status(exit)
    except MemoryError:
        status = EXIT_MEMORY
    except BaseException:  # the program's own error: report it the way Python would
        traceback.print_exc()
        status = 1
    return _finish(status)


def serve(code: str, channel: int, export: bool) -> int:
    """Execute `code`, then answer call frames on `channel` until it closes.

    With `export`, first send the solution's globals: functions by name, small plain values by
    value, anything else as a handle."""
    _fresh_stdio()
    scope = _main_module()
    kept: list[Any] = []

    def keep(obj: Any) -> int:
        kept.append(obj)
        return len(kept) - 1

    def resolve(tag: dict) -> Any:
        if "fn" in tag:
            return scope.get(str(tag["fn"]))
        return kept[int(tag["h"])]

    try:
        exec(compile(code, "main.py", "exec"), scope)
    except SystemExit as exit:
        wire.write_frame(channel, {"load_error": f"SystemExit({exit.code!r}) while loading the solution",
                                   "exc": "SystemExit"})
        return _finish(_exit_status(exit) or 1)
    except BaseException as err:  # the solution fails to load: every test fails with this
        wire.write_frame(channel, {"load_error": _tail(traceback.format_exc()), "exc": type(err).__name__})
        return _finish(EXIT_MEMORY if isinstance(err, MemoryError) else 1)
    if export:
        names = {}
        for name, value in list(scope.items()):
            if name.startswith("__"):
                continue
            if isinstance(value, types.ModuleType):  # MBPP's tests use the solution's imports
                names[name] = {"mod": str(value.__name__)}
                continue
            if callable(value):
                names[name] = {"fn": name}
                continue
            try:
                encoded = plain.encode(value)
                small = len(repr(encoded)) <= _EXPORT_LIMIT
            except (plain.NotPlain, RecursionError, ValueError):
                small = False
            names[name] = encoded if small else {"h": keep(value), "type": type(value).__name__[:100]}
        wire.write_frame(channel, {"names": names})
    while True:
        frame = wire.read_frame(channel, MAX_MESSAGE)
        if frame is None:
            return _finish(0)
        request = frame[0]
        try:
            fn = resolve(request["call"]) if type(request["call"]) is dict else scope.get(str(request["call"]))
            if fn is None:
                raise NameError(f"name {request['call']!r} is not defined by the solution")
            args = plain.decode(request.get("args", []), resolve)
            kwargs = plain.decode(request.get("kwargs", {"d": []}), resolve)
            result = fn(*args, **{str(k): v for k, v in kwargs.items()})
            reply = {"ok": plain.encode(result, keep)}
        except MemoryError:
            reply = {"exc": "MemoryError", "msg": ""}
        except SystemExit as exit:
            wire.write_frame(channel, {"exc": "SystemExit", "msg": repr(exit.code)})
            return _finish(_exit_status(exit) or 1)
        except BaseException as err:  # the candidate raised: that is its answer to this call
            reply = {"exc": type(err).__name__[:100], "msg": _tail(str(err), 500)}
        sys.stdout.flush()
        wire.write_frame(channel, reply)


def _tail(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


# ---------------------------------------------------------------- the test process

class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one."""


class _CandidateGone(BaseException):
    """The solution process stopped answering (it exited, was killed, or sent garbage)."""


class Stopped(BaseException):
    """Raised by an exchange when the run hit a limit: the tests end here (never a test result)."""


# Sends a request frame (None: only waits) and returns the solution's next reply, or None when
# it is gone. The run's init supplies it: it also watches limits and output while waiting.
Exchange = Callable[[dict | None], dict | None]


class _Remote(plain.Function):
    """A function of the solution, called across the channel."""

    __slots__ = ("exchange",)

    def __init__(self, name: str, exchange: Exchange) -> None:
        super().__init__(name)
        self.exchange = exchange

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            request = {"call": self.name, "args": plain.encode(list(args)), "kwargs": plain.encode(kwargs)}
        except plain.NotPlain as err:
            raise TypeError(f"argument to {self.name}() is not plain data: {err}") from None
        reply = self.exchange(request)
        if reply is None:
            raise _CandidateGone()
        if "ok" in reply:
            try:
                return plain.decode(reply["ok"], self._resolve)
            except (plain.NotPlain, ValueError, RecursionError, TypeError, KeyError):
                raise _CandidateGone() from None
        name, message = str(reply.get("exc", "Exception")), str(reply.get("msg", ""))
        kind = getattr(builtins, name, None)
        if isinstance(kind, type) and issubclass(kind, Exception) and name != "CandidateError":
            raise kind(message)
        raise CandidateError(f"{name}: {message}")

    def _resolve(self, tag: dict) -> Any:
        if "fn" in tag:
            return _Remote(str(tag["fn"]), self.exchange)
        return plain.Handle(int(tag["h"]), str(tag.get("type", "object")))


def _outcome(index: int, err: BaseException | None, source: str) -> dict[str, Any]:
    if err is None:
        return {"i": index, "status": "PASSED"}
    if isinstance(err, AssertionError):
        message = f": {err}" if str(err) else ""
        return {"i": index, "status": "FAILED", "detail": _tail(f"assertion failed: {source}{message}", 1000)}
    if isinstance(err, CandidateError) and str(err).startswith("MemoryError"):
        return {"i": index, "status": "MEMORY_LIMIT", "detail": "MemoryError in the solution"}
    if isinstance(err, MemoryError):
        return {"i": index, "status": "MEMORY_LIMIT", "detail": "MemoryError"}
    return {"i": index, "status": "RUNTIME_ERROR",
            "detail": _tail(f"{type(err).__name__}: {err} (in {source})", 1000)}


def run_tests(test_code: str, entry_point: str, exchange: Exchange, stop_first: bool) -> dict[str, Any]:
    """Run the test code against the solution behind `exchange`; return the report."""
    try:
        tree = ast.parse(test_code, "<tests>")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        return {"error": f"the test code does not compile: {err}"}
    statements = tree.body
    asserts = [s for s in statements if isinstance(s, ast.Assert)]
    total = len(asserts) + (1 if entry_point else 0) or 1
    hello = exchange(None)
    if hello is None:
        return {"tests": [], "total": total, "gone": True}
    if "load_error" in hello:
        status = "MEMORY_LIMIT" if hello.get("exc") == "MemoryError" else "RUNTIME_ERROR"
        detail = "the solution failed to load: " + str(hello["load_error"])
        return {"tests": [{"i": i, "status": status, "detail": _tail(detail, 2000)} for i in range(total)],
                "total": total}
    scope: dict[str, Any] = {"__name__": "__verirl_tests__", "__builtins__": builtins}
    resolver = _Remote("", exchange)
    exported = hello.get("names", {})
    for name, value in exported.items():
        try:
            if type(value) is dict and "mod" in value:
                module = str(value["mod"])
                if module.split(".")[0] in sys.stdlib_module_names:
                    scope[str(name)] = importlib.import_module(module)
                continue
            scope[str(name)] = plain.decode(value, resolver._resolve)
        except (plain.NotPlain, ImportError, ValueError, RecursionError, TypeError, KeyError):
            continue
    outcomes: list[dict[str, Any]] = []
    gone = False
    index = 0
    whole = not asserts and not entry_point
    for statement in statements:
        source = _tail(ast.get_source_segment(test_code, statement) or "<statement>", 300)
        try:
            exec(compile(ast.Module([statement], []), "<tests>", "exec"), scope)
            err = None
        except _CandidateGone:
            gone = True
            break
        except Stopped:
            raise
        except BaseException as caught:  # a failing test is a result, whatever the test raised
            err = caught
        if isinstance(statement, ast.Assert):
            outcomes.append(_outcome(index, err, source))
            index += 1
            if err is not None and stop_first:
                break
        elif err is not None:
            outcomes.append(_outcome(index, err, source))
            break
    if not gone and entry_point and len(outcomes) == len(asserts):
        check = scope.get("check")
        candidate = scope.get(entry_point)
        if not isinstance(candidate, _Remote):
            outcomes.append({"i": index, "status": "FAILED",
                             "detail": f"the solution defines no function {entry_point!r}"})
        elif not callable(check):
            outcomes.append({"i": index, "status": "FAILED", "detail": "the test code defines no check()"})
        else:
            try:
                check(candidate)
                outcomes.append(_outcome(index, None, "check"))
            except _CandidateGone:
                gone = True
            except Stopped:
                raise
            except BaseException as caught:  # as above
                outcomes.append(_outcome(index, caught, f"check({entry_point})"))
    if whole and not gone and not outcomes:
        outcomes.append({"i": 0, "status": "PASSED"})
    return {"tests": outcomes, "total": total, "gone": gone}
