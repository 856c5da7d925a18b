"""Typed errors of the verifier service, free of grpc.

A caller must be able to tell its own mistake (INVALID_ARGUMENT), back-pressure
(RESOURCE_EXHAUSTED, retry later) and a server fault (INTERNAL) apart, so the domain
raises these types and servicer.py maps each to its gRPC status in one table. They do
not import grpc: the worker pool raises them too, and worker processes stay grpc-free.
"""

from __future__ import annotations

__all__ = ["VerifierError", "InvalidArgument", "QueueFull", "ServiceClosed", "WorkerStartError"]


class VerifierError(Exception):
    """Base of the errors that become a non-OK status of a call."""


class InvalidArgument(VerifierError):
    """A malformed request; `field` is the path of the offending field, e.g. "items[3].gold"."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class QueueFull(VerifierError):
    """The bounded work queue has no room: back-pressure, the caller should retry with backoff."""

    def __init__(self, capacity: int, waiting: int, asked: int) -> None:
        self.capacity = capacity
        self.waiting = waiting
        self.asked = asked
        super().__init__(f"work queue full: {waiting} items waiting and {asked} more asked, "
                         f"queue_capacity is {capacity}; retry with backoff")


class ServiceClosed(VerifierError):
    """The pool (or server) is shutting down and takes no new work."""

    def __init__(self, what: str = "worker pool") -> None:
        super().__init__(f"{what} is shutting down and takes no new work")


class WorkerStartError(RuntimeError):
    """A worker process could not start (its preload or warm-up failed). Not a request error."""
