"""The one typed, frozen configuration of the verifier server.

Every default lives here (not in `cfg.get(key, default)` calls scattered through the code),
and building it from a dict refuses unknown keys, so a misspelled setting fails loudly
instead of silently falling back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .prm.config import PRMConfig

__all__ = ["ServerConfig", "DEFAULT_ADDRESS", "MiB", "MIN_TOKEN_CHARS", "SANDBOX_MODES", "read_token_file"]

MiB = 1 << 20
MIN_TOKEN_CHARS = 16  # shorter bearer tokens are refused as guessable
DEFAULT_ADDRESS = "127.0.0.1:50051"
SANDBOX_MODES = ("full", "weak", "off")


def _cpu_count() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerConfig:
    # Transport
    address: str = DEFAULT_ADDRESS        # tests bind "127.0.0.1:0"; port 0 picks a free port
    rpc_threads: int = 64                 # grpc handler threads (a Verify stream holds one while open)
    max_concurrent_rpcs: int = 1024       # calls beyond it are refused with RESOURCE_EXHAUSTED, not queued
    max_message_bytes: int = 64 * MiB     # grpc send/receive limit; over it grpc answers RESOURCE_EXHAUSTED
    grace_s: float = 10.0                 # how long stop() lets in-flight work finish
    # Request limits (violations are INVALID_ARGUMENT naming the field)
    max_items_per_request: int = 4096
    max_string_bytes: int = 1 * MiB       # any single string field of an item
    max_tests_per_item: int = 256         # test cases of a code item (stdio or call)
    # Math workers
    math_workers: int = field(default_factory=_cpu_count)
    math_timeout_s: float = 5.0           # per-check deadline when a request says 0
    max_math_timeout_s: float = 30.0      # requests asking for more are capped here
    queue_capacity: int = 16384           # items waiting for a worker; over it: RESOURCE_EXHAUSTED
    stream_backpressure_s: float = 10.0   # a Verify stream waits this long for queue room before failing
    worker_recycle_after: int = 10000     # replace a worker after this many checks (bounds memory growth); 0: never
    cache_size: int = 20_000              # results kept by content (LRU; ~1 KiB each in RSS); 0: no cache
    replay_size: int = 256                # responses kept by request_id for safe retries; 0: off
    malloc_arena_max: int = 2             # glibc malloc arenas of the server process (native_memory.py); 0: glibc's default
    malloc_trim_every_s: float = 30.0     # give free heap pages back to the kernel this often; 0: never
    malloc_mmap_threshold: int = 128 * 1024  # blocks this large always get their own mapping; 0: glibc's dynamic one
    own_process: bool = False             # the process is the server's alone (verirl serve): the malloc_* settings apply
    # Code sandbox (docs/sandbox.md). Code items share queue_capacity's bound, in a queue of their own.
    sandbox: str = "full"                 # "full": every protection or no code at all; "weak": what exists; "off"
    code_slots: int = 0                   # programs run at once (one core each at most); 0: 4 per CPU core
    code_demote_after_ms: int = 200       # a run past this much CPU yields the cores (cpu.shares 2); 0: never
    # Process reward model (docs/prm.md): None serves no PRM (steps/candidates answer UNAVAILABLE).
    # A dict (from from_dict) becomes a PRMConfig, whose unknown keys are errors too.
    prm: PRMConfig | None = None
    # Observability
    metrics_port: int | None = None       # Prometheus text over HTTP; None: off, 0: a free port
    metrics_address: str = "127.0.0.1"
    access_log: bool = False              # one INFO record per RPC on the "verifier_service.access" logger
    # Access (docs/security.md). Tokens are kept out of repr so a logged config cannot leak them.
    auth_tokens: tuple[str, ...] = field(default=(), repr=False)  # bearer tokens accepted; empty: no token check
    tls_cert_file: str | None = None      # PEM certificate chain; with tls_key_file, the server speaks only TLS
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None  # PEM CA bundle; set: a client must show a certificate it signed (mTLS)
    allow_insecure_remote: bool = False   # bind a non-loopback address with no authentication at all

    def __post_init__(self) -> None:
        if isinstance(self.prm, Mapping):
            object.__setattr__(self, "prm", PRMConfig.from_dict(self.prm))
        positive = ("rpc_threads", "max_concurrent_rpcs", "max_message_bytes", "max_items_per_request", "max_string_bytes",
                    "max_tests_per_item", "math_workers", "queue_capacity")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"ServerConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("worker_recycle_after", "cache_size", "replay_size", "grace_s", "stream_backpressure_s",
                     "malloc_arena_max", "malloc_trim_every_s", "malloc_mmap_threshold", "code_demote_after_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"ServerConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("math_timeout_s", "max_math_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ServerConfig.{name} must be a positive number of seconds, got {value}")
        if self.math_timeout_s > self.max_math_timeout_s:
            raise ValueError(f"ServerConfig.math_timeout_s ({self.math_timeout_s}) exceeds "
                             f"max_math_timeout_s ({self.max_math_timeout_s})")
        if self.sandbox not in SANDBOX_MODES:
            raise ValueError(f"ServerConfig.sandbox must be one of {', '.join(SANDBOX_MODES)}, got {self.sandbox!r}")
        if self.code_slots < 0:
            raise ValueError(f"ServerConfig.code_slots must be >= 0, got {self.code_slots}")
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            raise ValueError(f"ServerConfig.metrics_port must be in [0, 65535], got {self.metrics_port}")
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"ServerConfig.address must be HOST:PORT, got {self.address!r}")
        self._check_access()

    def _check_access(self) -> None:
        object.__setattr__(self, "auth_tokens", tuple(self.auth_tokens))  # from_dict may pass a list
        for n, token in enumerate(self.auth_tokens):
            # The message never quotes the token: config errors end up in logs and terminals.
            if not (isinstance(token, str) and len(token) >= MIN_TOKEN_CHARS and token.isascii()
                    and token.isprintable() and " " not in token):
                raise ValueError(f"ServerConfig.auth_tokens[{n}] must be at least {MIN_TOKEN_CHARS} printable ASCII "
                                 "characters without spaces (e.g. `python -c 'import secrets; "
                                 "print(secrets.token_urlsafe(32))'`)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("ServerConfig.tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("ServerConfig.tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        if not (self.is_loopback or self.authenticated or self.allow_insecure_remote):
            raise ValueError(f"refusing to bind {self.address}: a non-loopback address needs authentication "
                             "(auth_tokens or tls_client_ca_file); set allow_insecure_remote to serve it to "
                             "anyone who can reach it")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ServerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ServerConfig keys: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**values)

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def authenticated(self) -> bool:
        """Every call must prove who it is: a bearer token, or a client certificate (mTLS)."""
        return bool(self.auth_tokens) or self.tls_client_ca_file is not None


def read_token_file(path: str) -> tuple[str, ...]:
    """Bearer tokens from a file, one per line; blank lines and lines starting with '#' are skipped.

    A file (not a flag) because a command line is visible to every user through `ps`.
    """
    with open(path, encoding="utf-8") as f:
        tokens = tuple(line.strip() for line in f if line.strip() and not line.lstrip().startswith("#"))
    if not tokens:
        raise ValueError(f"{path}: no token in the file")
    return tokens
