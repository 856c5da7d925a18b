"""`verirl eval` on lines of kind "steps", through real servers on port 0: field checks, the final-answer
check, answer equivalence for voting, the summaries, --report, and (slow) a real tiny PRM with --prm."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from verifier_service import eval_steps, evaluate
from verifier_service.chain_metrics import pass_at_k
from verifier_service.client import VerifierClient
from verifier_service.config import ServerConfig
from verifier_service.eval_steps import Chains, finish
from verifier_service.evaluate import _parse, evaluate_file
from verifier_service.server import create_server

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = resources.files("verifier_service.data") / "steps_samples.jsonl"


@pytest.fixture(scope="module")
def address():
    """A server without a PRM: steps answer UNAVAILABLE, the math checker still checks final answers."""
    server, port = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1))
    yield f"127.0.0.1:{port}"
    server.stop(None)


def steps_line(**kw) -> str:
    return json.dumps({"kind": "steps", "problem": "p", "steps": ["a", "b"], **kw})


@pytest.mark.parametrize("text, reason", [
    ('{"kind": "steps", "steps": ["a"]}', "line 3: 'problem' is missing"),
    ('{"kind": "steps", "problem": 5, "steps": ["a"]}', "line 3: 'problem' must be a string, got int"),
    ('{"kind": "steps", "problem": "p"}', "line 3: 'steps' is missing (or give 'text')"),
    (steps_line(steps="a b"), "line 3: 'steps' must be a list of strings"),
    (steps_line(steps=["a", 2]), "line 3: 'steps' must be a list of strings"),
    (steps_line(steps=[]), "line 3: 'steps' is empty"),
    ('{"kind": "steps", "problem": "p", "text": " \\n\\n "}', "line 3: 'text' has no step"),
    ('{"kind": "steps", "problem": "p", "text": "a|b|c", "separator": "|", "label": 3}',
     "line 3: 'label' must be in [-1, 2], got 3"),  # counted on the split text
    ('{"kind": "steps", "problem": "p", "text": "a", "separator": 1}', "line 3: 'separator' must be a string"),
    (steps_line(label=2), "line 3: 'label' must be in [-1, 1], got 2"),
    (steps_line(label=-2), "line 3: 'label' must be in [-1, 1], got -2"),
    (steps_line(label="1"), "line 3: 'label' must be an integer"),
    (steps_line(label=True), "line 3: 'label' must be an integer"),
    (steps_line(gold=[1]), "line 3: 'gold' must be a string or a number, got list"),
    (steps_line(group=[1]), "line 3: 'group' must be a string or an integer, got list"),
    (steps_line(threshold="high"), "line 3: 'threshold' must be a number, got str"),
    (steps_line(aggregation="MEDIAN"), "line 3: "),  # the proto parse names the enum value
    ('{"problem": "p", "steps": ["a"], "label": -1}',  # a ProcessBench row: no "kind", so math by default
     """line 3: 'response' is missing (a reasoning chain needs "kind": "steps")"""),
])
def test_bad_steps_lines_are_named(text, reason):
    line = _parse(3, text)
    assert line.item is None and line.error.startswith(reason), line.error
    if "aggregation" in text:
        assert "MEDIAN" in line.error


def test_good_steps_line_parses():
    line = _parse(4, steps_line(gold=12, label=-1, group=7, id="x", aggregation="PROD"), threshold=0.3)
    assert not line.error and list(line.item.steps) == ["a", "b"] and line.item.threshold == pytest.approx(0.3)
    assert line.item.gold == ""  # the final answer is checked apart, through CheckMath
    assert (line.answer_item.response, line.answer_item.gold) == ("a\n\nb", "12")
    own = _parse(4, steps_line(threshold=0.8), threshold=0.3)
    assert own.item.threshold == pytest.approx(0.8) and own.answer_item is None
    text = _parse(4, json.dumps({"kind": "steps", "problem": "p", "text": "a|b", "separator": "|", "gold": "b"}))
    assert text.answer_item.response == "a|b"


def run(address: str, source: Path, target: Path, report: Path | None = None):
    chains = Chains()
    with VerifierClient(address) as client:
        summary = evaluate_file(client, source, target, batch_size=16, progress=False, chains=chains)
        steps = finish(client, chains, report=report)
    return summary, steps, [json.loads(line) for line in target.read_text().splitlines()]


def test_bundled_samples_without_a_prm(address, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(SAMPLES.read_text())
    summary, steps, out = run(address, source, tmp_path / "out.jsonl", tmp_path / "report.html")
    assert summary.items == 96 and summary.by_status == {"UNAVAILABLE": 96}
    first = out[0]["result"]
    assert list(first) == [*evaluate.RESULT_KEYS["steps"], "answer"]
    assert first["aggregate"] is None and first["first_error"] is None and first["step_scores"] == []
    # every final answer was checked, and the checker agrees with the labels: a chain is right iff label -1
    assert all(o["result"]["answer"]["correct"] == (o["label"] == -1) for o in out)
    assert steps.answers_checked == 96 and steps.processbench is None  # labels, but nothing scored
    groups: dict[str, list[bool]] = {}
    for o in out:
        groups.setdefault(o["group"], []).append(o["label"] == -1)
    c = steps.curves
    assert c.sizes == (1, 2, 4, 8) and c.groups == (12,) * 4 and c.prm_groups == (0,) * 4
    for k, value in zip(c.sizes, c.pass_at_k):
        assert value == pytest.approx(sum(pass_at_k(8, sum(g), k) for g in groups.values()) / 12)
    assert c.best_of_n == (None,) * 4 and steps.grouped_out == {"PRM curves only: not scored by the PRM": 96}
    assert "<svg" in (tmp_path / "report.html").read_text()


def vote_file(path: Path, finals: list[str], gold: str) -> Path:
    path.write_text("".join(json.dumps({"id": i, "kind": "steps", "problem": "?", "steps": ["x", final],
                                        "gold": gold, "group": "g"}) + "\n" for i, final in enumerate(finals)))
    return path


def test_voting_joins_numbers_by_value(address, tmp_path):
    # "1/2" written three ways is one answer; "3" twice is another: the vote must pick 1/2 (3 against 2)
    finals = ["\\boxed{\\frac{1}{2}}", "#### 0.5", "The answer is \\boxed{2/4}", "\\boxed{3}", "#### 3"]
    _, steps, out = run(address, vote_file(tmp_path / "in.jsonl", finals, "0.5"), tmp_path / "out.jsonl")
    assert [o["result"]["answer"]["correct"] for o in out] == [True, True, True, False, False]
    assert len({o["result"]["answer"]["normalized"] for o in out[:3]}) > 1  # string equality would split them
    assert steps.curves.majority[-1] == 1.0


def test_voting_joins_expressions_through_the_checker(address, tmp_path, monkeypatch, capsys):
    # the wrong x^2+1 comes first and twice; the right answer is written in two normal forms, three times:
    # only the checker's pairwise comparison makes it one answer with 3 votes
    finals = ["\\boxed{x^2+1}", "\\boxed{x^2 + 1}", "\\boxed{(x+1)^2}", "\\boxed{x^2+2x+1}", "#### x^2 + 2x + 1"]
    source = vote_file(tmp_path / "in.jsonl", finals, "(x+1)^2")
    _, steps, out = run(address, source, tmp_path / "out.jsonl")
    assert [o["result"]["answer"]["correct"] for o in out] == [False, False, True, True, True]
    assert len({o["result"]["answer"]["normalized"] for o in out[2:]}) == 2
    assert steps.curves.majority[-1] == 1.0
    # over MAX_FORMS distinct forms, a group is left at its normal forms: 2 wrong votes beat 2 right (first)
    monkeypatch.setattr(eval_steps, "MAX_FORMS", 2)
    _, crowded, _ = run(address, source, tmp_path / "out2.jsonl")
    assert crowded.curves.majority[-1] == 0.0
    assert "1 group(s) have over 2 distinct final answers" in capsys.readouterr().err


def test_bundled_samples_are_reproducible_and_labelled_exactly():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_steps_samples
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    lines = make_steps_samples.lines()
    assert "".join(json.dumps(line) + "\n" for line in lines) == SAMPLES.read_text()
    from tasks.synthetic import check_steps, generate
    problems = {p.id: p for p in generate(make_steps_samples.GROUPS, split="heldout", seed=make_steps_samples.SEED)}
    for line in lines:  # the label is the first step the synthetic checker finds wrong
        verdicts = check_steps(problems[line["group"]], line["steps"])
        assert line["label"] == next((i for i, ok in enumerate(verdicts) if not ok), -1)


def test_cli_flags(address, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(steps_line(gold="b", group="g", label=-1) + "\n")
    parser = argparse.ArgumentParser()
    evaluate.add_eval_arguments(parser)
    args = parser.parse_args([str(source), "-o", str(tmp_path / "out.jsonl"), "--server", address,
                              "--no-progress", "--report", str(tmp_path / "r" / "page.html")])
    assert evaluate.run_eval(args) == 0
    printed = capsys.readouterr().out
    assert "chains: 1 (0 scored by the PRM, 1 labelled, 1 final answers checked)" in printed
    assert (tmp_path / "r" / "page.html").is_file()
    both = parser.parse_args([str(source), "-o", str(tmp_path / "o.jsonl"), "--server", address,
                              "--prm", str(tmp_path)])
    assert evaluate.run_eval(both) == 2
    assert "--prm starts an embedded service" in capsys.readouterr().err
    not_a_model = parser.parse_args([str(source), "-o", str(tmp_path / "o.jsonl"), "--prm", str(tmp_path)])
    assert evaluate.run_eval(not_a_model) == 2
    assert "not a Hugging Face model directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args([str(source), "-o", "x", "--threshold", "1.5"])


@pytest.mark.slow
def test_eval_with_a_real_prm(tmp_path):
    """`verirl eval --prm DIR --report`: a random tiny PRM in the embedded service; its step scores are
    the offline scorer's, the aggregate is their min, the first error follows the threshold, and the
    summaries and the page cover every chain."""
    from prm_models import build_prm, require_torch
    require_torch()
    prm = build_prm(tmp_path / "prm", "causal_lm", seed=3)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(SAMPLES.read_text().splitlines(keepends=True)[:24]))  # 3 groups of 8
    out_path, page = tmp_path / "out.jsonl", tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "verifier_service.cli", "eval", str(source), "-o", str(out_path),
                           "--prm", str(prm), "--report", str(page), "--threshold", "0.5", "--workers", "1",
                           "--no-progress"], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert all(o["result"]["status"] == "OK" and o["result"]["judged"] for o in out)

    from verifier_service.prm.scorer import PRMScorer
    offline = PRMScorer(str(prm), device="cpu").score_many([(o["problem"], o["steps"]) for o in out])
    for o, expected in zip(out, offline):
        r = o["result"]
        assert r["step_scores"] == pytest.approx(expected, abs=1e-5)
        assert r["aggregate"] == pytest.approx(min(expected), abs=1e-5)
        assert r["first_error"] == next((i for i, s in enumerate(expected) if s < 0.5), -1)
        assert r["answer"]["correct"] == (o["label"] == -1)
    assert "ProcessBench: erroneous acc" in done.stdout and "F1" in done.stdout
    table = done.stdout[done.stdout.index("    N groups"):].splitlines()[1:5]
    assert [row.split()[:2] for row in table] == [["1", "3"], ["2", "3"], ["4", "3"], ["8", "3"]]
    assert "n/a" not in "".join(table)  # every chain scored: the PRM curves are there
    html = page.read_text()
    assert html.count('class="chain"') == 24 and html.count("data-score=") == sum(len(o["steps"]) for o in out)
    # and the page of a real run works in a browser: the script ran to its end, with no error
    from report_pages import dom, render
    shown, console = render(page)
    d = dom(shown)
    assert ("data-js", "ok") in next(a for t, a in d.tags if t == "body").items()
    assert d.text["js-errors"] == "" and console == "" and d.text["shown"] == "showing 24 of 24 chains"
