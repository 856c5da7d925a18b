"""Plain data across the sandbox boundary: reduce values to built-in types, tagged JSON on the wire.

Why: values made by untrusted code must not carry behaviour past the boundary. An object whose
`__eq__` always says True, a `str` subclass that lies, a list whose `__iter__` is patched: all
are reduced by the *base types'* own methods (`int.__int__`, `list.__iter__`, ...) to exact
built-in values before they are encoded, and what is decoded on the other side holds nothing
but exact built-ins. Whatever is not plain data becomes a handle: a number naming the object in
the process that made it, which compares equal to nothing but the same handle and can only be
passed back to that process as an argument.

Wire form: JSON, where None/bool/float/str/list and small ints are themselves and everything
else is a one-key object: {"t": [...]} tuple, {"s": [...]} set, {"fs": [...]} frozenset,
{"d": [[k, v], ...]} dict, {"b": hex} bytes, {"c": [re, im]} complex, {"i": hex} a big int,
{"it": [...]} an iterator (decoded as an iterator, so it is not equal to a list), {"ty": name} a
built-in type (int, str, ...: tests pass them as arguments), {"h": n, "type": name} a handle,
{"fn": name} a function of the solution named by its global name.
Stdlib only: this module is preloaded into the sandbox.
"""

from __future__ import annotations

import json
import types
from typing import Any, Callable

__all__ = ["encode", "decode", "dumps", "loads", "Handle", "Function", "NotPlain", "MAX_DEPTH"]

MAX_DEPTH = 200
MAX_NODES = 2_000_000
_BIG_INT_BITS = 12_000  # beyond ~3600 decimal digits ints travel as hex (no int_max_str_digits limit)
_ITERATORS = (types.GeneratorType, map, filter, zip, reversed, enumerate, range,
              type(iter([])), type(iter(())), type(iter("")), type({}.keys()), type({}.values()),
              type({}.items()))


_TYPES = {t.__name__: t for t in (int, float, str, bool, bytes, complex, list, tuple, dict, set, frozenset,
                                  bytearray, type(None), object)}


class NotPlain(TypeError):
    """A value that cannot cross the boundary (too deep, too big, or not allowed here)."""


class Handle:
    """An object that stayed in the process that made it; equal only to the same handle."""

    __slots__ = ("id", "type_name")

    def __init__(self, id: int, type_name: str) -> None:
        self.id, self.type_name = id, type_name

    def __eq__(self, other: object) -> bool:
        return type(other) is Handle and other.id == self.id

    def __hash__(self) -> int:
        return hash(("handle", self.id))

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


class Function:
    """A function of the solution, named by its global name (decoded by the solution's process)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<function {self.name}>"


def encode(value: Any, keep: Callable[[Any], int] | None = None) -> Any:
    """Reduce `value` to tagged JSON data. `keep(obj) -> id` turns a non-plain object into a
    handle; without it such an object raises NotPlain."""
    budget = [MAX_NODES]

    def enc(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise NotPlain("value too deep or too large")
        t = type(x)  # type() cannot be faked, unlike isinstance (a __class__ property)
        if x is None or t is bool:
            return x
        if issubclass(t, int):
            n = int.__int__(x)
            return {"i": hex(n)} if n.bit_length() > _BIG_INT_BITS else n
        if issubclass(t, float):
            return float.__float__(x)
        if issubclass(t, str):
            return str.__str__(x)
        if issubclass(t, complex):
            c = complex.__complex__(x)
            return {"c": [c.real, c.imag]}
        if issubclass(t, (bytes, bytearray)):
            return {"b": (bytes.__add__(b"", x) if issubclass(t, bytes) else bytes(bytearray.__iter__(x))).hex()}
        if issubclass(t, list):
            return [enc(v, depth + 1) for v in list.__iter__(x)]
        if issubclass(t, tuple):
            return {"t": [enc(v, depth + 1) for v in tuple.__iter__(x)]}
        if issubclass(t, dict):
            return {"d": [[enc(k, depth + 1), enc(v, depth + 1)] for k, v in dict.items(x)]}
        if issubclass(t, frozenset):
            return {"fs": [enc(v, depth + 1) for v in frozenset.__iter__(x)]}
        if issubclass(t, set):
            return {"s": [enc(v, depth + 1) for v in set.__iter__(x)]}
        if issubclass(t, Handle):
            return {"h": x.id, "type": x.type_name}
        if issubclass(t, Function):
            return {"fn": x.name}
        if t is type and x in _TYPES.values():
            return {"ty": x.__name__}
        if issubclass(t, _ITERATORS):
            return {"it": [enc(v, depth + 1) for v in x]}
        if keep is None:
            raise NotPlain(f"a value of type {t.__name__} is not plain data")
        return {"h": keep(x), "type": t.__name__[:100]}

    return enc(value, 0)


def decode(data: Any, resolve: Callable[[dict], Any] | None = None) -> Any:
    """Tagged JSON data back to exact built-ins. `resolve(tag)` maps {"h"}/{"fn"} tags to objects
    (in the process that owns them); without it they become Handle / Function values."""

    def dec(x: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise NotPlain("value too deep")
        if x is None or type(x) in (bool, int, float, str):
            return x
        if type(x) is list:
            return [dec(v, depth + 1) for v in x]
        if type(x) is not dict or len(x) not in (1, 2):
            raise NotPlain("malformed value")
        if "t" in x:
            return tuple(dec(v, depth + 1) for v in x["t"])
        if "s" in x:
            return {dec(v, depth + 1) for v in x["s"]}
        if "fs" in x:
            return frozenset(dec(v, depth + 1) for v in x["fs"])
        if "d" in x:
            return {dec(k, depth + 1): dec(v, depth + 1) for k, v in x["d"]}
        if "b" in x:
            return bytes.fromhex(x["b"])
        if "c" in x:
            return complex(float(x["c"][0]), float(x["c"][1]))
        if "i" in x:
            return int(x["i"], 16)
        if "ty" in x:
            if x["ty"] not in _TYPES:
                raise NotPlain("unknown type")
            return _TYPES[x["ty"]]
        if "it" in x:
            return iter([dec(v, depth + 1) for v in x["it"]])
        if "h" in x or "fn" in x:
            if resolve is not None:
                return resolve(x)
            return Handle(int(x["h"]), str(x.get("type", "object"))) if "h" in x else Function(str(x["fn"]))
        raise NotPlain("unknown tag")

    return dec(data, 0)


def dumps(value: Any, keep: Callable[[Any], int] | None = None) -> bytes:
    return json.dumps(encode(value, keep), separators=(",", ":")).encode()


def loads(raw: bytes, resolve: Callable[[dict], Any] | None = None) -> Any:
    """Raises NotPlain (a TypeError), ValueError or RecursionError on malformed input."""
    return decode(json.loads(raw), resolve)
