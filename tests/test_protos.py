"""The committed stubs are exactly what scripts/gen_protos.py generates from the proto."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "verifier_service" / "proto"


def _gen_protos():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stubs_are_reproducible(tmp_path: Path):
    written = _gen_protos().generate(tmp_path)
    names = sorted(path.name for path in written)
    assert names == ["verifier_pb2.py", "verifier_pb2.pyi", "verifier_pb2_grpc.py"]
    for path in written:
        assert path.read_bytes() == (COMMITTED / path.name).read_bytes(), (
            f"{path.name} differs from a fresh generation: run `.venv/bin/python scripts/gen_protos.py`")
