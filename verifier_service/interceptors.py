"""What every call passes through before the servicer: token authentication, decoding, the access log.

Two interceptors, outermost first (server.py installs them in this order):

* `CallInterceptor` (always on) decodes request bytes itself, so bytes that are not the
  method's message are INVALID_ARGUMENT; grpc's own decoding would answer INTERNAL, which
  reads as a server fault. With `access_log` on it also writes one INFO record per RPC on
  the "verifier_service.access" logger: rpc, request_id, peer, items, statuses, duration_ms,
  code. Being outermost, it logs calls the auth check refused, too.
* `TokenAuthInterceptor` (on when tokens are configured) requires `authorization: Bearer
  <token>` metadata on every method but the health service's (a load balancer's probe has
  no token, and the answer, SERVING or not, tells nothing). Reflection is guarded.

Both refusals are UNAUTHENTICATED, as gRPC's status-code guide asks for a caller that
cannot be identified (PERMISSION_DENIED is for a known caller lacking a right; a token
has no rights beyond "may call"); the details tell "missing" from "not accepted". Tokens
are compared through their SHA-256 digests with hmac.compare_digest against every
configured token, so the time taken says nothing about a token's prefix, length or which
one matched. No token, header or metadata value is ever logged or echoed in an error.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import time
import uuid
from typing import Any, Callable, Iterator, Sequence

import grpc
from google.protobuf.message import DecodeError, Message

from .errors import InvalidArgument

__all__ = ["TokenAuthInterceptor", "CallInterceptor", "OPEN_METHOD_PREFIX", "ACCESS_LOGGER"]

OPEN_METHOD_PREFIX = "/grpc.health.v1.Health/"  # the methods a caller may use without a token
ACCESS_LOGGER = "verifier_service.access"
MAX_LOGGED_ID = 128  # a request id is the caller's text: bounded so it cannot flood a log line

access_log = logging.getLogger(ACCESS_LOGGER)


def _rebuild(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable, bool, bool], Callable],
             request_deserializer: Any) -> grpc.RpcMethodHandler:
    """The same kind of handler as `handler`, its behaviour passed through `wrap(behavior,
    request_streaming, response_streaming)`."""
    builders = {(False, False): (grpc.unary_unary_rpc_method_handler, handler.unary_unary),
                (False, True): (grpc.unary_stream_rpc_method_handler, handler.unary_stream),
                (True, False): (grpc.stream_unary_rpc_method_handler, handler.stream_unary),
                (True, True): (grpc.stream_stream_rpc_method_handler, handler.stream_stream)}
    key = (handler.request_streaming, handler.response_streaming)
    build, behavior = builders[key]
    return build(wrap(behavior, *key), request_deserializer=request_deserializer,
                 response_serializer=handler.response_serializer)


# ---------------------------------------------------------------------------- authentication

def _refusal(details: str) -> Callable[[Callable, bool, bool], Callable]:
    """A `wrap` for _rebuild whose behaviour, of the method's streaming kind, only refuses the call."""
    def wrap(behavior: Callable, request_streaming: bool, response_streaming: bool) -> Callable:
        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

        def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            refuse(request, context)
            yield  # never reached: it makes this a generator, as a streaming behaviour must be
        return refuse_stream if response_streaming else refuse
    return wrap


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Accept a call only with `authorization: Bearer <one of tokens>` (health checks excepted)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("TokenAuthInterceptor needs at least one token")
        self._digests = tuple(hashlib.sha256(t.encode()).digest() for t in tokens)

    def _problem(self, metadata: Sequence[tuple[str, Any]] | None) -> str | None:
        """Why the call's credentials are refused, or None if they are accepted."""
        value = next((v for k, v in metadata or () if k == "authorization"), None)
        if value is None:
            return "missing 'authorization: Bearer <token>' metadata"
        scheme, _, token = value.partition(" ") if isinstance(value, str) else ("", "", "")
        if scheme.lower() != "bearer" or not token.strip():
            return "authorization metadata must be 'Bearer <token>'"
        given = hashlib.sha256(token.strip().encode()).digest()
        accepted = False
        for digest in self._digests:  # no early exit: every token is compared every time
            accepted |= hmac.compare_digest(given, digest)
        return None if accepted else "the bearer token was not accepted"

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if details.method.startswith(OPEN_METHOD_PREFIX):
            return handler
        problem = self._problem(details.invocation_metadata)
        if problem is None:
            return handler
        # Same streaming kind as the method, so the caller reads a clean status; an unknown
        # method is refused like a known one (no probing of what exists without a token).
        handler = handler or grpc.unary_unary_rpc_method_handler(lambda request, context: None)
        return _rebuild(handler, _refusal(problem), None)


# ---------------------------------------------------------------------------- decoding and access log

def _decoder(deserialize: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        if deserialize is None:
            return raw
        try:
            return deserialize(raw)
        except DecodeError:
            raise InvalidArgument("request", f"the bytes are not a valid request message of {method}") from None
    return decode


def _status_names(message: Message) -> list[str]:
    """Status names of a response: of its `results`, or of the result a VerifyResponse carries."""
    fields = message.DESCRIPTOR.fields_by_name
    if "results" in fields:
        results = list(message.results)
    elif message.DESCRIPTOR.oneofs_by_name.get("result") is not None:
        which = message.WhichOneof("result")
        results = [getattr(message, which)] if which else []
    else:
        return []
    names = []
    for result in results:
        status = result.DESCRIPTOR.fields_by_name.get("status")
        if status is not None and status.enum_type is not None:
            value = status.enum_type.values_by_number.get(result.status)
            names.append(value.name if value is not None else str(result.status))
    return names


class _Record:
    """What the access log says of one call, gathered as it runs."""

    def __init__(self, rpc: str, context: grpc.ServicerContext, metadata: Sequence[tuple[str, Any]] | None) -> None:
        self.start = time.perf_counter()
        self.rpc = rpc
        self.context = context
        given = next((v for k, v in metadata or () if k == "x-request-id" and isinstance(v, str)), "")
        self.request_id = given[:MAX_LOGGED_ID]
        self.items = 0
        self.statuses: collections.Counter[str] = collections.Counter()

    def request(self, message: Any, streaming: bool) -> None:
        if not isinstance(message, Message):
            return
        fields = message.DESCRIPTOR.fields_by_name
        if "items" in fields:
            self.items += len(message.items)
        elif streaming:
            self.items += 1  # a Verify request carries one item
        if "request_id" in fields and message.request_id:
            self.request_id = message.request_id[:MAX_LOGGED_ID]

    def response(self, message: Any) -> None:
        if isinstance(message, Message):
            self.statuses.update(_status_names(message))

    def finish(self, code: grpc.StatusCode | None) -> None:
        code = code or grpc.StatusCode.OK
        identities = self.context.peer_identities()  # certificate names under mTLS, else None
        fields = {"rpc": self.rpc, "request_id": self.request_id or f"srv-{uuid.uuid4().hex[:16]}",
                  "peer": self.context.peer(), "items": self.items, "statuses": dict(self.statuses),
                  "duration_ms": round((time.perf_counter() - self.start) * 1000, 3), "code": code.name}
        if identities:
            fields["peer_identity"] = identities[0].decode("utf-8", "replace")
        access_log.info("rpc %s %s", self.rpc, code.name, extra={"fields": fields})


class CallInterceptor(grpc.ServerInterceptor):
    """Decodes requests (undecodable bytes: INVALID_ARGUMENT) and, if asked, logs every call."""

    def __init__(self, access_log: bool) -> None:
        self.access_log = access_log

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        logged = self.access_log and not details.method.startswith(OPEN_METHOD_PREFIX)
        decode = _decoder(handler.request_deserializer, details.method)
        rpc = details.method.rpartition("/")[2]
        metadata = details.invocation_metadata

        def wrap(behavior: Callable, request_streaming: bool, response_streaming: bool) -> Callable:
            def start(context: grpc.ServicerContext) -> _Record | None:
                return _Record(rpc, context, metadata) if logged else None

            def requests(raw: Iterator[bytes], record: _Record | None) -> Iterator[Any]:
                # Runs in whatever thread the servicer reads from; InvalidArgument becomes its status.
                for chunk in raw:
                    message = decode(chunk)
                    if record is not None:
                        record.request(message, True)
                    yield message

            def argument(raw: Any, context: grpc.ServicerContext, record: _Record | None) -> Any:
                if request_streaming:
                    return requests(raw, record)
                try:
                    message = decode(raw)
                except InvalidArgument as exc:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                if record is not None:
                    record.request(message, False)
                return message

            if response_streaming:
                def streamed(raw: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    record = start(context)
                    code = None
                    try:
                        for response in behavior(argument(raw, context, record), context):
                            if record is not None:
                                record.response(response)
                            yield response
                        # A cancelled call can end the servicer's loop quietly (its request
                        # iterator just stops): the context knows the caller left.
                        code = context.code() or (None if context.is_active() else grpc.StatusCode.CANCELLED)
                    except GeneratorExit:  # grpc closed the stream: the caller went away
                        code = grpc.StatusCode.CANCELLED
                        raise
                    except BaseException:  # not handled here: only its code is noted, then it goes on
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        raise
                    finally:
                        if record is not None:
                            record.finish(code)
                return streamed

            def unary(raw: Any, context: grpc.ServicerContext) -> Any:
                record = start(context)
                try:
                    response = behavior(argument(raw, context, record), context)
                except BaseException:  # not handled here: only its code is noted, then it goes on
                    if record is not None:
                        record.finish(context.code() or grpc.StatusCode.UNKNOWN)
                    raise
                if record is not None:
                    record.response(response)
                    record.finish(context.code())
                return response
            return unary

        return _rebuild(handler, wrap, None)
