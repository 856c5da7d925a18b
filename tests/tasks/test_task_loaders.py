"""Benchmark and generic loaders on fixture slices (tests/fixtures/README.md says where they come from)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from ci_rules import require_modules
from tasks import (DATA_ENV, DatasetError, Problem, data_dir, data_file, gsm8k_gold, load_gsm8k, load_hf,
                   load_humaneval, load_jsonl, load_math, load_math500, load_mbpp, load_parquet, read_jsonl)

FIX = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("solution, gold", [
    ("He pays 3 * 4 = 12\n#### 12", "12"),
    ("#### 1,234", "1234"),
    ("so -5\n#### -5", "-5"),
    ("#### 1,000,000 ", "1000000"),
    ("#### 3.5", "3.5"),
])
def test_gsm8k_gold(solution, gold):
    assert gsm8k_gold(solution) == gold


def test_gsm8k_gold_needs_hashes():
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("The answer is 12.")


def test_gsm8k_slice():
    problems = load_gsm8k(FIX / "gsm8k_slice.jsonl")
    assert [p.gold for p in problems] == ["18", "3", "70000", "540", "2125"]  # the last is "#### 2,125"
    p = problems[0]
    assert p.id == "gsm8k-test-0" and p.checks == ("math",) and p.prompt.startswith("Janet")
    assert p.metadata["solution"].endswith("#### 18") and p.metadata["source"] == "gsm8k"
    assert len(load_gsm8k(FIX / "gsm8k_slice.jsonl", limit=2)) == 2


def test_math500_slice():
    problems = load_math500(FIX / "math500_slice.jsonl")
    rows = list(read_jsonl(FIX / "math500_slice.jsonl"))
    assert len(problems) == 4
    assert [p.gold for p in problems] == [r["answer"] for r in rows]
    assert [p.id for p in problems] == [r["unique_id"] for r in rows]
    p = problems[0]
    assert p.metadata["level"] == 2 and p.metadata["subject"] == "Precalculus"
    assert p.metadata["solution"] == rows[0]["solution"] and p.metadata["source"] == "math500"


def test_math_without_answer_field_uses_last_boxed(tmp_path):
    row = {"problem": "Simplify.", "solution": "First \\boxed{1}, then $\\boxed{\\frac{1}{2}}$.",
           "level": "Level 4", "type": "Algebra"}
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (p,) = load_math(path)
    assert p.gold == "\\frac{1}{2}" and p.metadata["level"] == 4 and p.metadata["subject"] == "Algebra"
    path.write_text(json.dumps({**row, "solution": "no box"}) + "\n")
    with pytest.raises(DatasetError, match="boxed"):
        load_math(path)


def test_humaneval_slice_reference_passes_its_tests():
    problems = load_humaneval(FIX / "humaneval_slice.jsonl.gz")
    assert [p.id for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    for p in problems:
        assert p.checks == ("code",) and set(p.tests) == {"assert", "entry_point"}
        assert p.metadata["reference_code"] == p.prompt + p.metadata["canonical_solution"]
        ns: dict = {}
        exec(p.metadata["reference_code"] + "\n" + p.tests["assert"], ns)  # trusted dataset code
        ns["check"](ns[p.tests["entry_point"]])


def test_mbpp_slice_splits_entry_points_and_asserts():
    path = FIX / "mbpp_slice.jsonl"
    problems = load_mbpp(path)
    assert [p.id for p in problems] == ["mbpp-1", "mbpp-11", "mbpp-126", "mbpp-601", "mbpp-912"]
    assert [p.metadata["entry_point"] for p in problems] == \
        ["min_cost", "remove_Occ", "sum", "max_chain_length", "lobb_num"]
    for p in problems:
        assert set(p.tests) == {"assert"} and "assert" in p.tests["assert"]
        assert "Your code should pass these tests:" in p.prompt
        exec(p.metadata["reference_code"] + "\n" + p.tests["assert"], {})  # trusted dataset code
    assert [p.id for p in load_mbpp(path, split="test")] == ["mbpp-11", "mbpp-126"]
    assert [p.id for p in load_mbpp(path, split="prompt")] == ["mbpp-1"]
    assert [p.id for p in load_mbpp(path, split="train")] == ["mbpp-601", "mbpp-912"]
    assert load_mbpp(path, show_tests=False)[0].prompt == problems[0].metadata["text"]
    with pytest.raises(ValueError, match="unknown MBPP split"):
        load_mbpp(path, split="dev")


def test_data_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match=r"gsm8k_test\.jsonl.*VERIRL_DATA"):
        load_gsm8k()
    (tmp_path / "gsm8k_test.jsonl").write_text((FIX / "gsm8k_slice.jsonl").read_text())
    assert len(load_gsm8k()) == 5
    monkeypatch.delenv(DATA_ENV)
    assert data_dir() == REPO.parent / "shared" / "data"


def test_missing_explicit_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_math(tmp_path / "nope.jsonl")


def test_shared_data_counts(monkeypatch):
    """The default data directory (../shared/data) serves its files; a clone without it (CI's fresh
    clone elsewhere) gets an error that names the default and the variable to set instead."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    if not (REPO.parent / "shared" / "data" / "gsm8k_test.jsonl").is_file():
        with pytest.raises(FileNotFoundError, match=f"default .*shared/data; set \\${DATA_ENV}"):
            data_file("gsm8k_test.jsonl")
        return
    assert data_file("gsm8k_test.jsonl").is_file()
    assert len(load_gsm8k()) == 1319 and len(load_math500()) == 500
    assert len(load_humaneval()) == 164 and len(load_mbpp()) == 974 and len(load_mbpp(split="test")) == 500


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"uid": "a", "q": "1+1?", "a": "so 2\n#### 2", "lvl": 1}, {"uid": "b", "q": "2+2?", "a": "#### 4", "lvl": 2}]


def test_jsonl_field_mapping(tmp_path):
    path = _write(tmp_path / "mine.jsonl", ROWS)
    problems = load_jsonl(path, question="q", answer="a", id_field="uid", gold_parser=gsm8k_gold,
                          metadata_fields=("lvl",))
    assert [(p.id, p.prompt, p.gold) for p in problems] == [("a", "1+1?", "2"), ("b", "2+2?", "4")]
    assert problems[0].metadata == {"source": "mine", "index": 0, "solution": "so 2\n#### 2", "lvl": 1}
    plain = load_jsonl(path, question="q", answer="a", limit=1)
    assert len(plain) == 1 and plain[0].id == "mine-0" and plain[0].gold == "so 2\n#### 2"


def test_jsonl_tests_field_makes_code_problems(tmp_path):
    tests = {"stdio": [{"input": "1\n", "output": "2\n"}]}
    path = _write(tmp_path / "code.jsonl", [{"task": "Add one.", "tests": tests}])
    (p,) = load_jsonl(path, question="task", answer=None, tests="tests")
    assert p.checks == ("code",) and p.tests == tests and p.gold is None


def test_jsonl_missing_field_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path / "mine.jsonl", ROWS)
    fields = r"\(fields: \['a', 'lvl', 'q', 'uid'\]\)"
    with pytest.raises(DatasetError, match=r"mine\.jsonl: row 0: no field 'question' " + fields):
        load_jsonl(path)
    with pytest.raises(DatasetError, match="no field 'level'"):
        load_jsonl(path, question="q", answer="a", metadata_fields=("level",))


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"q": "x"}\n\n{oops\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:3: not JSON"):
        load_jsonl(path, question="q", answer=None)


def test_parquet_without_pyarrow_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_parquet(tmp_path / "x.parquet")


def test_parquet_round_trip(tmp_path):
    (pa,) = require_modules("pyarrow")  # a dev dependency: under CI a failure, not a skip
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "mine.parquet")
    problems = load_parquet(tmp_path / "mine.parquet", question="q", answer="a", gold_parser=gsm8k_gold)
    assert [p.gold for p in problems] == ["2", "4"]


def test_hf_without_datasets_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        load_hf(tmp_path / "x.jsonl")


def test_hf_local_file_goes_through_the_json_builder(monkeypatch, tmp_path):
    calls = []

    def load_dataset(builder, *args, **kwargs):
        calls.append((builder, args, kwargs))
        return ROWS

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    path = _write(tmp_path / "mine.jsonl", ROWS)
    problems = load_hf(path, split="test", question="q", answer="a", gold_parser=gsm8k_gold)
    assert calls == [("json", (), {"data_files": str(path), "split": "train"})]
    assert [p.gold for p in problems] == ["2", "4"] and problems[0].metadata["source"] == "mine"


def test_hf_local_file_real(tmp_path):
    require_modules("datasets")  # a dev dependency: under CI a failure, not a skip
    path = _write(tmp_path / "mine.jsonl", ROWS)
    problems = load_hf(path, question="q", answer="a", gold_parser=gsm8k_gold)
    assert [p.gold for p in problems] == ["2", "4"]


def test_problems_round_trip_through_dicts():
    for p in load_gsm8k(FIX / "gsm8k_slice.jsonl") + load_humaneval(FIX / "humaneval_slice.jsonl.gz"):
        assert Problem.from_dict(json.loads(json.dumps(p.to_dict()))) == p
