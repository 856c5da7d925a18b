"""Generic loaders: any JSONL, parquet or Hugging Face dataset, with the field names given by the caller.

Every loader reads rows (plain dicts) and hands them to `rows_to_problems`, so a field mapping means the
same thing whatever the container. A row without a mapped field is an error naming the file, the row and
the fields it does have: a misspelled field name must not quietly produce empty prompts.

pyarrow and `datasets` are optional: they are imported when their loader is called, and a missing one is
an ImportError that says what to install.
"""

from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, Mapping

from tasks.types import CHECK_CODE, CHECK_MATH, Problem

__all__ = ["DatasetError", "read_jsonl", "write_jsonl", "rows_to_problems", "load_jsonl",
           "load_parquet", "load_hf"]


class DatasetError(ValueError):
    """A data file that does not have the shape the loader was told to expect."""


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-blank line; `.gz` files are decompressed. Bad JSON names file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{lineno}: not JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield row


def write_jsonl(rows: Iterable[Mapping[str, Any]], path: str | Path) -> int:
    """Write one JSON object per line; returns the number of lines."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _field(row: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in row:
        raise DatasetError(f"{where}: no field {name!r} (fields: {sorted(row)}); "
                           f"pass the right field name to the loader")
    return row[name]


def rows_to_problems(
    rows: Iterable[Mapping[str, Any]],
    *,
    origin: str,
    question: str = "question",
    answer: str | None = "answer",
    tests: str | None = None,
    id_field: str | None = None,
    gold_parser: Callable[[str], str] | None = None,
    checks: tuple[str, ...] | None = None,
    metadata_fields: tuple[str, ...] = (),
    source: str | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Map rows to problems.

    `question` names the prompt field; `answer` the gold answer field (None: no gold), passed through
    `gold_parser` when given (e.g. `gsm8k_gold`, to keep only the number after "####": the raw field is
    then kept as metadata "solution"); `tests` a field already in the verifier's test shape. `checks`
    defaults to ("math",) with an answer, else ("code",) with tests. Ids come from `id_field`, else
    "<source>-<row index>". `origin` (usually the file) only makes error messages useful.
    """
    source = source or Path(origin).stem
    if checks is None:
        checks = (CHECK_MATH,) if answer is not None else (CHECK_CODE,) if tests is not None else ()
    out: list[Problem] = []
    for i, row in enumerate(rows):
        if limit is not None and len(out) >= limit:
            break
        where = f"{origin}: row {i}"
        meta: dict[str, Any] = {"source": source, "index": i}
        prompt = str(_field(row, question, where))
        gold = None
        if answer is not None:
            raw = _field(row, answer, where)
            gold = str(raw)
            if gold_parser is not None:
                try:
                    gold = gold_parser(gold)
                except ValueError as e:
                    raise DatasetError(f"{where}: field {answer!r}: {e}") from e
                meta["solution"] = raw
        for name in metadata_fields:
            meta[name] = _field(row, name, where)
        out.append(Problem(
            id=str(_field(row, id_field, where)) if id_field else f"{source}-{i}",
            prompt=prompt,
            gold=gold,
            tests=_field(row, tests, where) if tests is not None else None,
            checks=checks,
            metadata=meta,
        ))
    return out


def load_jsonl(path: str | Path, **mapping: Any) -> list[Problem]:
    """Problems from any JSONL file (`.gz` too); `mapping` as in `rows_to_problems`."""
    return rows_to_problems(read_jsonl(path), origin=str(path), **mapping)


def _optional(module: str, install: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{purpose} needs the optional package {install!r}, which is not installed: "
                          f"pip install {install}") from e


def load_parquet(path: str | Path, **mapping: Any) -> list[Problem]:
    """Problems from a parquet file (needs pyarrow); `mapping` as in `rows_to_problems`."""
    pq = _optional("pyarrow.parquet", "pyarrow", "reading parquet files")
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return rows_to_problems(pq.read_table(str(path)).to_pylist(), origin=str(path), **mapping)


# Local files go through the `datasets` builder for their format; the split of a single file is "train".
_HF_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".gz": "json"}


def load_hf(name_or_path: str | Path, *, split: str = "train", config: str | None = None,
            **mapping: Any) -> list[Problem]:
    """Problems from a Hugging Face dataset (needs `datasets`).

    `name_or_path` is, in this order: a local data file (json/jsonl/parquet/csv: its one split,
    "train", is read and `split` is ignored); a directory written by `save_to_disk`; another local
    directory (its data files, `split` applies); else a hub name such as "openai/gsm8k" (needs the
    network; `config` picks the subset, e.g. "main"). Example:
    `load_hf("openai/gsm8k", config="main", split="test", gold_parser=gsm8k_gold)`.
    """
    datasets = _optional("datasets", "datasets", "loading Hugging Face datasets")
    path = Path(name_or_path)
    if path.is_file():
        builder = _HF_BUILDERS.get(path.suffix)
        if builder is None:
            raise DatasetError(f"{path}: unknown data file type {path.suffix!r}; "
                               f"known: {sorted(_HF_BUILDERS)}")
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    elif path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(path))
        if (path / "dataset_dict.json").is_file():
            ds = ds[split]
    elif path.is_dir():
        ds = datasets.load_dataset(str(path), config, split=split)
    else:
        ds = datasets.load_dataset(str(name_or_path), config, split=split)
    mapping.setdefault("source", path.stem if path.exists() else str(name_or_path).replace("/", "_"))
    return rows_to_problems(ds, origin=str(name_or_path), **mapping)
