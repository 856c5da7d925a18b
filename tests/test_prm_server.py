"""Step scoring through a real gRPC server on port 0, with tiny random PRMs built in a tmp dir.

The server's scores must equal a direct forward pass of the same model (PRMScorer in this
process, itself checked against a plain forward pass in test_prm_scoring.py)."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import threading

import pytest

from prm_models import build_prm, require_torch
from verifier_service.client import VerifierCallError, VerifierClient
from verifier_service.config import ServerConfig
from verifier_service.server import create_server

PROBLEM = "What is 2+3?"
STEPS = ["2+3 = 5", "So the answer is \\boxed{5}.", "Done."]


def _serve(directory, **prm):
    config = ServerConfig(address="127.0.0.1:0", math_workers=1, sandbox="off",
                          prm={"dir": str(directory), "device": "cpu", **prm})
    return create_server(config)


def _served(tmp_path_factory, name: str, kind: str, seed: int, build: dict | None = None, serve: dict | None = None):
    """A tiny PRM of `kind` behind a real server, its offline scorer, and a client (fixture body)."""
    require_torch()
    from verifier_service.prm import PRMScorer

    directory = build_prm(tmp_path_factory.mktemp("prm") / name, kind, seed=seed, **(build or {}))
    server, port = _serve(directory, **(serve or {}))
    client = VerifierClient(f"127.0.0.1:{port}")
    try:
        yield server, PRMScorer(str(directory), device="cpu"), client
    finally:
        client.close()
        server.stop(0)


@pytest.fixture(scope="module")
def tc(tmp_path_factory):
    """A token-classification PRM behind a real server, its offline scorer, and a client."""
    yield from _served(tmp_path_factory, "tc", "token_classification", 4, {"max_length": 200}, {"batch_tokens": 512})


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    yield from _served(tmp_path_factory, "lm", "causal_lm", 5)


@pytest.fixture(scope="module")
def sl(tmp_path_factory):
    """A step_likelihood PRM (a causal LM and its head file) behind a real server."""
    yield from _served(tmp_path_factory, "sl", "step_likelihood", 7)


@pytest.mark.parametrize("which", ["tc", "lm", "sl"])
def test_scores_equal_direct_forward(which, request):
    server, scorer, client = request.getfixturevalue(which)
    [result] = client.score_steps([{"id": "a", "problem": PROBLEM, "steps": STEPS}])
    assert (result.id, result.status, result.judged) == ("a", "OK", True)
    assert list(result.step_scores) == pytest.approx(scorer.score(PROBLEM, STEPS), abs=1e-5)
    assert result.score == pytest.approx(min(result.step_scores))      # the format's default: min
    assert result.first_error == -1 and result.answer is None
    [cands] = client.score_candidates([{"id": "c", "problem": PROBLEM, "prefix_steps": STEPS[:1],
                                        "candidates": ["So 5.", "So 6.", "Hmm"]}])
    expected = [scorer.score(PROBLEM, [STEPS[0], c])[-1] for c in ["So 5.", "So 6.", "Hmm"]]
    assert (cands.status, cands.judged) == ("OK", True)
    assert list(cands.scores) == pytest.approx(expected, abs=1e-5)
    assert cands.best == max(range(3), key=expected.__getitem__)


def test_server_info_reports_model_tag_and_limits(tc):
    server, _, client = tc
    info = client.server_info()
    assert {"steps", "candidates"} <= set(info.capabilities)
    assert info.prm_model == server.config.prm.dir
    for part in ("kind=token_classification", "step_tag=' [s]'", "max_length=200", "device=cpu", "dtype=float32"):
        assert part in info.prm_details


@pytest.mark.parametrize("aggregation, combine", [
    ("MIN", min), ("PROD", math.prod), ("LAST", lambda s: s[-1]), ("MEAN", lambda s: sum(s) / len(s)),
])
def test_aggregation_per_request(tc, aggregation, combine):
    _, _, client = tc
    [result] = client.score_steps([{"id": "a", "problem": PROBLEM, "steps": STEPS, "aggregation": aggregation}])
    assert result.score == pytest.approx(combine(result.step_scores))


def test_threshold_gives_first_error(tc):
    _, scorer, client = tc
    scores = scorer.score(PROBLEM, STEPS)
    cut = sorted(scores)[1]  # at least one step is under it; the first such step is expected
    [result] = client.score_steps([{"id": "a", "problem": PROBLEM, "steps": STEPS, "threshold": cut}])
    assert result.first_error == next(i for i, s in enumerate(scores) if s < cut)
    [none] = client.score_steps([{"id": "b", "problem": PROBLEM, "steps": STEPS, "threshold": 0.0}])
    assert none.first_error == -1


def test_text_with_separator_equals_steps(tc):
    _, _, client = tc
    steps, by_text, by_default = client.score_steps([
        {"id": "s", "problem": PROBLEM, "steps": STEPS},
        {"id": "t", "problem": PROBLEM, "text": " | ".join(STEPS), "separator": "|"},
        {"id": "d", "problem": PROBLEM, "text": "\n\n".join(STEPS) + "\n\n"},
    ])
    assert by_text.step_scores == pytest.approx(steps.step_scores, abs=1e-6)
    assert by_default.step_scores == pytest.approx(steps.step_scores, abs=1e-6)


def test_gold_is_checked_by_the_math_checker(tc):
    _, _, client = tc
    right, wrong = client.score_steps([{"id": "r", "problem": PROBLEM, "steps": STEPS, "gold": "5"},
                                       {"id": "w", "problem": PROBLEM, "steps": STEPS, "gold": "6"}])
    assert (right.status, right.answer.status, wrong.answer.status) == ("OK", "CORRECT", "INCORRECT")
    assert right.step_scores == wrong.step_scores


def test_too_long_is_refused_not_truncated(tc):
    _, _, client = tc
    long_steps = ["x" * 150, "y" * 100]  # 250+ tokens, max_length 200
    [steps] = client.score_steps([{"id": "l", "problem": PROBLEM, "steps": long_steps}])
    assert (steps.status, steps.judged, steps.step_scores) == ("TOO_LONG", False, ())
    assert "max_length (200)" in steps.reason and "not truncated" in steps.reason
    [cands] = client.score_candidates([{"id": "c", "problem": PROBLEM, "prefix_steps": ["x" * 150],
                                        "candidates": ["short", "y" * 100]}])
    assert (cands.status, cands.judged, cands.best) == ("TOO_LONG", False, -1)


@pytest.mark.parametrize("item, field", [
    ({"problem": "", "steps": ["a"]}, "items[0].problem"),
    ({"problem": "p"}, "items[0].steps"),
    ({"problem": "p", "steps": ["a", "  "]}, "items[0].steps[1]"),
    ({"problem": "p", "steps": ["a"], "text": "b"}, "items[0].text"),
    ({"problem": "p", "steps": ["a"], "separator": "|"}, "items[0].separator"),
    ({"problem": "p", "text": "\n\n \n\n"}, "items[0].text"),
    ({"problem": "p", "steps": ["a"], "threshold": 1.5}, "items[0].threshold"),
    ({"problem": "p", "steps": ["a"], "aggregation": 9}, "items[0].aggregation"),
])
def test_invalid_steps_item_names_the_field(tc, item, field):
    _, _, client = tc
    with pytest.raises(VerifierCallError) as err:
        client.score_steps([{"id": "x", **item}])
    assert err.value.code == "INVALID_ARGUMENT" and field + ":" in err.value.details


@pytest.mark.parametrize("item, field", [
    ({"problem": "p", "prefix_steps": ["a"]}, "items[0].candidates"),
    ({"problem": "p", "candidates": ["a", ""]}, "items[0].candidates[1]"),
    ({"problem": "p", "prefix_steps": [""], "candidates": ["a"]}, "items[0].prefix_steps[0]"),
    ({"problem": "p", "candidates": ["a"] * 300}, "items[0].candidates"),
])
def test_invalid_candidates_item_names_the_field(tc, item, field):
    _, _, client = tc
    with pytest.raises(VerifierCallError) as err:
        client.score_candidates([{"id": "x", **item}])
    assert err.value.code == "INVALID_ARGUMENT" and field + ":" in err.value.details


def test_concurrent_callers_get_their_own_results(tc):
    """Callers whose items are batched together (and sorted by length) each get their own scores."""
    _, scorer, client = tc
    chains = [(f"Problem {n}: add {n} and {n}.", [f"{n}+{n}"] + ["step " * (n % 5 + 1)] * (n % 3 + 1))
              for n in range(24)]
    expected = scorer.score_many(chains)
    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def call(worker: int) -> None:
        try:
            mine = [n for n in range(len(chains)) if n % 6 == worker]
            results = client.score_steps([{"id": f"c{n}", "problem": chains[n][0], "steps": chains[n][1]}
                                          for n in mine])
            for n, result in zip(mine, results):
                assert result.id == f"c{n}" and result.status == "OK"
                got[n] = list(result.step_scores)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for n in range(len(chains)):
        assert got[n] == pytest.approx(expected[n], abs=1e-5)


def test_stream_carries_steps_and_candidates(tc):
    _, scorer, client = tc
    results = {r.id: r for r in client.verify_stream([
        {"kind": "steps", "id": "s", "problem": PROBLEM, "steps": STEPS},
        {"kind": "candidates", "id": "c", "problem": PROBLEM, "candidates": ["a", "b"]},
        {"kind": "steps", "id": "bad", "problem": "", "steps": STEPS},
    ])}
    assert list(results["s"].step_scores) == pytest.approx(scorer.score(PROBLEM, STEPS), abs=1e-5)
    assert results["c"].status == "OK" and len(results["c"].scores) == 2
    assert results["bad"].status == "INVALID_ARGUMENT" and "steps.problem" in results["bad"].reason


# ---------------------------------------------------------------- verirl serve --prm

def _verirl_serve(tmp_path, *args):
    """`verirl serve` as a real process; stderr to a file (a pipe nobody reads could block its logging)."""
    stderr = (tmp_path / "stderr.txt").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "verifier_service.cli", "serve", "--address", "127.0.0.1:0", "--workers", "1",
         "--sandbox", "off", "--grace", "2", *args], stdout=subprocess.PIPE, stderr=stderr, text=True)
    return process, stderr


def test_cli_serve_prm_described_by_flags(tmp_path):
    """A released PRM without verirl_prm.json: the flags describe it (a causal LM, Math-Shepherd style)."""
    require_torch()
    from verifier_service.prm import PRMScorer

    directory = build_prm(tmp_path / "released", "causal_lm", seed=7, write_format=False)
    flags = ["--prm-kind", "causal_lm", "--prm-tag", " [s]", "--prm-good-token", "+", "--prm-bad-token", "-",
             "--prm-separator", "\\n", "--prm-aggregation", "last"]
    process, stderr = _verirl_serve(tmp_path, "--prm", str(directory), "--prm-device", "cpu", *flags)
    try:
        line = process.stdout.readline()
        port = int(re.search(r"listening on \S+:(\d+)", line).group(1))
        assert f"PRM {directory} on cpu" in line
        with VerifierClient(f"127.0.0.1:{port}") as client:
            assert "step_separator='\\n'" in client.server_info().prm_details
            [result] = client.score_steps([{"id": "a", "problem": PROBLEM, "steps": STEPS}])
        scorer = PRMScorer(str(directory), device="cpu", kind="causal_lm", step_tag=" [s]", step_separator="\n")
        assert list(result.step_scores) == pytest.approx(scorer.score(PROBLEM, STEPS), abs=1e-5)
        assert result.score == result.step_scores[-1]  # --prm-aggregation last
        with open(f"/proc/{process.pid}/maps") as maps:  # torch lives in the PRM process, not the server's
            assert "libtorch" not in maps.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
        stderr.close()


def test_cli_serve_refuses_a_prm_it_cannot_load(tmp_path):
    (tmp_path / "empty").mkdir()
    process, stderr = _verirl_serve(tmp_path, "--prm", str(tmp_path / "empty"))
    try:
        assert process.wait(timeout=60) == 1
        stderr.seek(0)
        assert "not a Hugging Face model directory (no config.json)" in stderr.read()
    finally:
        process.kill()
        process.wait()
        stderr.close()


def test_tokenizer_disagreement_refuses_to_serve(tmp_path):
    """tokenizer.json changed so that it drops spaces, while transformers 5's AutoTokenizer imposes Qwen2's
    byte-level pre-tokenizer on a qwen2 directory: the ids differ, the tags would move, the start fails."""
    require_torch()
    import json

    directory = build_prm(tmp_path / "tc", "token_classification", seed=8)
    spec = json.loads((directory / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, spec["pre_tokenizer"]]}
    (directory / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="give different ids for the same chain"):
        _serve(directory)
