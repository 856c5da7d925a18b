"""glibc malloc settings of the server process (verifier_service/native_memory.py)."""

from __future__ import annotations

import time

import pytest

from verifier_service import native_memory
from verifier_service.config import ServerConfig

glibc = pytest.mark.skipif(native_memory._libc() is None, reason="not glibc")


@glibc
def test_limit_arenas_and_trim_on_glibc():
    """In a child process: the settings are process-wide, and this one runs the rest of the suite."""
    import subprocess
    import sys
    script = (
        "from verifier_service import native_memory as m\n"
        "assert m.limit_arenas(2) is True\n"
        "assert m.limit_arenas(0) is False\n"          # 0: leave glibc's default, nothing is set
        "assert m.fix_mmap_threshold(128 * 1024) is True\n"
        "blocks = [bytearray(64 * 1024) for _ in range(2000)]\n"
        "del blocks\n"
        "assert isinstance(m.trim(), bool)\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_embedded_server_leaves_the_host_process_allocator_alone(monkeypatch):
    """Only `verirl serve` (own_process=True) sets the process-wide malloc options: a trainer that
    embeds a server keeps glibc's defaults (a fixed mmap threshold slowed a torch run 1.6x)."""
    from verifier_service.server import create_server
    calls = []
    monkeypatch.setattr(native_memory, "limit_arenas", lambda n: calls.append(("arenas", n)))
    monkeypatch.setattr(native_memory, "fix_mmap_threshold", lambda b: calls.append(("mmap", b)))
    server, _ = create_server(ServerConfig(address="127.0.0.1:0", math_workers=1, sandbox="off"))
    server.stop(grace=0)
    assert calls == [] and server._trimmer.every_s == 0


@glibc
def test_trimmer_runs_until_stopped():
    trimmer = native_memory.Trimmer(0.02).start()
    time.sleep(0.2)
    trimmer.stop()
    done = trimmer.trims
    assert done >= 2
    time.sleep(0.1)
    assert trimmer.trims == done


def test_trimmer_off_starts_no_thread():
    trimmer = native_memory.Trimmer(0).start()
    assert not trimmer._thread.is_alive()
    trimmer.stop()


@pytest.mark.parametrize("field", ["malloc_arena_max", "malloc_trim_every_s", "malloc_mmap_threshold"])
def test_config_rejects_negative_memory_settings(field):
    with pytest.raises(ValueError, match=f"ServerConfig.{field}"):
        ServerConfig(**{field: -1})


def test_tracemalloc_dump_on_sigusr2(tmp_path):
    """VERIRL_TRACEMALLOC=FILE: each SIGUSR2 appends the allocation sites that grew (memory_debug.py)."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "trace.txt"
    script = textwrap.dedent("""
        import os, signal, time
        from verifier_service import memory_debug
        assert memory_debug.install_from_env()
        kept = [bytes(1000) + bytes([i % 256]) for i in range(5000)]
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(100):
            time.sleep(0.05)
            path = os.environ["VERIRL_TRACEMALLOC"]
            if os.path.exists(path) and "blocks" in open(path).read():
                break
    """)
    subprocess.run([sys.executable, "-c", script], env={**__import__("os").environ, "VERIRL_TRACEMALLOC": str(out)},
                   check=True, timeout=60)
    text = out.read_text()
    assert text.startswith("== ") and "traced" in text and "blocks" in text
