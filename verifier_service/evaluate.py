"""Offline evaluation of a JSONL file through the verifier service: `verirl eval` and `verirl demo`.

Why through the service even offline: the numbers must come from the same code
path as training rewards (killable worker processes, deadlines, cache). Without
--server an embedded server runs in this process on a free loopback port.

Input, one JSON object per line (blank lines are skipped):
  {"id": ..., "kind": "math", "response": "...", "gold": "...", "options": {"precision": 6, ...}}
  {"id": ..., "kind": "code", "language": "python", "response": "...", "tests": T, "limits": {...}}
where T is one of
  {"stdio": [{"input": "...", "output": "..."}], "whitespace": "TOKENS"}   (whitespace optional)
  {"assert": "<python test code>", "entry_point": "<name>"}                (entry_point optional)
  {"call": {"fn": "<name>", "cases": [{"args": [...], "kwargs": {}, "expected": ...}]}}
(the proto's own form, {"stdio": {"cases": [...]}}, {"assert_code": {...}}, is taken too) and
"limits" (optional) has cpu_time_s, memory_bytes, output_bytes, wall_time_s. The code is
the response's last fenced block (the proto's default); "extraction": "WHOLE" takes bare code.
"kind" defaults to "math"; "candidates" lines carry the proto's item fields and go to the
server as they are; "steps" lines (reasoning chains, with optional "gold", "label" and "group")
are described in eval_steps.py, and their summaries (ProcessBench, best-of-N, pass@k) and the
--report page come after the run. Other keys are kept and ignored.
Output: each input object plus "result" ({"status", "judged", "correct", "score",
"extracted", "normalized", "reason"} for math; {"status", "judged", "correct",
"score", "passed", "total", "tests": [{"index", "status", "detail"}], "reason"} for
code), in input order. A bad line (not
JSON, missing or mistyped field, unknown kind) gets {"status": "INVALID_ARGUMENT",
"judged": false, "reason": "line 7: 'gold' is missing"} and the run goes on; a
line that is not a JSON object is written as {"input": <the line>, "result": ...}.

The embedded server starts the code sandbox only when the input has a code line: starting it
costs little, but a math-only run must not need root or log that the sandbox is missing.

The file is streamed: chunks of --batch-size lines, a few chunks in flight,
written in order as they finish, so memory does not grow with the file.
A failure of the service as a whole (unreachable after retries) stops the run
with exit code 1; the lines before it are already written.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from .client import VerifierCallError, VerifierClient
from .client_types import KINDS, to_item
from .eval_steps import (DEFAULT_THRESHOLD, Chains, answer_response, answer_result, check_steps_line, finish,
                         steps_result)

__all__ = ["EvalSummary", "evaluate_file", "add_eval_arguments", "run_eval", "add_demo_arguments", "run_demo",
           "SAMPLES"]

SAMPLES = "math_samples.jsonl"  # bundled in verifier_service/data
DEFAULT_BATCH = 256
DEFAULT_TIMEOUT_S = 600.0  # per request: a batch of code items can wait minutes for the sandbox's slots
CHUNKS_IN_FLIGHT = 4
# The keys each kind's result keeps in the output line.
RESULT_KEYS = {
    "math": ("status", "judged", "correct", "score", "extracted", "normalized", "reason"),
    "code": ("status", "judged", "correct", "score", "passed", "total", "tests", "reason"),
    "steps": ("status", "judged", "step_scores", "aggregate", "first_error", "reason"),  # + "answer" with a gold
    "candidates": ("status", "judged", "scores", "best", "reason"),
}
GRADED = ("math", "code")  # kinds with a right/wrong verdict, counted in the accuracy
INVALID = "invalid"  # the kind counted for a line that names no known kind (or is not a JSON object)
_CALLS = {"math": "check_math", "code": "run_code", "steps": "score_steps", "candidates": "score_candidates"}


@dataclass
class EvalSummary:
    """What a run found. accuracy = correct / judged over math and code items (None if none judged)."""

    items: int = 0
    judged: int = 0
    not_judged: int = 0
    correct: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    graded_judged: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded_judged if self.graded_judged else None

    @property
    def items_per_s(self) -> float:
        return self.items / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, kind: str, result: dict[str, Any]) -> None:
        self.items += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self.by_status[result["status"]] = self.by_status.get(result["status"], 0) + 1
        if not result["judged"]:
            self.not_judged += 1
            return
        self.judged += 1
        if kind in GRADED:
            self.graded_judged += 1
            self.correct += int(result["correct"])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy": self.accuracy, "items_per_s": round(self.items_per_s, 1)}

    def format(self) -> str:
        accuracy = "n/a" if self.accuracy is None else f"{self.accuracy:.4f} ({self.correct}/{self.graded_judged})"
        statuses = ", ".join(f"{k}={v}" for k, v in sorted(self.by_status.items()))
        return (f"items: {self.items} ({', '.join(f'{k}={v}' for k, v in sorted(self.by_kind.items()))})\n"
                f"accuracy over judged: {accuracy}\n"
                f"not judged: {self.not_judged}\n"
                f"by status: {statuses}\n"
                f"time: {self.elapsed_s:.2f} s, {self.items_per_s:.1f} items/s")


@dataclass
class _Line:
    number: int
    obj: dict[str, Any]          # what the output line is built from
    kind: str
    item: Any = None             # the proto item; None for a bad line
    error: str = ""
    answer_item: Any = None      # steps with a gold: the MathItem that checks the final answer


def _parse(number: int, text: str, threshold: float = DEFAULT_THRESHOLD) -> _Line:
    """One input line -> its item, or a per-line error naming the problem."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return _Line(number, {"input": text.rstrip("\n")}, INVALID, error=f"line {number}: not JSON ({exc.msg})")
    if not isinstance(obj, dict):
        return _Line(number, {"input": obj}, INVALID, error=f"line {number}: not a JSON object")
    kind = obj.get("kind", "math")
    if not isinstance(kind, str) or kind not in KINDS:
        return _Line(number, obj, INVALID,
                     error=f"line {number}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    line = _Line(number, obj, kind)
    fields = KINDS[kind].item.DESCRIPTOR.fields_by_name
    problem = _check_math(obj) if kind == "math" else check_steps_line(obj) if kind == "steps" else ""
    if problem:
        line.error = f"line {number}: {problem}"
        return line
    data = {k: v for k, v in obj.items() if k in fields and k != "id"}
    try:
        if kind == "math":
            data["gold"] = str(data["gold"])  # numeric golds (42, 0.5) are common in GSM8K-style files
        if kind == "code":
            data = _code_data(obj)
        if kind == "steps":
            line.answer_item = _answer_item(number, obj)
            data.pop("gold", None)  # checked apart (eval_steps.py says why)
            data.setdefault("threshold", threshold)
        line.item = to_item(KINDS[kind], {"id": str(number), **data}, label="")
    except ValueError as exc:
        line.error = f"line {number}: {exc}"
    return line


def _answer_item(number: int, obj: dict[str, Any]) -> Any:
    if obj.get("gold") is None:
        return None
    return to_item(KINDS["math"], {"id": str(number), "response": answer_response(obj), "gold": str(obj["gold"])},
                   label="")


_TYPE_NAMES = {str: "a string", dict: "an object", list: "a list", int: "a number", float: "a number"}


def _need(value: Any, types: type | tuple[type, ...], name: str) -> Any:
    """`value` if it is of `types` (a bool is never a number here); else ValueError naming `name`."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) or not isinstance(value, types):
        wanted = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))
        raise ValueError(f"{name!r} must be {wanted}, got {type(value).__name__}")
    return value


_CODE_KEYS = ("language", "response", "tests", "limits", "extraction", "stop_at_first_failure")
_LIMITS = ("cpu_time_s", "memory_bytes", "output_bytes", "wall_time_s")


def _code_data(obj: dict[str, Any]) -> dict[str, Any]:
    """A code line in the issue's short form -> the CodeItem's fields (ValueError names the field)."""
    for name in ("language", "response", "tests"):
        if obj.get(name) is None:
            raise ValueError(f"{name!r} is missing")
    data = {k: obj[k] for k in _CODE_KEYS if obj.get(k) is not None}
    _need(data["language"], str, "language")
    _need(data["response"], str, "response")
    data["tests"] = _code_tests(_need(data["tests"], dict, "tests"))
    if "limits" in data:
        limits = _need(data["limits"], dict, "limits")
        for key, value in limits.items():
            if key not in _LIMITS:
                raise ValueError(f"'limits.{key}' is not a limit (known: {', '.join(_LIMITS)})")
            if _need(value, (int, float), f"limits.{key}") < 0:
                raise ValueError(f"'limits.{key}' must be >= 0, got {value}")
    return data


def _code_tests(tests: dict[str, Any]) -> dict[str, Any]:
    styles = [k for k in ("stdio", "assert", "assert_code", "call") if k in tests]
    if len(styles) != 1:
        raise ValueError("'tests' must have exactly one of stdio, assert, call "
                         f"(got {', '.join(map(repr, tests)) or 'none'})")
    style = styles[0]
    value = tests[style]
    if style == "stdio" and isinstance(value, list):
        for i, case in enumerate(value):
            _need(case, dict, f"tests.stdio[{i}]")
            if "output" not in case:
                raise ValueError(f"'tests.stdio[{i}].output' is missing")
            _need(case["output"], str, f"tests.stdio[{i}].output")
            _need(case.get("input", ""), str, f"tests.stdio[{i}].input")
        out = {"cases": value}
        if "whitespace" in tests:
            out["whitespace"] = tests["whitespace"]
        return {"stdio": out}
    if style == "assert":
        out = {"code": _need(value, str, "tests.assert")}
        if tests.get("entry_point") is not None:
            out["entry_point"] = _need(tests["entry_point"], str, "tests.entry_point")
        return {"assert_code": out}
    if style == "call":
        call = dict(_need(value, dict, "tests.call"))
        _need(call.get("fn"), str, "tests.call.fn")
        cases = _need(call.get("cases"), list, "tests.call.cases")
        call["cases"] = [_call_case(case, f"tests.call.cases[{i}]") for i, case in enumerate(cases)]
        return {"call": call}
    return {style: value}  # the proto's own form: to_item checks it


def _call_case(case: Any, name: str) -> dict[str, Any]:
    """{"args": [...], "kwargs": {...}, "expected": ...} -> CallCase's JSON fields."""
    case = _need(case, dict, name)
    if "args_json" in case or "expected_json" in case:  # already the proto's form
        return case
    unknown = sorted(set(case) - {"args", "kwargs", "expected"})
    if unknown:
        raise ValueError(f"{name!r} has unknown key(s) {', '.join(unknown)} (known: args, kwargs, expected)")
    if "expected" not in case:
        raise ValueError(f"'{name}.expected' is missing")
    return {"args_json": json.dumps(_need(case.get("args", []), list, f"{name}.args")),
            "kwargs_json": json.dumps(_need(case.get("kwargs", {}), dict, f"{name}.kwargs")),
            "expected_json": json.dumps(case["expected"])}


def _check_math(obj: dict[str, Any]) -> str:
    """Readable messages for the usual mistakes; the proto parse catches the rest (options)."""
    for name, types in (("response", (str,)), ("gold", (str, int, float))):
        if name not in obj:
            # a ProcessBench row is a chain without a "kind": say what it lacks rather than only "response"
            hint = ' (a reasoning chain needs "kind": "steps")' if "steps" in obj and "kind" not in obj else ""
            return f"{name!r} is missing{hint}"
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, types):
            return f"{name!r} must be {' or '.join(t.__name__ for t in types)}, got {type(value).__name__}"
    if obj.get("options") is not None and not isinstance(obj["options"], dict):  # null: no options
        return f"'options' must be an object, got {type(obj['options']).__name__}"
    return ""


def _error_result(reason: str) -> dict[str, Any]:
    return {"status": "INVALID_ARGUMENT", "judged": False, "reason": reason}


def _result_dict(kind: str, result: Any) -> dict[str, Any]:
    if kind == "steps":
        return steps_result(result)
    out = {key: getattr(result, key) for key in RESULT_KEYS[kind]}
    if kind == "code":
        out["tests"] = [{"index": t.index, "status": t.status, "detail": t.detail} for t in result.tests]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _send(client: VerifierClient, kind: str, lines: list[_Line],
          items: list[Any] | None = None) -> list[dict[str, Any]]:
    """One batched call of `items` (default: the lines' items); if the server refuses the batch as
    malformed (one item over a limit), the lines go one by one so that only the offending line gets the error."""
    call = getattr(client, _CALLS[kind])
    items = [line.item for line in lines] if items is None else items
    try:
        return [_result_dict(kind, r) for r in call(items)]
    except VerifierCallError as exc:
        if exc.code != "INVALID_ARGUMENT":
            raise
    out = []
    for line, item in zip(lines, items):
        try:
            out.append(_result_dict(kind, call([item])[0]))
        except VerifierCallError as exc:
            if exc.code != "INVALID_ARGUMENT":
                raise
            out.append(_error_result(f"line {line.number}: {exc.details}"))
    return out


def _evaluate_chunk(client: VerifierClient, lines: list[_Line]) -> list[tuple[_Line, dict[str, Any]]]:
    results: list[dict[str, Any]] = [_error_result(line.error) for line in lines]
    by_kind: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        if not line.error:
            by_kind.setdefault(line.kind, []).append(i)
    for kind, indices in by_kind.items():
        for i, result in zip(indices, _send(client, kind, [lines[i] for i in indices])):
            results[i] = result
    asking = [i for i in by_kind.get("steps", ()) if lines[i].answer_item is not None]
    if asking:  # the final answers of chains with a gold, through the math checker
        answers = _send(client, "math", [lines[i] for i in asking], [lines[i].answer_item for i in asking])
        for i, answer in zip(asking, answers):
            results[i]["answer"] = answer_result(answer)
    return list(zip(lines, results))


def _chunks(source: TextIO, size: int, threshold: float) -> Iterator[list[_Line]]:
    numbered = ((n, text) for n, text in enumerate(source, start=1) if text.strip())
    while chunk := list(itertools.islice(numbered, size)):
        yield [_parse(n, text, threshold) for n, text in chunk]


def _count_lines(path: Path) -> int:
    """Non-blank lines, for the progress bar's total (one fast pass over the bytes)."""
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _has_code_lines(path: Path) -> bool:
    """Whether some line is of kind "code" (a cheap byte test first: most lines are not)."""
    with path.open("rb") as f:
        for raw in f:
            if b'"code"' in raw:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("kind") == "code":
                    return True
    return False


def evaluate_file(client: VerifierClient, input_path: Path, output_path: Path, *, batch_size: int = DEFAULT_BATCH,
                  in_flight: int = CHUNKS_IN_FLIGHT, progress: bool = True, chains: Chains | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> EvalSummary:
    """Evaluate `input_path` into `output_path` through `client`, with up to `in_flight` chunks
    of `batch_size` lines sent at once; see the module docstring. Steps lines are also added to
    `chains` (for the summaries); `threshold` is their first-error threshold unless a line sets one."""
    summary = EvalSummary()
    started = time.monotonic()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=_count_lines(input_path) if progress else None, unit="line", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    pending: deque[Future] = deque()
    with input_path.open(encoding="utf-8") as source, output_path.open("w", encoding="utf-8") as out, \
            ThreadPoolExecutor(in_flight, thread_name_prefix="verirl-eval") as pool, bar:

        def drain(keep: int) -> None:
            while len(pending) > keep:
                for line, result in pending.popleft().result():
                    out.write(json.dumps({**line.obj, "result": result}, ensure_ascii=False) + "\n")
                    summary.add(line.kind, result)
                    if chains is not None and line.kind == "steps":
                        chains.add(line.number, line.obj, result, well_formed=not line.error)
                    bar.update(1)

        for chunk in _chunks(source, batch_size, threshold):
            pending.append(pool.submit(_evaluate_chunk, client, chunk))
            drain(in_flight)
        drain(0)
    summary.elapsed_s = time.monotonic() - started
    return summary


@contextlib.contextmanager
def _service(server: str | None, workers: int | None, code: bool, prm: Path | None = None) -> Iterator[str]:
    """The address to use: --server as given, or an embedded server on a free loopback port
    (with the code sandbox, in full mode, only if `code`; with the PRM of directory `prm` if given)."""
    if server:
        yield server
        return
    # Imported here: `verirl eval --server` needs no worker pool machinery.
    from .config import ServerConfig
    from .server import embedded_server
    config = ServerConfig(sandbox="full" if code else "off", **({"math_workers": workers} if workers else {}),
                          **({"prm": {"dir": str(prm)}} if prm else {}))
    with embedded_server(config) as address:
        yield address


def _prm_problem(directory: Path) -> str:
    """Why `directory` cannot be served as a PRM ("" if it can), before any server starts: a usage
    error gets a one-line message and exit code 2, not a traceback from inside the server's start."""
    from .prm.config import PRMConfig, resolve_format  # no torch: reads config.json and verirl_prm.json
    try:
        resolve_format(PRMConfig(dir=str(directory)))
    except (ValueError, OSError) as exc:
        return str(exc)
    return ""


def _run(input_path: Path, output_path: Path, args: argparse.Namespace, *, prm: Path | None = None,
         report: Path | None = None, threshold: float = DEFAULT_THRESHOLD) -> tuple[int, EvalSummary | None]:
    if not input_path.is_file():
        print(f"verirl: input file not found: {input_path}", file=sys.stderr)
        return 2, None
    if prm is not None and args.server:
        print("verirl: --prm starts an embedded service; with --server the server's own PRM is used",
              file=sys.stderr)
        return 2, None
    problem = _prm_problem(prm) if prm is not None else ""
    if problem:
        print(f"verirl: --prm {prm}: {problem}", file=sys.stderr)
        return 2, None
    chains = Chains()
    try:
        code = args.server is None and _has_code_lines(input_path)
        with _service(args.server, args.workers, code, prm) as address, \
                VerifierClient(address, timeout=args.timeout) as client:
            # No more items in flight than the server's queue holds: beyond it, chunks would only
            # bounce off RESOURCE_EXHAUSTED and burn their retries.
            limits = client.server_info().limits
            room = limits.queue_capacity // args.batch_size if limits and limits.queue_capacity else CHUNKS_IN_FLIGHT
            summary = evaluate_file(client, input_path, output_path, batch_size=args.batch_size,
                                    in_flight=max(1, min(CHUNKS_IN_FLIGHT, room)), progress=not args.no_progress,
                                    chains=chains, threshold=threshold)
            steps = finish(client, chains, report=report, source=f"{input_path} -> {output_path}") \
                if chains.items or report else None
    except VerifierCallError as exc:
        print(f"verirl: the verifier service failed, run stopped: {exc}", file=sys.stderr)
        return 1, None
    print(summary.format())
    if steps is not None:
        print(steps.format())
    if report is not None:
        print(f"report: {report}")
    return 0, summary


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="HOST:PORT[,HOST:PORT]",
                        help="use a running service (default: start an embedded one)")
    parser.add_argument("--workers", type=_positive, help="math workers of the embedded service (default: CPU count)")
    parser.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH, help="lines per request")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds one request may take, queue wait included (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="JSONL file, one item per line")
    parser.add_argument("-o", "--output", type=Path, required=True, help="JSONL file to write")
    _add_common(parser)
    chains = parser.add_argument_group("reasoning chains", 'lines of kind "steps" (docs/eval_chains.md)')
    chains.add_argument("--prm", type=Path, metavar="DIR",
                        help="score steps with this PRM directory in the embedded service (not with --server)")
    chains.add_argument("--report", type=Path, metavar="FILE.html",
                        help="write a self-contained HTML page: summaries, plots, the chains' step scores")
    chains.add_argument("--threshold", type=_probability, default=DEFAULT_THRESHOLD,
                        help="a step scored below it is a predicted error, for lines without their own "
                             f"(default {DEFAULT_THRESHOLD:g})")


def run_eval(args: argparse.Namespace) -> int:
    """`verirl eval`: exit 0 when every line got a result (bad lines included), 1 when the service
    failed, 2 when the input is missing."""
    return _run(args.input, args.output, args, prm=args.prm, report=args.report, threshold=args.threshold)[0]


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    _add_common(parser)


def run_demo(args: argparse.Namespace) -> int:
    """`verirl demo`: evaluate the bundled math samples through an embedded service; writes
    OUT/math_samples.results.jsonl and OUT/summary.json. A stand-in until the GRPO demo exists."""
    with resources.as_file(resources.files("verifier_service.data") / SAMPLES) as samples:
        code, summary = _run(samples, args.out / "math_samples.results.jsonl", args)
    if summary is not None:
        (args.out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        print(f"wrote {args.out / 'math_samples.results.jsonl'} and {args.out / 'summary.json'}")
    return code
