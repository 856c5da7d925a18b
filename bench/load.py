"""Load and soak benchmark of the verifier service: N clients for T seconds, honest and hostile traffic.

Starts `verirl serve` as its own process on a loopback port (so its memory is measured apart
from the clients'), drives it with --clients threads (one VerifierClient and channel each),
each sending one request at a time: math, code or steps batches in the --mix proportions, a
--hostile fraction of them hostile (bench/load_traffic.py lists them and the statuses they
may get). It reports, per run:
  throughput   honest items/s per kind and in all, counted after --warmup seconds
  latency      p50/p99 per call, per kind and honest/hostile
  statuses     per kind and honest/hostile; `wrong`: items whose status is not the expected one,
               and calls that failed with a code other than the expected one
  hangs        client threads still running --deadline + 30 s after the end (every call has a deadline)
  crash        the server process gone, or any of its log lines at ERROR or above
  memory       the server's whole process tree (server, math workers, sandbox fork-servers,
               PRM process) sampled every --rss-every s from /proc: RSS summed, PSS summed
               (shared pages counted once), and the same without the untrusted programs
               that happen to be running (they run as other uids); growth from the end of
               warm-up to the end
  cpu          cores used by the server's tree by role (gRPC server, math, sandbox fork-servers with
               the programs they reap, PRM), by the programs themselves (the sandbox's own figure,
               honest and hostile), by the clients, and by the whole machine
  load average of the machine at start, mean and end, for judging noise on a shared machine.

    python bench/load.py --tiny-prm --duration 60 --warmup 10 --runs honest,hostile,honest,hostile
    python bench/load.py --tiny-prm --duration 660 --warmup 60 --rss-every 5 --runs hostile --json soak.json
Without --prm/--tiny-prm there is no steps traffic. --hostile-clients K sends the hostile share from
K clients of their own, so that honest clients never wait on a slow hostile call.
Prints the markdown table; --json writes everything (with the RSS series).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(os.path.abspath(__file__))]

from load_traffic import HONEST, HOSTILE, HOSTILE_DRAWS, STARVED, Draw  # noqa: E402

__all__ = ["LoadConfig", "run_load", "ServerProcess", "tree_memory", "markdown"]

KINDS = ("math", "code", "steps")
METHODS = {"math": "check_math", "code": "run_code", "steps": "score_steps"}
HANG_GRACE_S = 30.0


@dataclass(frozen=True)
class LoadConfig:
    duration_s: float = 60.0
    warmup_s: float = 10.0              # not counted in throughput; RSS growth is measured from its end
    clients: int = 8
    hostile: float = 0.1                # fraction of requests that are hostile
    hostile_clients: int = 0            # 0: each client sends hostile requests among its own; K > 0: K more
                                        # clients send only hostile ones, paced to the same fraction, so the
                                        # honest clients never wait on a slow hostile call themselves
    mix: dict[str, float] = field(default_factory=lambda: {"math": 6.0, "code": 3.0, "steps": 1.0})
    batch: dict[str, int] = field(default_factory=lambda: {"math": 8, "code": 4, "steps": 4})
    deadline_s: float = 60.0            # per call, retries included
    rss_every_s: float = 2.0
    workers: int = 2                    # math worker processes of the server
    code_slots: int = 0                 # 0: one per core
    sandbox: str = "full"
    cache_size: int = 20_000            # the server's result cache (its default); 0: off
    prm: str = ""                       # PRM directory for `verirl serve --prm`; "": no steps traffic
    server_args: tuple[str, ...] = ()   # more `verirl serve` flags (e.g. --malloc-arena-max 0)
    hostile_draws: tuple[str, ...] = ()  # ablation: only these hostile draws (load_traffic.HOSTILE_DRAWS names),
                                        # whatever the kind; (): each kind's own (HOSTILE)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.mix) - set(KINDS)) + sorted(set(self.batch) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; expected some of {KINDS}")
        if not 0 <= self.hostile <= 1:
            raise ValueError(f"hostile must be a fraction in [0, 1], got {self.hostile}")
        if self.warmup_s >= self.duration_s:
            raise ValueError(f"warmup_s ({self.warmup_s}) must be shorter than duration_s ({self.duration_s})")


# ---------------------------------------------------------------- the server and its memory


class ServerProcess:
    """`verirl serve` on a free loopback port, its output in a log file (never an unread pipe)."""

    def __init__(self, config: LoadConfig, log_path: str, port: int = 0):
        args = [sys.executable, "-m", "verifier_service.cli", "serve", "--address", f"127.0.0.1:{port}",
                "--workers", str(config.workers), "--sandbox", config.sandbox,
                "--code-slots", str(config.code_slots), "--grace", "5", "--cache-size", str(config.cache_size),
                "--metrics-port", "0"]
        if config.prm:
            args += ["--prm", config.prm]
        args += list(config.server_args)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.port = self._await_port(port, timeout_s=120)
        self.address = f"127.0.0.1:{self.port}"
        with open(log_path, "rb") as f:
            self.metrics_port = int(re.findall(rb"metrics on :(\d+)", f.read())[-1])

    def metrics(self) -> dict[str, float]:
        """The server's own figures that explain its memory: result-cache misses (each one adds an
        entry until the cache is full), worker restarts, items waiting."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        wanted = {"verirl_cache_misses_total": "cache_misses", "verirl_worker_restarts_total": "worker_restarts",
                  "verirl_worker_deaths_total": "worker_deaths",
                  "verirl_queue_depth": "queue_depth", "verirl_code_queue_depth": "code_queue_depth"}
        return {wanted[name]: float(value) for name, value in re.findall(r"^(\w+) (\S+)$", text, re.M)
                if name in wanted}

    def _await_port(self, port: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        pattern = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
        seen = 0
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                found = pattern.findall(f.read())
            if len(found) > seen and (port == 0 or int(found[-1]) == port):
                return int(found[-1])
            if self.proc.poll() is not None:
                raise RuntimeError(f"verirl serve exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"verirl serve did not start within {timeout_s} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM (drain), then SIGKILL if it does not stop; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def error_lines(self) -> list[str]:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip() for line in f if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)]


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # gone between listdir and open
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # field 4; the name in (...) may hold spaces
        children[ppid].append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


ROLES = (("code.forkserver", "sandbox"), ("multiprocessing.spawn", "prm"), ("multiprocessing.forkserver", "math"),
         ("resource_tracker", "math"))


def tree_cpu_s(root: int) -> dict[str, float]:
    """CPU seconds (user + system) of `root`'s tree so far by role: "server" (root itself), "math"
    (forkserver and workers), "sandbox" (fork-servers), "prm" (the spawned PRM process); each process
    with the children it has reaped (sandboxed programs, replaced workers), from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"server": 0.0, "math": 0.0, "sandbox": 0.0, "prm": 0.0, "other": 0.0}
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        role = "server" if pid == root else next((r for key, r in ROLES if key in cmdline), "other")
        totals[role] += sum(int(x) for x in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return totals


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores (/proc/stat, idle and iowait left out)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def tree_memory(root: int) -> dict[str, float]:
    """Memory of `root` and its descendants in MiB: rss/pss of all of them, and of those running as
    root's own uid (the service; the sandbox runs untrusted programs as other uids)."""
    own_uid = os.stat(f"/proc/{root}").st_uid
    totals = {"rss_mib": 0.0, "pss_mib": 0.0, "service_rss_mib": 0.0, "service_pss_mib": 0.0, "processes": 0}
    for pid in _descendants(root):
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = dict(line.split(":", 1) for line in f if line.count(":") == 1 and "kB" in line)
        except (OSError, ValueError):  # exited meanwhile, or a kernel thread
            continue
        rss, pss = int(fields["Rss"].split()[0]) / 1024, int(fields["Pss"].split()[0]) / 1024
        totals["rss_mib"] += rss
        totals["pss_mib"] += pss
        totals["processes"] += 1
        if uid == own_uid:
            totals["service_rss_mib"] += rss
            totals["service_pss_mib"] += pss
            role = "server" if pid == root else next((r for key, r in ROLES if key in _cmdline(pid)), "other")
            totals[f"pss_mib_{role}"] = totals.get(f"pss_mib_{role}", 0.0) + pss  # which part grows
    return {k: round(v, 1) for k, v in totals.items()}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- the clients


@dataclass
class _Call:
    end: float           # seconds since the run started
    kind: str
    hostile: bool
    name: str
    latency_s: float
    items: int
    statuses: list[str]
    wrong: list[str]     # descriptions of wrong statuses / wrong call errors
    error: str = ""      # gRPC code of a failed call
    program_cpu_s: float = 0.0  # CPU of the programs run for a code call, as the sandbox measured it


class _Log:
    """The calls of a run, and their counts by honest/hostile (read by the pacing of hostile clients)."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.counts = {False: 0, True: 0}
        self._lock = threading.Lock()

    def add(self, call: _Call) -> None:
        with self._lock:
            self.calls.append(call)
            self.counts[call.hostile] += 1


def _label(result) -> str:
    """The status, with a starved program's SANDBOX_ERROR told apart from a fault (load_traffic.STARVED)."""
    if result.status == "SANDBOX_ERROR" and result.reason.startswith("not judged: starved of CPU"):
        return STARVED
    return result.status


def _one_call(client, draw: Draw) -> tuple[list[str], list[str], str, float]:
    """Send one draw; (statuses, wrong, call error code, CPU seconds of the programs it ran)."""
    from verifier_service.client import VerifierCallError
    try:
        results = getattr(client, METHODS[draw.kind])(draw.items)
    except VerifierCallError as exc:
        wrong = [] if exc.code == draw.call_error else [f"{draw.kind}/{draw.name}: call failed {exc.code} "
                                                        f"(expected {draw.call_error or 'success'}): {exc.details[:120]}"]
        return [], wrong, exc.code, 0.0
    except Exception as exc:  # the client's boundary: any other failure is a wrong answer, not a dead thread
        return [], [f"{draw.kind}/{draw.name}: {type(exc).__name__}: {str(exc)[:120]}"], type(exc).__name__, 0.0
    program_cpu_s = sum(r.cpu_time_s for r in results) if draw.kind == "code" else 0.0
    if draw.call_error:
        return ([r.status for r in results], [f"{draw.kind}/{draw.name}: succeeded, expected {draw.call_error}"], "",
                program_cpu_s)
    statuses = [_label(r) for r in results]
    wrong = [f"{draw.kind}/{draw.name} {item['id']}: {label} (expected {'|'.join(sorted(allowed))}) {r.reason[:80]}"
             for item, r, label, allowed in zip(draw.items, results, statuses, draw.allowed) if label not in allowed]
    return statuses, wrong, "", program_cpu_s


def _client_loop(index: int, config: LoadConfig, address: str, kinds: list[str], weights: list[float],
                 t0: float, stop_at: float, out: _Log, role: str) -> None:
    """role "mixed": hostile with probability config.hostile; "honest": never; "hostile": always, but
    only while hostile calls are under their share of all calls so far (else wait a little)."""
    from verifier_service.client import VerifierClient
    rng = random.Random(config.seed * 1000 + index)
    share = config.hostile / (1 - config.hostile) if config.hostile < 1 else float("inf")
    with VerifierClient(address, timeout=config.deadline_s) as client:
        while time.monotonic() < stop_at:
            kind = rng.choices(kinds, weights)[0]
            if role == "hostile":
                if out.counts[True] >= share * out.counts[False]:
                    time.sleep(0.01)
                    continue
            hostile = role == "hostile" or (role == "mixed" and rng.random() < config.hostile)
            pool = [HOSTILE_DRAWS[n] for n in config.hostile_draws] or HOSTILE[kind]
            make = rng.choice(pool) if hostile else HONEST[kind]
            draw = make(rng, config.batch.get(kind, 1))
            start = time.monotonic()
            statuses, wrong, error, program_cpu_s = _one_call(client, draw)
            end = time.monotonic()
            out.add(_Call(end - t0, draw.kind, hostile, draw.name, end - start, len(draw.items), statuses,
                          wrong, error, program_cpu_s))


def _sample_memory(server: ServerProcess, every_s: float, t0: float, stop: threading.Event,
                   out: list[dict]) -> None:
    while not stop.is_set():
        try:
            out.append({"t": round(time.monotonic() - t0, 1), "load1": os.getloadavg()[0],
                        **{f"cpu_s_{role}": round(v, 2) for role, v in tree_cpu_s(server.proc.pid).items()},
                        "machine_cpu_s": round(machine_cpu_s(), 2),
                        **tree_memory(server.proc.pid), **server.metrics()})
        except (FileNotFoundError, OSError):  # the server is gone: the report says so
            return
        stop.wait(every_s)


# ---------------------------------------------------------------- one run and its report


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3, 1) if ordered else float("nan")


def run_load(config: LoadConfig, label: str = "run", log_dir: str | None = None) -> dict:
    """One run against a fresh server; the report as a dict (see the module docstring)."""
    kinds = [k for k in KINDS if config.mix.get(k, 0) > 0 and (k != "steps" or config.prm)]
    weights = [config.mix[k] for k in kinds]
    log_dir = log_dir or tempfile.mkdtemp(prefix="verirl-load-")
    server = ServerProcess(config, os.path.join(log_dir, f"{label}.server.log"))
    load_start = os.getloadavg()
    bench_cpu_start = sum(os.times()[:2])  # this process: the clients' own CPU, on the same cores
    log = _Log()
    memory: list[dict] = []
    stop = threading.Event()
    t0 = time.monotonic()
    sampler = threading.Thread(target=_sample_memory, args=(server, config.rss_every_s, t0, stop, memory),
                               daemon=True)
    sampler.start()
    stop_at = t0 + config.duration_s
    roles = (["mixed"] * config.clients if not config.hostile_clients
             else ["honest"] * config.clients + (["hostile"] * config.hostile_clients if config.hostile else []))
    threads = [threading.Thread(target=_client_loop, daemon=True, name=f"load-client-{i}",
                                args=(i, config, server.address, kinds, weights, t0, stop_at, log, role))
               for i, role in enumerate(roles)]
    for thread in threads:
        thread.start()
    join_by = stop_at + config.deadline_s + HANG_GRACE_S
    for thread in threads:
        thread.join(max(0.0, join_by - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    elapsed = time.monotonic() - t0
    bench_cores = (sum(os.times()[:2]) - bench_cpu_start) / elapsed
    stop.set()
    sampler.join()
    alive = server.alive()
    load_end = os.getloadavg()
    exit_code = server.stop()
    report = _summarise(config, label, list(log.calls), memory, elapsed, kinds)
    report["cpu"]["clients_cores"] = round(bench_cores, 2)
    loads = [m["load1"] for m in memory]
    report.update(server_alive_at_end=alive, loadavg_mean=round(sum(loads) / max(1, len(loads)), 2), server_exit_code=exit_code, hung_clients=hung,
                  server_error_lines=server.error_lines()[:20], server_log=server.log_path, kinds=kinds,
                  loadavg_start=[round(x, 2) for x in load_start], loadavg_end=[round(x, 2) for x in load_end])
    report["ok"] = (alive and hung == 0 and report["wrong_total"] == 0 and not report["server_error_lines"])
    return report


def _summarise(config: LoadConfig, label: str, calls: list[_Call], memory: list[dict], elapsed: float,
               kinds: list[str]) -> dict:
    window = [c for c in calls if config.warmup_s <= c.end <= config.duration_s]
    seconds = config.duration_s - config.warmup_s
    groups: dict[str, list[_Call]] = collections.defaultdict(list)
    for c in calls:
        groups[f"{c.kind}/{'hostile' if c.hostile else 'honest'}"].append(c)
        if c.hostile:  # and each hostile template on its own: which ones cost the time
            groups[f"{c.kind}/hostile/{c.name}"].append(c)
    per_group = {}
    for key, group in sorted(groups.items()):
        statuses = collections.Counter(s for c in group for s in c.statuses)
        statuses.update(f"call:{c.error}" for c in group if c.error)
        per_group[key] = {"calls": len(group), "items": sum(c.items for c in group),
                          "p50_ms": _percentile([c.latency_s for c in group], 0.5),
                          "p99_ms": _percentile([c.latency_s for c in group], 0.99),
                          "statuses": dict(statuses.most_common())}
    honest = {k: sum(c.items for c in window if c.kind == k and not c.hostile and not c.error) / seconds
              for k in kinds}
    wrong = [w for c in calls for w in c.wrong]
    rss = _memory_growth(memory, config.warmup_s)
    cpu = _cpu_use(memory, config, sum(c.items for c in window if not c.hostile and not c.error))
    for hostile, name in ((False, "honest"), (True, "hostile")):  # the programs' own CPU, per second of window
        cpu[f"{name}_programs_cores"] = round(sum(c.program_cpu_s for c in window if c.hostile is hostile) / seconds, 3)
    return {"label": label, "config": {**config.__dict__}, "elapsed_s": round(elapsed, 1),
            "calls": len(calls), "hostile_calls": sum(c.hostile for c in calls),
            "hostile_fraction": round(sum(c.hostile for c in calls) / max(1, len(calls)), 3),
            "honest_items_per_s": {k: round(v, 1) for k, v in honest.items()},
            "honest_items_per_s_total": round(sum(honest.values()), 1),
            "groups": per_group, "wrong_total": len(wrong), "wrong_examples": wrong[:20],
            "cpu": cpu, "memory": rss, "memory_series": memory}


def _cpu_use(samples: list[dict], config: LoadConfig, honest_items: int) -> dict:
    """Over the counted window: CPU the server's tree used (in cores), what the whole machine used,
    and the server's CPU per honest item answered (ms): how much the hostile requests cost it."""
    inside = [m for m in samples if config.warmup_s <= m["t"] <= config.duration_s]
    if len(inside) < 2:
        return {}
    first, last = inside[0], inside[-1]
    seconds = last["t"] - first["t"]
    roles = {key[len("cpu_s_"):]: (last[key] - first[key]) / seconds for key in last if key.startswith("cpu_s_")}
    server = sum(roles.values()) * seconds
    return {"server_cores": round(server / seconds, 2),
            "server_cores_by_role": {role: round(v, 3) for role, v in roles.items()},
            "machine_cores": round((last["machine_cpu_s"] - first["machine_cpu_s"]) / seconds, 2),
            "server_ms_per_honest_item": round(1e3 * server / max(1, honest_items) * (
                (config.duration_s - config.warmup_s) / seconds), 2)}


def _memory_growth(memory: list[dict], warmup_s: float) -> dict:
    """Tree memory at the end of warm-up (first sample after it) and at the end (mean of the last
    three samples, as one sample may catch a short-lived program), and the growth in percent."""
    after = [m for m in memory if m["t"] >= warmup_s]
    if len(after) < 2:
        return {}
    out = {}
    for key in ("rss_mib", "pss_mib", "service_rss_mib", "service_pss_mib"):
        start = after[0][key]
        end = sum(m[key] for m in after[-3:]) / len(after[-3:])
        out[key] = {"start": start, "end": round(end, 1), "max": max(m[key] for m in after),
                    "growth_pct": round(100 * (end - start) / start, 1)}
    for key in sorted(k for k in after[-1] if k.startswith("pss_mib_")):
        out[key] = {"start": after[0].get(key, 0.0), "end": after[-1][key]}
    for key in ("processes", "cache_misses", "worker_restarts", "worker_deaths"):
        out[key] = {"start": after[0].get(key), "end": after[-1].get(key), "max": max(m.get(key, 0) for m in after)}
    return out


def markdown(reports: list[dict]) -> str:
    """One table of the runs and one of latencies and statuses per group."""
    lines = ["| run | hostile | honest items/s (math / code / steps / all) | wrong | hung | server alive, "
             "errors | service RSS MiB start -> end (growth) | service PSS MiB start -> end (growth) "
             "| load avg (1 min) start / mean / end | CPU cores: server tree / honest programs / hostile "
             "programs / clients / whole machine | server CPU ms per honest item |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        tp = r["honest_items_per_s"]
        rss, pss = (r["memory"].get(key, {}) for key in ("service_rss_mib", "service_pss_mib"))
        lines.append(f"| {r['label']} | {r['hostile_fraction']:.1%} | "
                     f"{tp.get('math', 0)} / {tp.get('code', 0)} / {tp.get('steps', '-')} / "
                     f"{r['honest_items_per_s_total']} | {r['wrong_total']} | {r['hung_clients']} | "
                     f"{'yes' if r['server_alive_at_end'] else 'NO'}, {len(r['server_error_lines'])} | "
                     + " | ".join(f"{m.get('start', '?')} -> {m.get('end', '?')} ({m.get('growth_pct', '?')}%)"
                                  for m in (rss, pss))
                     + f" | {r['loadavg_start'][0]} / {r['loadavg_mean']} / {r['loadavg_end'][0]} | "
                     + " / ".join(str(r["cpu"].get(k, "?")) for k in ("server_cores", "honest_programs_cores",
                                                                     "hostile_programs_cores", "clients_cores",
                                                                     "machine_cores"))
                     + f" | {r['cpu'].get('server_ms_per_honest_item', '?')} |")
    lines += ["", "| run | kind | calls | p50 ms | p99 ms | statuses |", "|---|---|---|---|---|---|"]
    for r in reports:
        for key, g in r["groups"].items():
            statuses = ", ".join(f"{s} {n}" for s, n in g["statuses"].items())
            lines.append(f"| {r['label']} | {key} | {g['calls']} | {g['p50_ms']} | {g['p99_ms']} | {statuses} |")
    return "\n".join(lines)


def tiny_prm(directory: str) -> str:
    """A random token-classification PRM (trainer/tiny.py's 2-layer Qwen2, hidden 128, char tokenizer)
    with its verirl_prm.json; its scores mean nothing, its cost and statuses are real."""
    import torch
    from transformers import AutoConfig, Qwen2ForTokenClassification

    from tasks.prm_format import PRMFormat
    from trainer.tiny import build_tiny

    build_tiny(directory, seed=0)
    config = AutoConfig.from_pretrained(directory)
    config.num_labels = 2
    torch.manual_seed(0)
    os.remove(os.path.join(directory, "model.safetensors"))
    Qwen2ForTokenClassification(config).save_pretrained(directory)
    PRMFormat(kind="token_classification", step_tag=" [s]", max_length=1024).save(directory)
    return directory


def _pairs(text: str, cast: type) -> dict:
    """"math=6,code=3" -> {"math": 6.0, "code": 3.0}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KIND=VALUE, got {part!r}")
        out[key.strip()] = cast(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = LoadConfig()
    parser.add_argument("--duration", type=float, default=d.duration_s, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=d.warmup_s)
    parser.add_argument("--clients", type=int, default=d.clients)
    parser.add_argument("--hostile", type=float, default=d.hostile, help="fraction of hostile requests in "
                        "'hostile' runs ('honest' runs use 0)")
    parser.add_argument("--hostile-clients", type=int, default=d.hostile_clients,
                        help="0: hostile requests mixed into every client's; K: sent by K clients of their own")
    parser.add_argument("--mix", type=lambda s: _pairs(s, float), default=d.mix, help="e.g. math=6,code=3,steps=1")
    parser.add_argument("--batch", type=lambda s: _pairs(s, int), default=d.batch, help="items per request by kind")
    parser.add_argument("--deadline", type=float, default=d.deadline_s, help="per call, retries included")
    parser.add_argument("--rss-every", type=float, default=d.rss_every_s)
    parser.add_argument("--workers", type=int, default=d.workers)
    parser.add_argument("--code-slots", type=int, default=d.code_slots)
    parser.add_argument("--sandbox", default=d.sandbox)
    parser.add_argument("--cache-size", type=int, default=d.cache_size, help="the server's result cache; 0: off")
    parser.add_argument("--prm", default=d.prm, help="PRM directory served with --prm (enables steps traffic)")
    parser.add_argument("--server-args", default="", help="more `verirl serve` flags, one string "
                        "(e.g. \"--malloc-arena-max 0 --malloc-trim-every 0\")")
    parser.add_argument("--tiny-prm", action="store_true", help="build a tiny random PRM in a temp dir and serve it")
    parser.add_argument("--runs", default="honest,hostile", help="comma list of honest|hostile, run back to back")
    parser.add_argument("--hostile-draws", default="", help="ablation: comma list of hostile draws to send, "
                        f"of {','.join(sorted(HOSTILE_DRAWS))} (default: each kind's own)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--json", help="write every report (with RSS series) here")
    args = parser.parse_args()
    unknown = set(n for n in args.hostile_draws.split(",") if n) - set(HOSTILE_DRAWS)
    if unknown:
        parser.error(f"--hostile-draws: unknown {sorted(unknown)}; known: {sorted(HOSTILE_DRAWS)}")
    if args.tiny_prm:
        args.prm = tiny_prm(tempfile.mkdtemp(prefix="verirl-load-prm-"))
    reports = []
    for n, kind in enumerate(args.runs.split(",")):
        if kind not in ("honest", "hostile"):
            parser.error(f"--runs: {kind!r} is neither honest nor hostile")
        config = LoadConfig(duration_s=args.duration, warmup_s=args.warmup, clients=args.clients,
                            hostile=args.hostile if kind == "hostile" else 0.0,
                            hostile_clients=args.hostile_clients, mix=args.mix, batch=args.batch,
                            deadline_s=args.deadline, rss_every_s=args.rss_every, workers=args.workers,
                            code_slots=args.code_slots, sandbox=args.sandbox, cache_size=args.cache_size, prm=args.prm, seed=args.seed + n,
                            server_args=tuple(args.server_args.split()),
                            hostile_draws=tuple(n for n in args.hostile_draws.split(",") if n))
        report = run_load(config, label=f"{n + 1}:{kind}")
        reports.append(report)
        print(json.dumps({k: report[k] for k in ("label", "ok", "honest_items_per_s", "wrong_total",
                                                 "hung_clients", "server_alive_at_end", "loadavg_end")}),
              file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                  f"{platform.python_version()}", "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                          time.gmtime()),
                       "runs": reports}, f, indent=1)
    print(markdown(reports))
    sys.exit(0 if all(r["ok"] for r in reports) else 1)


if __name__ == "__main__":
    main()
