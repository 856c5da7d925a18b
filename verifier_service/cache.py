"""A bounded LRU of check results, keyed by a digest of their content.

GRPO asks the same (gold, response) question many times (identical completions in a group,
repeated epochs, retried batches), and a sympy check costs milliseconds, so results are
reused. Keys are 16-byte digests rather than the strings themselves: an entry costs a few
hundred bytes even when the response is a megabyte.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections import OrderedDict
from typing import Any, Hashable

__all__ = ["ResultCache", "content_key", "MISS"]

MISS = object()  # returned by ResultCache.get for an absent key (None is a valid value)


def content_key(*parts: Any) -> bytes:
    """Digest of `parts`; strings are hashed as length-prefixed UTF-8, anything else pickled.

    Each part is hashed on its own, with its length, so ("ab", "c") and ("a", "bc") differ and
    the result does not depend on object identity (pickle would memoise `gold is response`).
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else pickle.dumps(part, protocol=5)
        digest.update(b"s" if isinstance(part, str) else b"p")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()


class ResultCache:
    """Thread-safe LRU; `maxsize` entries."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._data.get(key, MISS)
            if value is MISS:
                self.misses += 1
            else:
                self.hits += 1
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
