"""Assembling and running a verifier server: pool, backends, servicer, health, reflection, metrics.

`create_server(config)` returns a started server and its bound port, so tests bind
"127.0.0.1:0"; `embedded_server(config)` runs one for the lifetime of a `with` block (the
offline `verirl eval` and the demo use it: the same worker code path as a real server).
Stopping drains: health turns NOT_SERVING, new calls are refused, calls in flight get
`grace_s` to finish, then the workers are killed.
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

from .backends import build_backends
from .config import ServerConfig
from .metrics import ServiceMetrics
from .proto import verifier_pb2 as pb
from .proto import verifier_pb2_grpc as pb_grpc
from .servicer import VerifierServicer
from .workers import WorkerPool

__all__ = ["VerifierServer", "create_server", "embedded_server", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Verifier"].full_name  # "verifier.v1.Verifier"


class VerifierServer:
    """A running server. Build it with create_server(); stop() is idempotent."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.pool = WorkerPool(config.math_workers, queue_capacity=config.queue_capacity,
                               cache_size=config.cache_size, recycle_after=config.worker_recycle_after)
        try:
            self.metrics = ServiceMetrics(self.pool.stats)
            self.servicer = VerifierServicer(config, build_backends(self.pool, config, self.metrics), self.metrics,
                                             config.math_workers)
            self.health = health.HealthServicer()
            self._grpc = grpc.server(
                ThreadPoolExecutor(max_workers=config.rpc_threads, thread_name_prefix="verirl-rpc"),
                options=[("grpc.max_receive_message_length", config.max_message_bytes),
                         ("grpc.max_send_message_length", config.max_message_bytes),
                         ("grpc.so_reuseport", 0)],
                maximum_concurrent_rpcs=config.max_concurrent_rpcs)
            pb_grpc.add_VerifierServicer_to_server(self.servicer, self._grpc)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._grpc)
            try:
                self.port = self._grpc.add_insecure_port(config.address)
            except RuntimeError as exc:  # grpc's way of saying the address is taken or invalid
                raise OSError(f"cannot bind {config.address}: {exc}") from exc
        except BaseException:
            self.pool.close(grace_s=0)
            raise
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def start(self) -> None:
        self._grpc.start()
        if self.config.metrics_port is not None:
            self.metrics.serve(self.config.metrics_address, self.config.metrics_port)
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("verifier serving on %s with %d math workers", self.address, self.config.math_workers)

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop: NOT_SERVING, refuse new calls, let in-flight calls finish for up to
        `grace` seconds (default config.grace_s), then kill the workers."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.config.grace_s if grace is None else grace
            deadline = time.monotonic() + grace
            self.health.enter_graceful_shutdown()
            self._grpc.stop(grace).wait()
            self.pool.close(grace_s=max(0.0, deadline - time.monotonic()))
            self.metrics.stop()
            self._stopped.set()
            log.info("verifier on %s stopped", self.address)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() has finished; True if it has."""
        return self._stopped.wait(timeout)


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
