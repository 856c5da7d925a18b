"""glibc malloc settings of the server process (verifier_service/native_memory.py)."""

from __future__ import annotations

import time

import pytest

from verifier_service import native_memory
from verifier_service.config import ServerConfig

glibc = pytest.mark.skipif(native_memory._libc() is None, reason="not glibc")


@glibc
def test_limit_arenas_and_trim_on_glibc():
    assert native_memory.limit_arenas(2) is True
    assert native_memory.limit_arenas(0) is False  # 0 means "leave glibc's default": nothing is set
    assert native_memory.fix_mmap_threshold(128 * 1024) is True
    blocks = [bytearray(64 * 1024) for _ in range(2000)]  # ~128 MiB in mmap-threshold-sized blocks
    del blocks
    assert isinstance(native_memory.trim(), bool)


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
            if os.path.exists(os.environ["VERIRL_TRACEMALLOC"]) and "blocks" in open(os.environ["VERIRL_TRACEMALLOC"]).read():
                break
    """)
    subprocess.run([sys.executable, "-c", script], env={**__import__("os").environ, "VERIRL_TRACEMALLOC": str(out)},
                   check=True, timeout=60)
    text = out.read_text()
    assert text.startswith("== ") and "traced" in text and "blocks" in text
