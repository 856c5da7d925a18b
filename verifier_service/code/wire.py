"""Length-prefixed frames over pipes and sockets, between the runner, the sandbox's init process,
the solution process and the test process.

A frame is a 4-byte big-endian length, a JSON header, and optional raw blobs whose sizes the header
lists under "blobs" (program output travels as bytes, not as JSON strings). Readers cap the size
of what they accept: a frame from untrusted code that claims more is an error, never a big buffer.
Stdlib only: preloaded into the sandbox.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

__all__ = ["pack", "write_frame", "read_frame", "FrameReader", "FrameError"]

_LEN = struct.Struct(">I")


class FrameError(ValueError):
    """A malformed or oversized frame, or the peer closed the stream inside one."""


def pack(header: dict[str, Any], *blobs: bytes) -> bytes:
    if blobs:
        header = {**header, "blobs": [len(b) for b in blobs]}
    body = json.dumps(header, separators=(",", ":")).encode()
    return _LEN.pack(len(body)) + body + b"".join(blobs)


def write_frame(fd: int, header: dict[str, Any], *blobs: bytes) -> None:
    data = memoryview(pack(header, *blobs))
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise FrameError("stream closed inside a frame")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int) -> tuple[dict[str, Any], list[bytes]] | None:
    """Blocking read of one frame; None at a clean end of stream."""
    first = os.read(fd, 4)
    if not first:
        return None
    head = first if len(first) == 4 else first + _read_exact(fd, 4 - len(first))
    header = _parse(_read_exact(fd, _check(_LEN.unpack(head)[0], max_bytes)))
    sizes = _blob_sizes(header, max_bytes)
    return header, [_read_exact(fd, n) for n in sizes]


class FrameReader:
    """Incremental frame parser for a select loop over a non-blocking fd."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buffer = bytearray()
        self.closed = False

    def feed(self, fd: int) -> list[tuple[dict[str, Any], list[bytes]]]:
        """Read what is available; return the complete frames. Raises FrameError on garbage."""
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            chunk = None
        except ConnectionResetError:  # a socket peer that exited with our data unread
            chunk = b""
        if chunk == b"":
            self.closed = True
        elif chunk:
            self.buffer += chunk
            if len(self.buffer) > self.max_bytes + 4:
                raise FrameError("frame over the size limit")
        frames = []
        while len(self.buffer) >= 4:
            n = _check(_LEN.unpack_from(self.buffer)[0], self.max_bytes)
            if len(self.buffer) < 4 + n:
                break
            header = _parse(bytes(self.buffer[4:4 + n]))
            sizes = _blob_sizes(header, self.max_bytes)
            end = 4 + n + sum(sizes)
            if len(self.buffer) < end:
                break
            blobs, at = [], 4 + n
            for size in sizes:
                blobs.append(bytes(self.buffer[at:at + size]))
                at += size
            del self.buffer[:end]
            frames.append((header, blobs))
        return frames


def _check(n: int, max_bytes: int) -> int:
    if n > max_bytes:
        raise FrameError(f"frame of {n} bytes over the limit of {max_bytes}")
    return n


def _parse(body: bytes) -> dict[str, Any]:
    try:
        header = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise FrameError(f"malformed frame: {err}") from None
    if type(header) is not dict:
        raise FrameError("frame header is not an object")
    return header


def _blob_sizes(header: dict[str, Any], max_bytes: int) -> list[int]:
    sizes = header.get("blobs", [])
    if type(sizes) is not list or not all(type(n) is int and n >= 0 for n in sizes) or sum(sizes) > max_bytes:
        raise FrameError("bad blob sizes")
    return sizes
