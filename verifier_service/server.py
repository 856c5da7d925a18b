"""Assembling and running a verifier server: pool, backends, servicer, health, reflection, metrics,
and who may call it (TLS credentials and the interceptors of interceptors.py; docs/security.md).

`create_server(config)` returns a started server and its bound port, so tests bind
"127.0.0.1:0"; `embedded_server(config)` runs one for the lifetime of a `with` block (the
offline `verirl eval` and the demo use it: the same worker code path as a real server).
Stopping drains: health turns NOT_SERVING, new calls are refused, calls in flight get
`grace_s` to finish, then the workers are killed and the code sandbox's fork-servers stopped.
The sandbox starts with the server (config.sandbox); code_backend.start_sandbox says why
it may not, and the server then answers code items UNAVAILABLE rather than refusing to start.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import native_memory
from .backends import build_backends
from .code_backend import CodeBackend, start_sandbox
from .config import ServerConfig
from .interceptors import CallInterceptor, TokenAuthInterceptor
from .metrics import ServiceMetrics
from .prm_backend import PRMService, start_prm
from .proto import verifier_pb2 as pb
from .proto import verifier_pb2_grpc as pb_grpc
from .servicer import VerifierServicer
from .workers import WorkerPool

__all__ = ["VerifierServer", "create_server", "embedded_server", "access_summary", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Verifier"].full_name  # "verifier.v1.Verifier"


class VerifierServer:
    """A running server. Build it with create_server(); stop() is idempotent."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        # the process-wide malloc settings only where the server owns its process (`verirl serve`,
        # own_process=True): in a trainer's process a fixed mmap threshold makes every large torch
        # buffer an mmap/munmap pair (a PPO test ran 1.6x slower, mostly in the kernel)
        if config.own_process and config.malloc_arena_max:  # before the gRPC handler threads exist
            native_memory.limit_arenas(config.malloc_arena_max)
        if config.own_process and config.malloc_mmap_threshold:
            native_memory.fix_mmap_threshold(config.malloc_mmap_threshold)
        self._trimmer = native_memory.Trimmer(config.malloc_trim_every_s if config.own_process else 0)
        self.pool = WorkerPool(config.math_workers, queue_capacity=config.queue_capacity,
                               cache_size=config.cache_size, recycle_after=config.worker_recycle_after)
        self.code: CodeBackend | None = None
        self.prm: PRMService | None = None
        try:
            self.metrics = ServiceMetrics(self.pool.stats)
            runner, self.sandbox = start_sandbox(config)
            if runner is not None:
                self.code = CodeBackend(runner, config, self.metrics)
            backends = build_backends(self.pool, config, self.metrics, self.code, self.sandbox.reason)
            if config.prm is not None:  # asked for explicitly: a PRM that does not load fails the start
                self.prm = start_prm(config.prm, config.queue_capacity)
                backends.update(self.prm.backends(backends["math"], config, self.metrics))
            prm_info = ("", "") if self.prm is None else (self.prm.model, self.prm.details())
            self.servicer = VerifierServicer(config, backends, self.metrics, config.math_workers, self.sandbox,
                                             prm_info)
            self.health = health.HealthServicer()
            credentials = _server_credentials(config)  # before anything binds: a bad file fails fast
            interceptors: list[grpc.ServerInterceptor] = [CallInterceptor(access_log=config.access_log)]
            if config.auth_tokens:
                interceptors.append(TokenAuthInterceptor(config.auth_tokens))
            self._grpc = grpc.server(
                ThreadPoolExecutor(max_workers=config.rpc_threads, thread_name_prefix="verirl-rpc"),
                options=[("grpc.max_receive_message_length", config.max_message_bytes),
                         ("grpc.max_send_message_length", config.max_message_bytes),
                         ("grpc.so_reuseport", 0)],
                interceptors=interceptors, maximum_concurrent_rpcs=config.max_concurrent_rpcs)
            pb_grpc.add_VerifierServicer_to_server(self.servicer, self._grpc)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc)
            try:
                if credentials is None:
                    self.port = self._grpc.add_insecure_port(config.address)
                else:
                    self.port = self._grpc.add_secure_port(config.address, credentials)
            except RuntimeError as exc:  # grpc's way of saying the address is taken or invalid
                tls = "" if credentials is None else (
                    f" (or TLS refused {config.tls_cert_file} / {config.tls_key_file}: not PEM, or a key that "
                    "does not match the certificate)")
                raise OSError(f"cannot bind {config.address}{tls}: {exc}") from exc
        except BaseException:
            self.pool.close(grace_s=0)
            if self.code is not None:
                self.code.close(grace_s=0)
            if self.prm is not None:
                self.prm.close(grace_s=0)
            raise
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def start(self) -> None:
        self._grpc.start()
        self._trimmer.start()
        if self.config.metrics_port is not None:
            self.metrics.serve(self.config.metrics_address, self.config.metrics_port)
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("verifier serving on %s with %d math workers, code sandbox %s (%s)", self.address,
                 self.config.math_workers, self.sandbox_summary(), access_summary(self.config))
        if not self.config.is_loopback and not self.config.authenticated:
            log.warning("verifier on %s has NO authentication: anyone who can reach it may use it", self.address)
        elif not self.config.is_loopback and self.config.auth_tokens and not self.config.tls:
            log.warning("verifier on %s takes bearer tokens without TLS: they cross the network in clear text",
                        self.address)

    def sandbox_summary(self) -> str:
        """The code sandbox in words: "full, 2 slots", "weak (1 protection missing), 2 slots", "off"."""
        s = self.sandbox
        if s.mode == "off":
            return "off" if not s.missing else "OFF (could not start; see the log)"
        weak = f" ({len(s.missing)} protection(s) missing)" if s.missing else ""
        return f"{s.mode}{weak}, {s.slots} slots"

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop: NOT_SERVING, refuse new calls, let in-flight calls finish for up to
        `grace` seconds (default config.grace_s), then kill the workers; code runs already going
        finish (each is bounded by its own limits) before the sandbox stops."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.config.grace_s if grace is None else grace
            deadline = time.monotonic() + grace
            self.health.enter_graceful_shutdown()
            self._grpc.stop(grace).wait()
            self.pool.close(grace_s=max(0.0, deadline - time.monotonic()))
            if self.code is not None:
                self.code.close(grace_s=max(0.0, deadline - time.monotonic()))
            if self.prm is not None:
                self.prm.close(grace_s=max(0.0, deadline - time.monotonic()))
            self.metrics.stop()
            self._trimmer.stop()
            self._stopped.set()
            log.info("verifier on %s stopped", self.address)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has finished; True if it has."""
        return self._stopped.wait(timeout)


def access_summary(config: ServerConfig) -> str:
    """How callers are let in, in words (no secrets): "tls, mtls, token auth (2 tokens)"."""
    parts = ["tls" if config.tls else "plaintext"]
    if config.tls_client_ca_file is not None:
        parts.append("client certificates required")
    parts.append(f"token auth ({len(config.auth_tokens)} token(s))" if config.auth_tokens else "no token auth")
    return ", ".join(parts)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials of the config, or None for plaintext. With a client CA, a client must show
    a certificate that CA signed, checked in the handshake (mTLS)."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    client_ca = None if config.tls_client_ca_file is None else _read(config.tls_client_ca_file)
    return grpc.ssl_server_credentials([(_read(config.tls_key_file), _read(config.tls_cert_file))],
                                       root_certificates=client_ca, require_client_auth=client_ca is not None)


def create_server(config: ServerConfig) -> tuple[VerifierServer, int]:
    """Build and start a server; returns it and the bound port."""
    server = VerifierServer(config)
    try:
        server.start()
    except BaseException:
        server.stop(0)
        raise
    return server, server.port


@contextlib.contextmanager
def embedded_server(config: ServerConfig | None = None) -> Iterator[str]:
    """Run a server on a free loopback port for the `with` block; yields "127.0.0.1:<port>"."""
    config = (config or ServerConfig()).replace(address="127.0.0.1:0")
    server, port = create_server(config)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
