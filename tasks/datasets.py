"""Loaders for the benchmarks verirl ships with: GSM8K, MATH / MATH-500, HumanEval and MBPP.

Each reads the file as published (see ../shared/data/MANIFEST.json for origins and licences) and keeps
the source's reference solution in `metadata`, so a report can show it next to a model's answer.

Files are looked up in `data_dir()`: the `VERIRL_DATA` environment variable, else `../shared/data` next
to the repository. Nothing is downloaded: a missing file is an error that says where it was looked for.
"""

from __future__ import annotations

import builtins
import keyword
import os
import re
from pathlib import Path
from typing import Any

from tasks.files import DatasetError, read_jsonl
from tasks.types import CHECK_CODE, CHECK_MATH, Problem

__all__ = ["data_dir", "data_file", "gsm8k_gold", "load_gsm8k", "load_math", "load_math500",
           "load_humaneval", "load_mbpp", "MBPP_SPLITS", "DATA_ENV"]

DATA_ENV = "VERIRL_DATA"
_REPO = Path(__file__).resolve().parents[1]
_DEFAULT_DIR = _REPO.parent / "shared" / "data"
_BUILTINS = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | {"isclose"}


def data_dir() -> Path:
    """Where the benchmark files live: $VERIRL_DATA, else ../shared/data relative to the repository."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return _DEFAULT_DIR


def data_file(name: str) -> Path:
    """The path of a data file in `data_dir()`; a clear error when it is not there."""
    path = data_dir() / name
    if not path.is_file():
        how = f"${DATA_ENV}={os.environ[DATA_ENV]}" if os.environ.get(DATA_ENV) else \
            f"default {_DEFAULT_DIR}; set ${DATA_ENV} to the directory that has it"
        raise FileNotFoundError(f"data file {name!r} not found at {path} ({how})")
    return path


def _resolve(path: str | Path | None, default_name: str) -> Path:
    if path is None:
        return data_file(default_name)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return path


_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_gold(solution: str) -> str:
    """The final answer of a GSM8K solution: what follows "####", thousands separators removed."""
    m = _GSM8K_ANSWER.search(solution)
    if m is None:
        raise ValueError("no '####' final answer in the solution")
    return m.group(1).replace(",", "").strip()


def load_gsm8k(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """GSM8K rows {question, answer}: gold is the number after "####", the full answer is the solution."""
    path = _resolve(path, "gsm8k_test.jsonl")
    split = "train" if "train" in path.name else "test"
    out = []
    for i, row in enumerate(read_jsonl(path)):
        if limit is not None and i >= limit:
            break
        try:
            gold = gsm8k_gold(row["answer"])
        except (KeyError, ValueError) as e:
            raise DatasetError(f"{path}: row {i}: not a GSM8K row ({e})") from e
        out.append(Problem(id=f"gsm8k-{split}-{i}", prompt=row["question"], gold=gold, checks=(CHECK_MATH,),
                           metadata={"source": "gsm8k", "index": i, "solution": row["answer"]}))
    return out


def _last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (braces matched), for MATH files without an answer field."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    body = start + len("\\boxed{")
    depth = 1
    for i in range(body, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[body:i]
    return None


def _level(value: Any) -> int | None:
    """MATH levels come as 3 (MATH-500) or "Level 3" (the original release); "Level ?" exists too."""
    m = re.search(r"\d+", str(value))
    return int(m.group()) if m else None


def load_math(path: str | Path | None = None, *, limit: int | None = None, source: str = "math") -> list[Problem]:
    """MATH-format rows {problem, solution, answer?, subject|type, level, unique_id?}.

    Gold is the `answer` field; the original MATH release has none, and there it is the last \\boxed{}
    of the solution. Default file: MATH-500.
    """
    path = _resolve(path, "math500_test.jsonl")
    out = []
    for i, row in enumerate(read_jsonl(path)):
        if limit is not None and i >= limit:
            break
        where = f"{path}: row {i}"
        if "problem" not in row or "solution" not in row:
            raise DatasetError(f"{where}: not a MATH row (fields: {sorted(row)})")
        gold = row["answer"] if "answer" in row else _last_boxed(row["solution"])
        if gold is None:
            raise DatasetError(f"{where}: no 'answer' field and no \\boxed{{}} in the solution")
        meta = {"source": source, "index": i, "solution": row["solution"],
                "subject": row.get("subject", row.get("type")), "level": _level(row.get("level"))}
        if "unique_id" in row:
            meta["unique_id"] = row["unique_id"]
        out.append(Problem(id=row.get("unique_id", f"{source}-{i}"), prompt=row["problem"], gold=str(gold),
                           checks=(CHECK_MATH,), metadata=meta))
    return out


def load_math500(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """MATH-500 (the 500-problem test subset of "Let's Verify Step by Step")."""
    return load_math(path, limit=limit, source="math500")


def load_humaneval(path: str | Path | None = None, *, limit: int | None = None) -> list[Problem]:
    """HumanEval rows: the prompt is the function stub; tests are `check(candidate)` code with the entry
    point. `metadata["reference_code"]` is the stub plus the canonical body: a complete program."""
    path = _resolve(path, "HumanEval.jsonl.gz")
    out = []
    for i, row in enumerate(read_jsonl(path)):
        if limit is not None and i >= limit:
            break
        out.append(Problem(
            id=row["task_id"], prompt=row["prompt"], checks=(CHECK_CODE,),
            tests={"assert": row["test"], "entry_point": row["entry_point"]},
            metadata={"source": "humaneval", "index": i, "task_id": row["task_id"], "language": "python",
                      "entry_point": row["entry_point"], "canonical_solution": row["canonical_solution"],
                      "reference_code": row["prompt"] + row["canonical_solution"]}))
    return out


# The split of the MBPP paper (task ids, inclusive): 1-10 for few-shot prompts, 11-510 test,
# 511-600 validation, 601-974 train.
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974),
               "all": (1, 10**9)}
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")


def _called_function(assert_line: str, reference_code: str) -> str | None:
    """The function an MBPP assert tests: the first name it calls that the reference code defines,
    else the first that is not a builtin (`assert int(f(4, 2)) == 20` -> "f"; task 126 defines `sum`)."""
    called = _CALL.findall(assert_line)
    defined = set(re.findall(r"^\s*def\s+([A-Za-z_]\w*)", reference_code, re.M))
    for name in called:
        if name in defined:
            return name
    return next((n for n in called if n not in _BUILTINS), None)


def load_mbpp(path: str | Path | None = None, *, split: str = "all", show_tests: bool = True,
              limit: int | None = None) -> list[Problem]:
    """MBPP rows {task_id, text, code, test_list, test_setup_code, challenge_test_list}.

    Tests are the setup code plus the assert list, run after the solution (no entry point: the asserts
    call the function themselves). With `show_tests` the prompt ends with the asserts, as in the MBPP
    paper: the text alone does not say what the function must be called, so without them even a right
    solution fails. `metadata["entry_point"]` is the function the first assert calls (None if unclear).
    """
    if split not in MBPP_SPLITS:
        raise ValueError(f"unknown MBPP split {split!r}; known: {sorted(MBPP_SPLITS)}")
    lo, hi = MBPP_SPLITS[split]
    path = _resolve(path, "mbpp.jsonl")
    out = []
    for i, row in enumerate(read_jsonl(path)):
        if limit is not None and len(out) >= limit:
            break
        if not lo <= int(row["task_id"]) <= hi:
            continue
        asserts = "\n".join(row["test_list"])
        setup = row.get("test_setup_code") or ""
        entry_point = _called_function(row["test_list"][0], row["code"]) if row["test_list"] else None
        prompt = row["text"]
        if show_tests:
            prompt += "\nYour code should pass these tests:\n" + asserts
        out.append(Problem(
            id=f"mbpp-{row['task_id']}", prompt=prompt, checks=(CHECK_CODE,),
            tests={"assert": (setup + "\n" if setup.strip() else "") + asserts},
            metadata={"source": "mbpp", "index": i, "task_id": int(row["task_id"]), "language": "python",
                      "text": row["text"], "entry_point": entry_point,
                      "reference_code": row["code"].replace("\r\n", "\n"),
                      "challenge_tests": list(row.get("challenge_test_list") or [])}))
    return out
