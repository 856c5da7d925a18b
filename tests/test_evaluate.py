"""Offline evaluation: per-line errors, order, chunking, summary, the CLI entry points, the demo.

Correctness of the verdicts is the grader's business; these tests check the plumbing
(every line answered, in order, bad lines named) through a real server on port 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from verifier_service import evaluate
from verifier_service.client import RetryPolicy, VerifierClient
from verifier_service.config import ServerConfig
from verifier_service.evaluate import EvalSummary, _parse, evaluate_file
from verifier_service.server import create_server

NOT_JUDGED = {"TIMEOUT", "PARSE_ERROR", "INVALID_ARGUMENT", "INTERNAL_ERROR"}


@pytest.fixture(scope="module")
def address():
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1, max_string_bytes=2000))
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize("text, reason", [
    ("{bad json", "line 3: not JSON"),
    ("[1, 2]", "line 3: not a JSON object"),
    ('{"kind": "poem", "response": "x"}', "line 3: unknown kind 'poem'"),
    ('{"kind": ["math"]}', "line 3: unknown kind"),
    ('{"id": 1, "response": "4"}', "line 3: 'gold' is missing"),
    ('{"id": 1, "gold": "4"}', "line 3: 'response' is missing"),
    ('{"response": 4, "gold": "4"}', "line 3: 'response' must be str"),
    ('{"response": "4", "gold": true}', "line 3: 'gold' must be str or int or float"),
    ('{"response": "4", "gold": "4", "options": [6]}', "line 3: 'options' must be an object"),
    ('{"response": "4", "gold": "4", "options": {"precison": 6}}', 'no field named "precison"'),
    ('{"response": "4", "gold": "4", "options": {"precision": "six"}}', "precision"),
    ('{"response": "4", "gold": "4", "options": {"extractors": ["BOXED_FIRST"]}}', "BOXED_FIRST"),
    ('{"kind": "code", "language": "python", "response": "x", "tests": {"stdin": {}}}',
     "line 3: 'tests' must have exactly one of stdio, assert, call (got 'stdin')"),
])
def test_bad_lines_are_named(text, reason):
    line = _parse(3, text)
    assert line.item is None and reason in line.error


def test_good_lines_parse():
    line = _parse(5, '{"id": "a", "response": "x", "gold": 12, "options": {"precision": 2}, "meta": {"k": 1}}')
    assert not line.error and line.item.gold == "12" and line.item.options.precision == 2
    assert line.item.id == "5"  # ids on the wire are line numbers; the user's id stays in the output object
    assert _parse(6, '{"kind": "steps", "problem": "p", "steps": ["a", "b"]}').item.steps == ["a", "b"]
    assert not _parse(7, '{"response": "x", "gold": "y", "options": null}').item.HasField("options")


def test_summary_counts():
    summary = EvalSummary()
    for kind, result in [("math", {"status": "CORRECT", "judged": True, "correct": True}),
                         ("math", {"status": "INCORRECT", "judged": True, "correct": False}),
                         ("math", {"status": "TIMEOUT", "judged": False}),
                         ("steps", {"status": "OK", "judged": True}),
                         ("invalid", {"status": "INVALID_ARGUMENT", "judged": False})]:
        summary.add(kind, result)
    assert (summary.items, summary.judged, summary.not_judged, summary.correct) == (5, 3, 2, 1)
    assert summary.accuracy == 0.5  # steps are judged but have no right/wrong
    assert summary.by_status["TIMEOUT"] == 1 and summary.by_kind == {"math": 3, "steps": 1, "invalid": 1}
    assert "accuracy over judged: 0.5000 (1/2)" in summary.format()


def write_input(path: Path, n_good: int) -> list[str]:
    lines = [json.dumps({"id": f"g{i}", "kind": "math", "response": str(i), "gold": str(i if i % 2 else i + 1)})
             for i in range(n_good)]
    lines[3:3] = ["{oops", "", json.dumps({"id": "nogold", "response": "1"}),
                  json.dumps({"id": "huge", "response": "9" * 5000, "gold": "9"}),  # over max_string_bytes
                  json.dumps({"id": "code", "kind": "code", "language": "python", "response": "print(1)",
                              "extraction": "WHOLE", "tests": {"stdio": {"cases": [{"input": "", "output": "1"}]}}})]
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_evaluate_file_keeps_order_and_flags_bad_lines(address, tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = write_input(source, 20)
    with VerifierClient(address) as client:
        summary = evaluate_file(client, source, target, batch_size=3, progress=False)
    out = [json.loads(line) for line in target.read_text().splitlines()]
    expected = [json.loads(line) if line.startswith('{"') else {"input": line} for line in lines if line]
    assert [{k: v for k, v in o.items() if k != "result"} for o in out] == expected
    by_id = {o.get("id"): o["result"] for o in out}
    assert out[3]["result"]["reason"].startswith("line 4: not JSON")
    assert by_id["nogold"] == {"status": "INVALID_ARGUMENT", "judged": False, "reason": "line 6: 'gold' is missing"}
    assert by_id["huge"]["status"] == "INVALID_ARGUMENT" and by_id["huge"]["reason"].startswith("line 7:")
    assert by_id["code"]["status"] == "PASSED"  # the proto's own form of a code line
    assert by_id["g1"]["status"] == "CORRECT" and by_id["g0"]["status"] == "INCORRECT"
    assert set(by_id["g1"]) == set(evaluate.RESULT_KEYS["math"])
    assert summary.items == 24 and summary.correct == 11 and summary.graded_judged == 21
    assert summary.not_judged == 3 and summary.by_kind == {"math": 22, "code": 1, "invalid": 1}


def parse_args(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_run_eval_cli(address, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    write_input(source, 6)
    args = parse_args(evaluate.add_eval_arguments,
                      [str(source), "-o", str(tmp_path / "o" / "out.jsonl"), "--server", address, "--no-progress"])
    assert evaluate.run_eval(args) == 0
    assert len((tmp_path / "o" / "out.jsonl").read_text().splitlines()) == 10
    assert "items: 10" in capsys.readouterr().out
    missing = parse_args(evaluate.add_eval_arguments, [str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x")])
    assert evaluate.run_eval(missing) == 2


def test_run_eval_stops_when_service_is_gone(tmp_path, capsys, monkeypatch):
    fast = RetryPolicy(max_attempts=3, initial_backoff_s=0.01)
    monkeypatch.setattr(evaluate, "VerifierClient", lambda address, **kw: VerifierClient(address, retry=fast, **kw))
    source = tmp_path / "in.jsonl"
    write_input(source, 4)
    args = parse_args(evaluate.add_eval_arguments,
                      [str(source), "-o", str(tmp_path / "out.jsonl"), "--server", "127.0.0.1:1", "--no-progress"])
    assert evaluate.run_eval(args) == 1
    assert "run stopped" in capsys.readouterr().err


def test_demo_with_embedded_server(tmp_path, capsys):
    args = parse_args(evaluate.add_demo_arguments, ["--out", str(tmp_path), "--workers", "1", "--no-progress"])
    assert evaluate.run_demo(args) == 0
    out = [json.loads(line) for line in (tmp_path / "math_samples.results.jsonl").read_text().splitlines()]
    assert len(out) == 40 and all(o["result"]["status"] != "INVALID_ARGUMENT" for o in out)
    huge = next(o for o in out if o["id"] == "math-24")
    assert huge["result"]["judged"] or huge["result"]["status"] == "TIMEOUT"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["items"] == 40 and summary["judged"] + summary["not_judged"] == 40
    assert "accuracy over judged" in capsys.readouterr().out
