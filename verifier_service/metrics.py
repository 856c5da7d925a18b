"""Prometheus metrics of one server, in a registry of its own.

A registry per server (not the process-global default) lets tests and an embedded server
run beside a real one without name collisions. Pool figures (queue depth, restarts, cache
hits) are read from the pool when scraped, so the pool itself knows nothing of Prometheus.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .workers import PoolStats

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], PoolStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield GaugeMetricFamily("verirl_queue_depth", "Items waiting for a worker", value=s.queued)
        yield GaugeMetricFamily("verirl_in_flight", "Items running on a worker", value=s.in_flight)
        yield GaugeMetricFamily("verirl_workers", "Worker processes of the math pool", value=s.workers)
        yield CounterMetricFamily("verirl_worker_restarts", "Workers replaced after a timeout, death or recycling",
                                  value=s.restarts)
        yield CounterMetricFamily("verirl_worker_deaths", "Workers that died during a check", value=s.worker_deaths)
        yield CounterMetricFamily("verirl_cache_hits", "Checks answered from the result cache", value=s.cache_hits)
        yield CounterMetricFamily("verirl_cache_misses", "Cache look-ups that missed", value=s.cache_misses)


class _CodeCollector(Collector):
    def __init__(self, stats: Callable[[], tuple[int, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        queued, running = self._stats()
        yield GaugeMetricFamily("verirl_code_queue_depth", "Code items waiting for a sandbox thread", value=queued)
        yield GaugeMetricFamily("verirl_code_running", "Code items taken by a sandbox thread (running or "
                                "waiting for a free slot)", value=running)


class ServiceMetrics:
    def __init__(self, pool_stats: Callable[[], PoolStats]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("verirl_requests", "RPCs by method and gRPC status code", ["rpc", "code"],
                                registry=self.registry)
        self.request_seconds = Histogram("verirl_request_seconds", "RPC latency", ["rpc"],
                                         buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.items = Counter("verirl_items", "Checked items by kind and status", ["kind", "status"],
                             registry=self.registry)
        self.item_seconds = Histogram("verirl_item_seconds", "Per-item latency in the server, queue wait included",
                                      ["kind"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.timeouts = Counter("verirl_timeouts", "Checks killed at their deadline", ["kind"],
                                registry=self.registry)
        self.registry.register(_PoolCollector(pool_stats))
        self._http = None
        self.port: int | None = None

    def watch_code(self, stats: Callable[[], tuple[int, int]]) -> None:
        """Export the code queue's (queued, running), read at scrape time."""
        self.registry.register(_CodeCollector(stats))

    def observe_request(self, rpc: str, code: str, seconds: float) -> None:
        self.requests.labels(rpc, code).inc()
        self.request_seconds.labels(rpc).observe(seconds)

    def observe_item(self, kind: str, status: str, seconds: float) -> None:
        self.items.labels(kind, status).inc()
        self.item_seconds.labels(kind).observe(seconds)
        if status == "TIMEOUT":
            self.timeouts.labels(kind).inc()

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    def serve(self, address: str, port: int) -> int:
        """Serve the text format over HTTP on a background thread; returns the bound port."""
        self._http, _thread = start_http_server(port, addr=address, registry=self.registry)
        self.port = self._http.server_address[1]
        return self.port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
