"""bench/load.py on a short run against a real `verirl serve`: the benchmark's own checks work (a wrong
status is caught, every hostile kind gets an allowed status, the process tree is measured).

The numbers (throughput, memory growth) live in docs/benchmarks.md, not here.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ci_rules import require_modules, require_root

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _import(name: str):
    spec = importlib.util.spec_from_file_location(f"verirl_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


load = _import("load")
traffic = sys.modules["load_traffic"]  # imported by load.py from bench/


def require_torch() -> None:
    require_modules("torch", "transformers")


def _needs_sandbox() -> None:
    require_root("the code sandbox")


def test_config_refuses_unknown_kinds_and_bad_fractions():
    with pytest.raises(ValueError, match="poems"):
        load.LoadConfig(mix={"poems": 1.0})
    with pytest.raises(ValueError, match="hostile"):
        load.LoadConfig(hostile=1.5)
    with pytest.raises(ValueError, match="warmup"):
        load.LoadConfig(duration_s=5, warmup_s=5)


def test_tree_memory_counts_children():
    before = load.tree_memory(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import sys; x = bytearray(64 << 20); sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while load.tree_memory(os.getpid())["pss_mib"] < before["pss_mib"] + 64 and time.monotonic() < deadline:
            time.sleep(0.1)
        memory = load.tree_memory(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert memory["processes"] == before["processes"] + 1
    for key in ("rss_mib", "pss_mib"):  # the child's 64 MiB, zeroed (so touched) by bytearray()
        assert memory[key] >= before[key] + 64
    assert memory["service_rss_mib"] == memory["rss_mib"]  # all of them run as this uid


def test_tree_cpu_counts_children_live_and_reaped():
    before = load.tree_cpu_s(os.getpid())
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\n"
    subprocess.run([sys.executable, "-c", burn], check=True)  # reaped: counted in our cutime
    child = subprocess.Popen([sys.executable, "-c", burn + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while load.tree_cpu_s(os.getpid())["other"] - before["other"] < 0.45 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = load.tree_cpu_s(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert after["server"] - before["server"] >= 0.45  # the reaped child, in this process's cutime
    assert after["other"] - before["other"] >= 0.45    # the live child, under its own role
    assert load.machine_cpu_s() > 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _needs_sandbox()
    config = load.LoadConfig(workers=1)
    process = load.ServerProcess(config, str(tmp_path_factory.mktemp("load") / "server.log"))
    yield process
    process.stop()


def test_a_wrong_status_is_counted(server):
    from verifier_service.client import VerifierClient
    draw = traffic.honest_math(random.Random(1), 6)
    lying = traffic.Draw("math", "lying", draw.items, [frozenset({"TIMEOUT"})] * len(draw.items))
    refused = traffic.Draw("math", "refused", draw.items, draw.allowed, call_error="INVALID_ARGUMENT")
    with VerifierClient(server.address) as client:
        statuses, wrong, error, _ = load._one_call(client, draw)
        assert wrong == [] and error == "" and len(statuses) == 6
        assert len(load._one_call(client, lying)[1]) == 6
        assert "succeeded, expected INVALID_ARGUMENT" in load._one_call(client, refused)[1][0]


@pytest.mark.parametrize("make", [traffic.hostile_math, traffic.hostile_code, traffic.hostile_oversized],
                         ids=lambda f: f.__name__)
def test_every_hostile_draw_gets_an_allowed_status(server, make):
    from verifier_service.client import VerifierClient
    seen = set()
    with VerifierClient(server.address, timeout=30) as client:
        for seed in range(6):
            draw = make(random.Random(seed), 1)
            statuses, wrong, error, _ = load._one_call(client, draw)
            assert wrong == [], wrong
            seen.add(draw.name)
    assert len(seen) > 1  # the seeds reach more than one template
    assert server.alive()


@pytest.mark.slow
def test_short_hostile_run_is_clean(tmp_path):
    _needs_sandbox()
    config = load.LoadConfig(duration_s=8, warmup_s=2, clients=3, hostile=0.3, workers=1, rss_every_s=0.5,
                             deadline_s=30)
    report = load.run_load(config, label="t", log_dir=str(tmp_path))
    assert report["ok"], {k: report[k] for k in ("wrong_examples", "hung_clients", "server_error_lines")}
    assert report["server_exit_code"] == 0  # drained and stopped on SIGTERM
    assert report["honest_items_per_s"]["math"] > 0 and report["honest_items_per_s"]["code"] > 0
    assert 0.1 < report["hostile_fraction"] < 0.6
    assert {"math/honest", "math/hostile", "code/honest"} <= set(report["groups"])
    assert report["memory"]["service_pss_mib"]["start"] > 20
    assert report["memory"]["processes"]["max"] >= 3  # server, its math worker, the sandbox
    table = load.markdown([report])
    assert "| t | " in table and "math/hostile" in table


@pytest.mark.slow
def test_steps_traffic_with_a_tiny_prm(tmp_path):
    """Honest chains are scored OK and the 200-step chain is TOO_LONG, by a served tiny random PRM."""
    require_torch()
    from verifier_service.client import VerifierClient
    prm = load.tiny_prm(str(tmp_path / "prm"))
    server = load.ServerProcess(load.LoadConfig(workers=1, sandbox="off", prm=prm), str(tmp_path / "server.log"))
    try:
        with VerifierClient(server.address, timeout=120) as client:
            for make in (traffic.honest_steps, traffic.hostile_steps):
                draw = make(random.Random(0), 3)
                statuses, wrong, error, _ = load._one_call(client, draw)
                assert wrong == [] and error == "" and statuses, (draw.name, statuses)
    finally:
        assert server.stop() == 0
