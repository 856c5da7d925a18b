"""Regenerate the Python stubs of protos/verifier/v1/verifier.proto.

Usage: python scripts/gen_protos.py [OUT_DIR]   (default: verifier_service/proto)

The stubs are committed; tests/test_protos.py regenerates them into a temporary
directory and compares, so a proto change without regeneration fails CI.
protoc writes absolute imports (`from verifier.v1 import verifier_pb2`); they are
rewritten to relative ones so the stubs live inside the verifier_service package.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO = "verifier/v1/verifier.proto"
DEFAULT_OUT = ROOT / "verifier_service" / "proto"


def generate(out_dir: Path) -> list[Path]:
    staging = out_dir / "_staging"
    staging.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={staging}",
        f"--pyi_out={staging}",
        f"--grpc_python_out={staging}",
        PROTO,
    ])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    written = []
    for src in sorted((staging / "verifier" / "v1").glob("verifier_pb2*")):
        text = re.sub(r"^from verifier\.v1 import (\w+)", r"from . import \1", src.read_text(), flags=re.M)
        dst = out_dir / src.name
        dst.write_text(text)
        written.append(dst)
    for path in sorted(staging.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    staging.rmdir()
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
