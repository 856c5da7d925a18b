"""Sync and asyncio clients of the verirl verifier service.

Why a client of our own rather than bare stubs: a trainer calls the verifier
millions of times, across server restarts and replicas. So the client
* splits a long batch into chunks of at most the server's max_items_per_request
  (learned once from GetServerInfo, or given), sends them concurrently and
  reassembles the results in order;
* gives every call a deadline that covers the whole call, retries included;
* retries UNAVAILABLE and RESOURCE_EXHAUSTED with exponential backoff and
  jitter, bounded by attempts and by the deadline; each chunk keeps its
  request_id across retries, so a server that already ran it answers from its
  record (nothing counted twice). Anything else (INVALID_ARGUMENT above all) is
  raised at once as VerifierCallError: a caller's mistake does not get better;
* spreads calls round robin over several addresses; one that refused a
  connection sits out a cool-down and the retry goes to the next one at once.

* authenticates with a bearer token (`authorization: Bearer <token>` metadata on
  every call) and speaks TLS, with a client certificate for mTLS servers. Each of
  token=, tls_ca=, tls_cert=, tls_key= left at None is read from the environment
  ($VERIRL_AUTH_TOKEN, $VERIRL_TLS_CA, $VERIRL_TLS_CERT, $VERIRL_TLS_KEY), so every
  caller (trainer, `verirl eval --server`, the adapters) reaches a guarded server
  once those are set; "" turns one off. See docs/security.md.

Not handled: a Verify stream that breaks midway is not resumed (the error says
how many items were still open; resend them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from .client_types import (
    KINDS, CandidatesResult, CodeResult, Kind, MathItem, MathResult, Result, ServerInfo, StepsResult,
    from_proto, result_of, to_item, to_math_options, to_verify_request,
)
from .proto import verifier_pb2 as pb
from .proto.verifier_pb2_grpc import VerifierStub

__all__ = [
    "VerifierClient", "AsyncVerifierClient", "RetryPolicy", "VerifierCallError", "Access",
    "TOKEN_ENV", "TLS_CA_ENV", "TLS_CERT_ENV", "TLS_KEY_ENV",
    "MathItem", "MathResult", "CodeResult", "StepsResult", "CandidatesResult", "ServerInfo",
]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_STREAM_TIMEOUT_S = 3600.0
# Matches the server's default message limit; a larger server limit needs the same argument here.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
FALLBACK_MAX_ITEMS = 256  # used when the server reports no limit
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
TOKEN_ENV = "VERIRL_AUTH_TOKEN"
TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV = "VERIRL_TLS_CA", "VERIRL_TLS_CERT", "VERIRL_TLS_KEY"
LOOPBACK_HOSTS = ("localhost", "::1")

log = logging.getLogger(__name__)


def _pem(value: str | bytes | None, env: str) -> bytes | None:
    """PEM bytes from the bytes themselves or a file path; None: from $env (a path), if set."""
    if value is None:
        value = os.environ.get(env) or None
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class Access:
    """How a client proves who it is and guards the line: a bearer token and TLS material.

    Build it with Access.resolve(...) (what the clients do with their arguments); the token
    and key are kept out of repr so that a logged client cannot leak them.
    """

    token: str = field(default="", repr=False)
    tls: bool = False
    ca: bytes | None = None     # PEM roots; None under TLS: the system's roots
    cert: bytes | None = None   # PEM client certificate chain (mTLS)
    key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None  # the name the server's certificate must carry, if not the address's host

    @classmethod
    def resolve(cls, *, token: str | None = None, tls: bool = False, tls_ca: str | bytes | None = None,
                tls_cert: str | bytes | None = None, tls_key: str | bytes | None = None,
                tls_server_name: str | None = None) -> Access:
        """Arguments left at None come from the environment; TLS is on when asked or when any
        TLS material is given. tls_* are file paths or PEM bytes."""
        token = (os.environ.get(TOKEN_ENV, "") if token is None else token).strip()
        if token and not (token.isascii() and token.isprintable() and " " not in token):
            raise ValueError("token must be printable ASCII without spaces (it travels as gRPC metadata)")
        ca, cert, key = _pem(tls_ca, TLS_CA_ENV), _pem(tls_cert, TLS_CERT_ENV), _pem(tls_key, TLS_KEY_ENV)
        if (cert is None) != (key is None):
            raise ValueError("tls_cert and tls_key go together (a client certificate needs its key)")
        return cls(token=token, tls=tls or ca is not None or cert is not None, ca=ca, cert=cert, key=key,
                   server_name=tls_server_name)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return (("authorization", f"Bearer {self.token}"),) if self.token else None

    def _credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)

    def _options(self, options: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return options + ([("grpc.ssl_target_name_override", self.server_name)] if self.server_name else [])

    def channel(self, address: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        if not self.tls:
            return grpc.insecure_channel(address, options=options)
        return grpc.secure_channel(address, self._credentials(), options=self._options(options))

    def aio_channel(self, address: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        if not self.tls:
            return grpc.aio.insecure_channel(address, options=options)
        return grpc.aio.secure_channel(address, self._credentials(), options=self._options(options))

    def warn_if_exposed(self, addresses: Sequence[str]) -> None:
        """A token sent without TLS to another host can be read by anyone on the path: say so."""
        if self.token and not self.tls:
            for address in addresses:
                host = address.rpartition(":")[0].strip("[]")
                if not (host.startswith("127.") or host in LOOPBACK_HOSTS):
                    log.warning("sending a bearer token to %s without TLS: it crosses the network in clear text",
                                address)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: at most max_attempts tries, never past the call's deadline."""

    max_attempts: int = 8
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    dead_cooldown_s: float = 1.0  # how long an unreachable address is skipped

    def backoff(self, attempt: int) -> float:
        """Delay before retry `attempt` (1-based): exponential, capped, half of it jittered
        so that many trainers hitting one restarted server do not retry in lockstep."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return cap / 2 + random.uniform(0, cap / 2)


class VerifierCallError(Exception):
    """A call that failed as a whole; `code` is the gRPC status name (e.g. "INVALID_ARGUMENT")."""

    def __init__(self, code: str, details: str, *, address: str = "", attempts: int = 1):
        super().__init__(f"{code}: {details} (address {address or '?'}, {attempts} attempt(s))")
        self.code = code
        self.details = details
        self.address = address
        self.attempts = attempts


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Message limits like the server's; short reconnect backoff so a restarted server is found
    again within a retry budget; keepalive pings (only while a call is open) to notice a dead
    peer under a long Verify stream. Their interval stays above a gRPC server's default
    minimum (5 min without data): more often, and the server answers GOAWAY too_many_pings,
    killing a stream that idles while the trainer generates."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 330_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


def parse_addresses(addresses: str | Sequence[str]) -> tuple[str, ...]:
    """"h1:p1,h2:p2" or ["h1:p1", "h2:p2"] -> a non-empty tuple of addresses."""
    parts = addresses.split(",") if isinstance(addresses, str) else list(addresses)
    out = tuple(p.strip() for p in parts if p.strip())
    if not out:
        raise ValueError("no server address given")
    return out


class _Endpoints:
    """Round robin over addresses; one that was unreachable is skipped until its cool-down ends.

    Thread-safe; also used from one event loop (nothing awaits under the lock).
    """

    def __init__(self, addresses: tuple[str, ...], cooldown_s: float):
        self.addresses = addresses
        self._cooldown_s = cooldown_s
        self._dead_until = [0.0] * len(addresses)
        self._next = 0
        self._lock = threading.Lock()

    def pick(self) -> int:
        with self._lock:
            now = time.monotonic()
            n = len(self.addresses)
            live = [(self._next + k) % n for k in range(n) if self._dead_until[(self._next + k) % n] <= now]
            index = live[0] if live else min(range(n), key=self._dead_until.__getitem__)
            self._next = index + 1
            return index

    def mark_dead(self, index: int) -> None:
        with self._lock:
            self._dead_until[index] = time.monotonic() + self._cooldown_s

    def any_live(self) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(t <= now for t in self._dead_until)


class _Base:
    """What the sync and async clients share: addresses, retry decisions, request building."""

    def __init__(self, addresses: str | Sequence[str], *, timeout: float, max_items_per_request: int | None,
                 retry: RetryPolicy, max_concurrency: int, max_message_bytes: int, access: Access):
        self._endpoints = _Endpoints(parse_addresses(addresses), retry.dead_cooldown_s)
        self._access = access
        self._metadata = access.metadata
        access.warn_if_exposed(self._endpoints.addresses)
        self._timeout = timeout
        self._max_items = max_items_per_request
        self._retry = retry
        self._max_concurrency = max_concurrency
        self._max_bytes = max_message_bytes
        self._options = channel_options(max_message_bytes)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._endpoints.addresses

    def _delay_after(self, exc: grpc.RpcError, index: int, attempt: int, deadline: float) -> float:
        """Seconds to wait before the next attempt, or raise VerifierCallError if there is none."""
        code = exc.code()
        address = self._endpoints.addresses[index]
        if code not in RETRYABLE or attempt >= self._retry.max_attempts:
            raise VerifierCallError(code.name, exc.details() or "", address=address, attempts=attempt) from None
        if code is grpc.StatusCode.UNAVAILABLE:
            self._endpoints.mark_dead(index)
            if self._endpoints.any_live():
                return 0.0  # another replica is up: go there now
        delay = self._retry.backoff(attempt)
        if time.monotonic() + delay >= deadline:
            raise VerifierCallError(code.name, f"{exc.details()}; no time left to retry", address=address,
                                attempts=attempt) from None
        return delay

    def _stream_error(self, exc: grpc.RpcError, index: int, unanswered: int) -> VerifierCallError:
        """A broken Verify stream is not resumed: say how many items lost their answer."""
        if exc.code() is grpc.StatusCode.UNAVAILABLE:
            self._endpoints.mark_dead(index)
        return VerifierCallError(exc.code().name, f"{exc.details()}; {unanswered} item(s) unanswered",
                                 address=self.addresses[index])

    @staticmethod
    def _remaining(deadline: float, attempt: int) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise VerifierCallError("DEADLINE_EXCEEDED", "the call's deadline passed", attempts=attempt)
        return left

    def _requests(self, kind: Kind, items: Sequence[Any], options: Any, size: int) -> list[Any]:
        """Chunks of at most `size` items and half the message limit in bytes (a batch of long
        responses must not hit the limit, which no retry fixes); each chunk has its own
        request_id, kept across its retries."""
        extra = {} if options is None or kind.name != "math" else {"options": to_math_options(options)}
        chunks: list[list[Any]] = [[]]
        used = 0
        for item in items:
            message = to_item(kind, item)
            nbytes = message.ByteSize() + 8  # + field tag and length prefix
            if chunks[-1] and (len(chunks[-1]) >= size or used + nbytes > self._max_bytes // 2):
                chunks.append([])
                used = 0
            chunks[-1].append(message)
            used += nbytes
        return [kind.request(items=chunk, request_id=uuid.uuid4().hex, **extra) for chunk in chunks]

    @staticmethod
    def _results(kind: Kind, requests: list[Any], responses: list[Any]) -> list[Result]:
        out = []
        for request, response in zip(requests, responses):
            if len(response.results) != len(request.items):
                raise VerifierCallError("INTERNAL", f"{len(response.results)} results for {len(request.items)} items "
                                    f"(request {request.request_id})")
            out.extend(from_proto(kind.result, r) for r in response.results)
        return out

    def _size_from(self, info: pb.ServerInfo) -> int:
        self._max_items = info.limits.max_items_per_request or FALLBACK_MAX_ITEMS
        return self._max_items


class VerifierClient(_Base):
    """Blocking client. Thread-safe; one per process is enough. Use as a context manager or close().

    token, tls, tls_ca, tls_cert, tls_key, tls_server_name: see Access.resolve (None: from the environment).
    """

    def __init__(self, addresses: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_items_per_request: int | None = None, retry: RetryPolicy = RetryPolicy(),
                 max_concurrency: int = 4, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 token: str | None = None, tls: bool = False, tls_ca: str | bytes | None = None,
                 tls_cert: str | bytes | None = None, tls_key: str | bytes | None = None,
                 tls_server_name: str | None = None):
        access = Access.resolve(token=token, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
                                tls_server_name=tls_server_name)
        super().__init__(addresses, timeout=timeout, max_items_per_request=max_items_per_request, retry=retry,
                         max_concurrency=max_concurrency, max_message_bytes=max_message_bytes, access=access)
        self._channels = [self._access.channel(a, self._options) for a in self.addresses]
        self._stubs = [VerifierStub(c) for c in self._channels]
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _call(self, method: str, request: Any, deadline: float) -> Any:
        attempt = 0
        while True:
            attempt += 1
            index = self._endpoints.pick()
            try:
                return getattr(self._stubs[index], method)(request, timeout=self._remaining(deadline, attempt),
                                                           metadata=self._metadata)
            except grpc.RpcError as exc:
                time.sleep(self._delay_after(exc, index, attempt, deadline))

    def server_info(self, *, timeout: float | None = None) -> ServerInfo:
        deadline = time.monotonic() + (timeout or self._timeout)
        return from_proto(ServerInfo, self._call("GetServerInfo", pb.GetServerInfoRequest(), deadline))

    def _batch_size(self, deadline: float) -> int:
        if self._max_items is None:
            return self._size_from(self._call("GetServerInfo", pb.GetServerInfoRequest(), deadline))
        return self._max_items

    def _run(self, kind: Kind, items: Sequence[Any], options: Any, timeout: float | None) -> list[Any]:
        if not items:
            return []
        deadline = time.monotonic() + (timeout or self._timeout)
        requests = self._requests(kind, items, options, self._batch_size(deadline))
        if len(requests) == 1:
            responses = [self._call(kind.method, requests[0], deadline)]
        else:
            responses = list(self._executor().map(lambda r: self._call(kind.method, r, deadline), requests))
        return self._results(kind, requests, responses)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="verirl-client")
            return self._pool

    def check_math(self, items: Sequence[Any], options: Any = None, *,
                   timeout: float | None = None) -> list[MathResult]:
        """One result per item, in order. `options` (MathOptions fields) apply to items without their own."""
        return self._run(KINDS["math"], items, options, timeout)

    def run_code(self, items: Sequence[Any], *, timeout: float | None = None) -> list[CodeResult]:
        return self._run(KINDS["code"], items, None, timeout)

    def score_steps(self, items: Sequence[Any], *, timeout: float | None = None) -> list[StepsResult]:
        return self._run(KINDS["steps"], items, None, timeout)

    def score_candidates(self, items: Sequence[Any], *, timeout: float | None = None) -> list[CandidatesResult]:
        return self._run(KINDS["candidates"], items, None, timeout)

    def verify_stream(self, items: Iterable[Any], math_options: Any = None, *,
                      timeout: float = DEFAULT_STREAM_TIMEOUT_S) -> Iterator[Result]:
        """Send items as the iterable yields them; yield each result as soon as the server has it
        (not in input order: match by id). Items: MathItem, or dicts with a "kind" key."""
        options = None if math_options is None else to_math_options(math_options)
        index = self._endpoints.pick()
        sent = [0]
        bad: list[ValueError] = []

        def requests() -> Iterator[pb.VerifyRequest]:
            # grpc consumes this in its own thread; a bad item half-closes the stream and is
            # raised to the caller once the items sent before it are answered.
            for item in items:
                try:
                    request = to_verify_request(item, options)
                except ValueError as exc:
                    bad.append(exc)
                    return
                sent[0] += 1
                yield request

        call = self._stubs[index].Verify(requests(), timeout=timeout, metadata=self._metadata)
        received = 0
        try:
            for response in call:
                received += 1
                yield result_of(response)
            if bad:
                raise bad[0]
        except grpc.RpcError as exc:
            raise self._stream_error(exc, index, sent[0] - received) from None
        finally:
            call.cancel()  # a consumer that stopped early must not leave the stream open

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> VerifierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncVerifierClient(_Base):
    """asyncio client (grpc.aio). Channels are opened on first use, inside the running loop,
    and belong to that loop. Use `async with` or `await close()`."""

    def __init__(self, addresses: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_items_per_request: int | None = None, retry: RetryPolicy = RetryPolicy(),
                 max_concurrency: int = 4, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 token: str | None = None, tls: bool = False, tls_ca: str | bytes | None = None,
                 tls_cert: str | bytes | None = None, tls_key: str | bytes | None = None,
                 tls_server_name: str | None = None):
        access = Access.resolve(token=token, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
                                tls_server_name=tls_server_name)
        super().__init__(addresses, timeout=timeout, max_items_per_request=max_items_per_request, retry=retry,
                         max_concurrency=max_concurrency, max_message_bytes=max_message_bytes, access=access)
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[VerifierStub] = []

    def _stub(self, index: int) -> VerifierStub:
        if not self._stubs:  # first use, inside the running loop
            self._channels = [self._access.aio_channel(a, self._options) for a in self.addresses]
            self._stubs = [VerifierStub(c) for c in self._channels]
        return self._stubs[index]

    async def _call(self, method: str, request: Any, deadline: float) -> Any:
        attempt = 0
        while True:
            attempt += 1
            index = self._endpoints.pick()
            stub = self._stub(index)
            try:
                return await getattr(stub, method)(request, timeout=self._remaining(deadline, attempt),
                                                   metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                await asyncio.sleep(self._delay_after(exc, index, attempt, deadline))

    async def server_info(self, *, timeout: float | None = None) -> ServerInfo:
        deadline = time.monotonic() + (timeout or self._timeout)
        return from_proto(ServerInfo, await self._call("GetServerInfo", pb.GetServerInfoRequest(), deadline))

    async def _run(self, kind: Kind, items: Sequence[Any], options: Any, timeout: float | None) -> list[Any]:
        if not items:
            return []
        deadline = time.monotonic() + (timeout or self._timeout)
        size = self._max_items
        if size is None:
            size = self._size_from(await self._call("GetServerInfo", pb.GetServerInfoRequest(), deadline))
        requests = self._requests(kind, items, options, size)
        semaphore = asyncio.Semaphore(self._max_concurrency)

        async def limited(request: Any) -> Any:
            async with semaphore:
                return await self._call(kind.method, request, deadline)

        tasks = [asyncio.ensure_future(limited(r)) for r in requests]
        try:
            responses = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return self._results(kind, requests, list(responses))

    async def check_math(self, items: Sequence[Any], options: Any = None, *,
                         timeout: float | None = None) -> list[MathResult]:
        return await self._run(KINDS["math"], items, options, timeout)

    async def run_code(self, items: Sequence[Any], *, timeout: float | None = None) -> list[CodeResult]:
        return await self._run(KINDS["code"], items, None, timeout)

    async def score_steps(self, items: Sequence[Any], *, timeout: float | None = None) -> list[StepsResult]:
        return await self._run(KINDS["steps"], items, None, timeout)

    async def score_candidates(self, items: Sequence[Any], *,
                               timeout: float | None = None) -> list[CandidatesResult]:
        return await self._run(KINDS["candidates"], items, None, timeout)

    async def verify_stream(self, items: Iterable[Any] | AsyncIterable[Any], math_options: Any = None, *,
                            timeout: float = DEFAULT_STREAM_TIMEOUT_S) -> AsyncIterator[Result]:
        """As VerifierClient.verify_stream; `items` may also be an async iterable."""
        options = None if math_options is None else to_math_options(math_options)
        index = self._endpoints.pick()
        sent = 0
        bad: list[ValueError] = []

        async def source() -> AsyncIterator[Any]:
            if isinstance(items, AsyncIterable):
                async for item in items:
                    yield item
            else:
                for item in items:
                    yield item

        async def requests() -> AsyncIterator[pb.VerifyRequest]:
            nonlocal sent
            async for item in source():
                try:
                    request = to_verify_request(item, options)
                except ValueError as exc:  # half-close; raised to the caller after the answers
                    bad.append(exc)
                    return
                sent += 1
                yield request

        call = self._stub(index).Verify(requests(), timeout=timeout, metadata=self._metadata)
        received = 0
        try:
            async for response in call:
                received += 1
                yield result_of(response)
            if bad:
                raise bad[0]
        except grpc.aio.AioRpcError as exc:
            raise self._stream_error(exc, index, sent - received) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> AsyncVerifierClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
