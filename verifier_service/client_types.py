"""Plain-python items and results of the client, and their proto conversion.

Why apart from client.py: the conversion is pure (protobuf only, no grpc), so the
evaluator and the adapters can validate input without a channel, and client.py
stays about transport. Results are frozen dataclasses whose `status` is the
proto enum's name ("CORRECT", "TIMEOUT", ...): callers compare strings, not
generated enum numbers. judged=False means "the verifier could not decide" and
must never be read as a wrong answer.

Items are given as dicts with the proto's field names (nested messages as
dicts, enums by name), as `MathItem`, or as the generated message itself.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Union

from google.protobuf import json_format
from google.protobuf.message import Message

from .proto import verifier_pb2 as pb

__all__ = [
    "MathItem", "MathResult", "CodeResult", "TestOutcome", "StepsResult", "CandidatesResult",
    "ServerLimits", "ServerInfo", "Result", "KINDS", "Kind", "to_item", "to_math_options",
    "to_verify_request", "from_proto", "result_of",
]


@dataclass(frozen=True)
class MathItem:
    id: str
    response: str
    gold: str
    options: Mapping[str, Any] | None = None  # MathOptions fields; overrides the request's


@dataclass(frozen=True)
class MathResult:
    id: str
    status: str
    judged: bool
    correct: bool
    score: float
    extracted: str
    normalized: str
    gold_normalized: str
    reason: str
    elapsed_ms: float
    cached: bool


@dataclass(frozen=True)
class TestOutcome:
    index: int
    status: str
    detail: str
    cpu_time_s: float


@dataclass(frozen=True)
class CodeResult:
    id: str
    status: str
    judged: bool
    correct: bool
    score: float
    passed: int
    total: int
    tests: tuple[TestOutcome, ...]
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    cpu_time_s: float
    peak_memory_bytes: int
    reason: str
    elapsed_ms: float
    extracted: str


@dataclass(frozen=True)
class StepsResult:
    id: str
    status: str
    judged: bool
    step_scores: tuple[float, ...]
    score: float
    first_error: int
    reason: str
    elapsed_ms: float
    answer: MathResult | None  # present when the item had a gold


@dataclass(frozen=True)
class CandidatesResult:
    id: str
    status: str
    judged: bool
    scores: tuple[float, ...]
    best: int
    reason: str
    elapsed_ms: float


@dataclass(frozen=True)
class ServerLimits:
    max_items_per_request: int
    max_message_bytes: int
    max_string_bytes: int
    max_tests_per_item: int
    queue_capacity: int
    math_timeout_s: float
    max_math_timeout_s: float
    code_cpu_time_s: float
    max_code_cpu_time_s: float
    code_memory_bytes: int
    max_code_memory_bytes: int


@dataclass(frozen=True)
class ServerInfo:
    version: str
    capabilities: tuple[str, ...]
    limits: ServerLimits | None
    math_workers: int
    code_slots: int
    sandbox_mode: str
    sandbox_missing: tuple[str, ...]
    prm_model: str
    prm_details: str


Result = Union[MathResult, CodeResult, StepsResult, CandidatesResult]

# Proto message name -> plain class, for nested messages inside results.
_PLAIN = {"MathResult": MathResult, "TestOutcome": TestOutcome, "Limits": ServerLimits}


def from_proto(cls: type, msg: Message) -> Any:
    """Copy a result message into its dataclass field by field; enums become names.

    An enum number this client does not know (a newer server) becomes
    "UNKNOWN_<n>" rather than an error: the result is still delivered.
    """
    values = {}
    for f in fields(cls):
        fd = msg.DESCRIPTOR.fields_by_name[f.name]
        value = getattr(msg, f.name)
        if fd.enum_type is not None:
            known = fd.enum_type.values_by_number.get(value)
            value = known.name if known is not None else f"UNKNOWN_{value}"
        elif fd.message_type is not None:
            nested = _PLAIN[fd.message_type.name]
            if fd.is_repeated:
                value = tuple(from_proto(nested, m) for m in value)
            else:
                value = from_proto(nested, value) if msg.HasField(f.name) else None
        elif fd.is_repeated:
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


@dataclass(frozen=True)
class Kind:
    """One checker as the wire sees it: its unary RPC, messages and result class."""

    name: str
    method: str         # stub attribute of the batched unary RPC
    request: type       # request message class
    item: type          # item message class
    result: type        # plain result dataclass


KINDS = {
    "math": Kind("math", "CheckMath", pb.CheckMathRequest, pb.MathItem, MathResult),
    "code": Kind("code", "RunCode", pb.RunCodeRequest, pb.CodeItem, CodeResult),
    "steps": Kind("steps", "ScoreSteps", pb.ScoreStepsRequest, pb.StepsItem, StepsResult),
    "candidates": Kind("candidates", "ScoreCandidates", pb.ScoreCandidatesRequest, pb.CandidatesItem,
                       CandidatesResult),
}


def _plain_dict(value: Any) -> dict[str, Any]:
    """A dict with proto field names from a dict or a dataclass; enum members become their names."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping or a dataclass, got {type(value).__name__}")
    return {k: _plain_value(v) for k, v in value.items() if v is not None}


def _plain_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return _plain_dict(value)
    return value


def _parse(data: dict[str, Any], message: Message, what: str) -> Message:
    """The message from proto field names; the constructor first (20-40x faster than ParseDict for an
    item, and ParseDict's regex pass over every string cost a 2 MiB response 18 ms per field), ParseDict
    where the constructor refuses: JSON field names, integers given as strings or whole floats, and the
    error message that names the field."""
    try:
        return type(message)(**data)
    except (TypeError, ValueError, KeyError, AttributeError):
        pass
    try:
        return json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        # protobuf's message goes on to list every available field; its first line names the problem
        first = str(exc).splitlines()[0].rstrip(".")
        raise ValueError(f"{what}: {first}" if what else first) from None


def to_math_options(options: Any) -> pb.MathOptions:
    """MathOptions from a dict (proto field names), verifier_service.math.MathOptions, or the message."""
    if isinstance(options, pb.MathOptions):
        return options
    return _parse(_plain_dict(options), pb.MathOptions(), "options")


def to_item(kind: Kind, item: Any, *, label: str | None = None) -> Message:
    """The item message of `kind` from a dict, a dataclass or the message; ValueError names the field,
    prefixed by `label` (default: the kind and the item's id).

    A non-string id is turned into a string (datasets often carry integer ids).
    """
    if isinstance(item, kind.item):
        return item
    data = _plain_dict(item)
    data.pop("kind", None)
    if "id" in data:
        data["id"] = str(data["id"])
    return _parse(data, kind.item(), f"{kind.name} item {data.get('id', '?')!r}" if label is None else label)


def to_verify_request(item: Any, math_options: pb.MathOptions | None) -> pb.VerifyRequest:
    """A stream request from a MathItem or a dict whose "kind" key picks the checker (default math)."""
    name = "math" if isinstance(item, (MathItem, pb.MathItem)) else _plain_dict(item).get("kind", "math")
    if name not in KINDS:
        raise ValueError(f"unknown kind {name!r}; expected one of {sorted(KINDS)}")
    request = pb.VerifyRequest(**{name: to_item(KINDS[name], item)})
    if math_options is not None:
        request.math_options.CopyFrom(math_options)
    return request


def result_of(response: pb.VerifyResponse) -> Result:
    """The plain result carried by one stream response."""
    which = response.WhichOneof("result")  # the oneof's field names are the kind names
    return from_proto(KINDS[which].result, getattr(response, which))
