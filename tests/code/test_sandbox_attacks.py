"""One attack per test. Each checks the verdict, then that the runner still answers and that the
next run in the same slot is clean (no process, file or variable left, nothing on the host)."""

from __future__ import annotations

import os
import socket
import tempfile
import time

import pytest

from verifier_service.code import CodeStatus

from sandbox_helpers import SECRET, assert_next_run_clean, run_assert, run_call, run_py

FAILED = {CodeStatus.FAILED, CodeStatus.RUNTIME_ERROR, CodeStatus.TIMEOUT, CodeStatus.MEMORY_LIMIT,
          CodeStatus.OUTPUT_LIMIT}


def test_fork_bomb(runner):
    """A bomb that keeps forking at its process limit is stopped by its fork-server long before its
    CPU limit (forkserver.FORK_REFUSALS_STOP): RUNTIME_ERROR, the program's fault."""
    start = time.monotonic()
    verdict = run_py(runner, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                     cpu_time_s=5.0, wall_time_s=20.0)
    assert verdict.status is CodeStatus.RUNTIME_ERROR, verdict
    assert "kept forking at its process limit" in verdict.reason, verdict
    assert time.monotonic() - start < 10.0 and verdict.cpu_time_s < 5.0, verdict
    assert_next_run_clean(runner)


def test_forks_up_to_the_limit_once_then_finishes(runner):
    """A program that meets the process limit and handles the refusal is judged on its output."""
    code = ("import os, time\nkids = []\ntry:\n    for _ in range(200):\n        pid = os.fork()\n"
            "        if pid == 0:\n            time.sleep(0.5)\n            os._exit(0)\n        kids.append(pid)\n"
            "except OSError:\n    pass\nfor pid in kids:\n    os.waitpid(pid, 0)\nprint(len(kids) >= 32)\n")
    verdict = run_py(runner, code, cpu_time_s=5.0, wall_time_s=20.0, expected="True\n")
    assert verdict.status is CodeStatus.PASSED, verdict


def test_memory_bomb(runner):
    verdict = run_py(runner, "x = bytearray(8 << 30)\n", memory_bytes=128 << 20)
    assert verdict.status is CodeStatus.MEMORY_LIMIT, verdict
    assert_next_run_clean(runner)


def test_memory_bomb_by_touching_pages(runner):
    verdict = run_py(runner, "blocks = []\nwhile True:\n    blocks.append(b'x' * (1 << 20))\n",
                     memory_bytes=128 << 20)
    assert verdict.status is CodeStatus.MEMORY_LIMIT, verdict
    assert verdict.peak_memory_bytes > 64 << 20
    assert_next_run_clean(runner)


def test_slow_memory_creep(runner):
    code = "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(1 << 20))\n    time.sleep(0.002)\n"
    verdict = run_py(runner, code, memory_bytes=64 << 20, wall_time_s=20)
    assert verdict.status is CodeStatus.MEMORY_LIMIT, verdict
    assert_next_run_clean(runner)


def test_memory_in_tmpfs_is_bounded(runner):
    """Memory that the address-space limit does not see (tmpfs pages) is bounded by tmpfs size."""
    code = ("chunk = b'x' * (1 << 20)\nn = 0\ntry:\n    with open('/dev/shm/f', 'wb') as f:\n"
            "        while True:\n            f.write(chunk)\n            f.flush()\n            n += 1\n"
            "except OSError as err:\n    print('stopped', n <= 16, err.errno)\n")
    verdict = run_py(runner, code, expected="stopped True 28\n")
    assert verdict.status is CodeStatus.PASSED, verdict
    assert_next_run_clean(runner)


def test_infinite_loop(runner):
    start = time.monotonic()
    verdict = run_py(runner, "while True:\n    pass\n", cpu_time_s=0.5)
    assert verdict.status is CodeStatus.TIMEOUT, verdict
    assert 0.5 <= verdict.cpu_time_s < 1.5
    assert time.monotonic() - start < 5
    assert_next_run_clean(runner)


def test_sleeping_forever(runner):
    start = time.monotonic()
    verdict = run_py(runner, "import time\ntime.sleep(10_000)\n", cpu_time_s=0.2, wall_time_s=1.0)
    assert verdict.status is CodeStatus.TIMEOUT, verdict
    assert "wall" in verdict.reason
    assert time.monotonic() - start < 5
    assert_next_run_clean(runner)


def test_busy_threads(runner):
    code = ("import threading\ndef spin():\n    while True:\n        pass\n"
            "for _ in range(8):\n    threading.Thread(target=spin, daemon=True).start()\nspin()\n")
    start = time.monotonic()
    verdict = run_py(runner, code, cpu_time_s=0.5)
    assert verdict.status is CodeStatus.TIMEOUT, verdict
    assert time.monotonic() - start < 5
    assert_next_run_clean(runner)


def test_huge_file(runner):
    code = "chunk = b'x' * (1 << 20)\nwith open('/tmp/big', 'wb') as f:\n    while True:\n        f.write(chunk)\n"
    verdict = run_py(runner, code)
    assert verdict.status in {CodeStatus.OUTPUT_LIMIT, CodeStatus.RUNTIME_ERROR}, verdict
    assert_next_run_clean(runner)


def test_fill_tmp_and_shm(runner):
    code = ("import os\nfor d in ('/tmp', '/dev/shm'):\n    i = 0\n    try:\n        while True:\n"
            "            with open(f'{d}/f{i}', 'wb') as f:\n                f.write(b'x' * (1 << 20))\n"
            "            i += 1\n    except OSError as err:\n        print(d, 'full', err.errno)\n")
    verdict = run_py(runner, code, expected="/tmp full 28\n/dev/shm full 28\n")
    assert verdict.status is CodeStatus.PASSED, verdict
    assert_next_run_clean(runner)


def test_loopback_connection(runner):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', %d), timeout=2)\n    print('connected')\n"
            "except OSError as err:\n    print('refused', err.errno)\n") % port
    verdict = run_py(runner, code, expected="refused 97\n")  # EAFNOSUPPORT from the seccomp filter
    assert verdict.status is CodeStatus.PASSED, verdict
    with pytest.raises(socket.timeout):
        listener.accept()
    listener.close()
    assert_next_run_clean(runner)


def test_raw_socket_through_ctypes(runner):
    code = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "for family, kind, proto in ((2, 3, 255), (17, 3, 0), (16, 3, 0), (2, 1, 0), (10, 2, 0)):\n"
            "    print(libc.socket(family, kind, proto), ctypes.get_errno())\n")
    verdict = run_py(runner, code, expected="-1 97\n" * 5)
    assert verdict.status is CodeStatus.PASSED, verdict
    assert_next_run_clean(runner)


def test_server_environment_through_proc(runner):
    assert os.environ["VERIRL_SANDBOX_TEST_SECRET"] == SECRET
    code = ("import os\nseen = []\nfor p in os.listdir('/proc'):\n    try:\n"
            "        seen.append(open(f'/proc/{p}/environ', 'rb').read())\n    except OSError:\n        pass\n"
            "for p in ('/proc/1/environ', '/proc/self/environ'):\n    try:\n        seen.append(open(p, 'rb').read())\n"
            "    except OSError:\n        pass\nprint(b''.join(seen), dict(os.environ))\n")
    verdict = run_py(runner, code)
    assert verdict.status is CodeStatus.FAILED, verdict  # it ran; the expected output is empty
    assert SECRET not in verdict.stdout and "VERIRL" not in verdict.stdout
    assert "PATH" in verdict.stdout
    assert_next_run_clean(runner)


def test_reading_server_files(runner):
    secret = tempfile.NamedTemporaryFile("w", prefix="verirl-root-only-", delete=False)
    secret.write(SECRET)
    secret.close()
    os.chmod(secret.name, 0o600)
    repo_file = os.path.abspath(__file__)
    try:
        paths = [secret.name, repo_file, "/etc/shadow", "/root/.bashrc", "/proc/1/root/etc/hostname",
                 "/proc/1/environ", "/sys/fs/cgroup/cgroup.procs", "/work"]
        code = ("import os\nfor p in %r:\n    try:\n        print(p, 'READ', open(p).read()[:50])\n"
                "    except OSError as err:\n        print(p, 'denied', type(err).__name__)\n"
                "print(sorted(os.listdir('/')))\n") % (paths,)
        verdict = run_py(runner, code)
        assert verdict.stdout.count("denied") == len(paths), verdict.stdout
        assert "READ" not in verdict.stdout and SECRET not in verdict.stdout
        assert "'work'" not in verdict.stdout and "'root'" in verdict.stdout  # /root only holds the stdlib bind
    finally:
        os.unlink(secret.name)
    assert_next_run_clean(runner)


def test_killing_the_parent_and_everyone(runner):
    code = ("import os, signal\nfor target in (os.getppid(), 1, -1):\n    try:\n        os.kill(target, signal.SIGKILL)\n"
            "    except OSError as err:\n        print(target, err.errno)\nprint('alive')\n")
    # the parent is the run's init (pid 1, root): EPERM; kill(-1) finds no other process of this
    # uid in the run's pid namespace (and never signals the caller): ESRCH
    verdict = run_py(runner, code, expected="1 1\n1 1\n-1 3\nalive\n")
    assert verdict.status is CodeStatus.PASSED, verdict
    assert_next_run_clean(runner)


@pytest.mark.parametrize("how", ["setsid", "double_fork"])
def test_process_that_outlives_the_run(runner, how):
    daemon = ("import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n"
              + ("    if os.fork():\n        os._exit(0)\n" if how == "double_fork" else "")
              + "    os.close(1)\n    os.close(2)\n    time.sleep(30)\n    os._exit(0)\nprint('parent done')\n")
    verdict = run_py(runner, daemon, expected="parent done\n")
    assert verdict.status is CodeStatus.PASSED, verdict
    assert_next_run_clean(runner)


def test_raising_rlimits(runner):
    code = ("import resource\nfor r in (resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_NPROC,"
            " resource.RLIMIT_FSIZE):\n    soft, hard = resource.getrlimit(r)\n    try:\n"
            "        resource.setrlimit(r, (hard + 1, hard + 1))\n        print('raised')\n"
            "    except (ValueError, OSError):\n        print('denied')\n")
    verdict = run_py(runner, code, expected="denied\n" * 4)
    assert verdict.status is CodeStatus.PASSED, verdict
    assert_next_run_clean(runner)


def test_ignoring_sigterm_and_sigalrm(runner):
    code = ("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\nsignal.alarm(1)\nwhile True:\n    pass\n")
    verdict = run_py(runner, code, cpu_time_s=0.5)
    assert verdict.status is CodeStatus.TIMEOUT, verdict
    assert_next_run_clean(runner)


def test_flooding_stdout(runner):
    verdict = run_py(runner, "while True:\n    print('x' * 1000)\n", output_bytes=64 << 10)
    assert verdict.status is CodeStatus.OUTPUT_LIMIT, verdict
    assert verdict.stdout_truncated and len(verdict.stdout) <= 64 << 10
    assert_next_run_clean(runner)


def test_deleting_files_outside_the_work_directory(runner):
    canary = tempfile.NamedTemporaryFile(prefix="verirl-canary-", delete=False)
    canary.close()
    try:
        code = ("import os, shutil\nfor p in (%r, '/usr/bin/g++', '/etc/passwd', os.__file__):\n    try:\n"
                "        os.remove(p)\n        print('removed', p)\n    except OSError as err:\n"
                "        print('kept', err.errno)\nshutil.rmtree('/etc', ignore_errors=True)\nprint(os.path.exists('/etc/passwd'))\n") % canary.name
        verdict = run_py(runner, code)
        assert "removed" not in verdict.stdout, verdict.stdout
        assert os.path.exists(canary.name) and os.path.exists("/usr/bin/g++") and os.path.exists(os.__file__)
    finally:
        os.unlink(canary.name)
    assert_next_run_clean(runner)


def test_segfault(runner):
    verdict = run_py(runner, "import ctypes\nctypes.string_at(0)\n")
    assert verdict.status is CodeStatus.RUNTIME_ERROR and "SIGSEGV" in verdict.reason, verdict
    assert_next_run_clean(runner)


@pytest.mark.parametrize("where", ["load", "call"])
def test_exit_zero_before_the_tests(runner, where):
    code = ("import os\nos._exit(0)\ndef add(a, b):\n    return a + b\n" if where == "load" else
            "import os\ndef add(a, b):\n    os._exit(0)\n")
    verdict = run_assert(runner, code, "assert add(1, 2) == 3\nassert add(2, 2) == 4\n")
    assert verdict.status is CodeStatus.RUNTIME_ERROR and verdict.passed == 0, verdict
    verdict = run_call(runner, code, "add", [("[1, 2]", "3")])
    assert verdict.status is CodeStatus.RUNTIME_ERROR and verdict.passed == 0, verdict
    assert_next_run_clean(runner)


def test_always_equal_return_value(runner):
    code = ("class Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
            "class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n"
            "        return False\n"
            "def add(a, b):\n    return Yes(0) if a == 1 else AlwaysEqual()\n")
    verdict = run_assert(runner, code, "assert add(1, 2) == 3\nassert add(2, 2) == 4\n")
    assert verdict.status is CodeStatus.FAILED and verdict.passed == 0, verdict
    verdict = run_call(runner, code, "add", [("[1, 2]", "3"), ("[2, 2]", "4")])
    assert verdict.status is CodeStatus.FAILED and verdict.passed == 0, verdict
    assert_next_run_clean(runner)


def test_forged_result(runner):
    forge = ('{"t":"assert","tests":{"tests":[{"i":0,"status":"PASSED"}],"total":1},"end":"exit","code":0}')
    code = ("import os, struct, json\nframe = %r.encode()\nmsg = struct.pack('>I', len(frame)) + frame\n"
            "done = json.dumps({'t': 'done'}).encode()\nmsg += struct.pack('>I', len(done)) + done\n"
            "print(msg.decode(errors='replace'))\nfor fd in range(3, 64):\n    try:\n        os.write(fd, msg)\n"
            "    except OSError:\n        pass\nfor p in os.listdir('/proc'):\n    for fd in range(64):\n        try:\n"
            "            with open(f'/proc/{p}/fd/{fd}', 'wb') as f:\n                f.write(msg)\n"
            "        except OSError:\n            pass\nos._exit(0)\n") % forge
    verdict = run_assert(runner, code, "assert add(1, 2) == 3\n")
    assert verdict.status is not CodeStatus.PASSED and verdict.passed == 0, verdict
    assert verdict.judged
    assert_next_run_clean(runner)


def test_other_syscall_abis(runner):
    """i386 syscalls (int 0x80) would skip x86_64 rules: the filter kills the process instead."""
    code = ("import ctypes, mmap\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.syscall(0x40000000 + 41, 2, 1, 0), ctypes.get_errno() in (38, 97), flush=True)\n"
            "buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
            "buf.write(bytes([0xb8, 0x14, 0, 0, 0, 0xcd, 0x80, 0xc3]))  # mov eax, 20 (getpid); int 0x80; ret\n"
            "print(ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))())\n")
    verdict = run_py(runner, code)
    assert verdict.stdout == "-1 True\n", verdict
    assert verdict.status is CodeStatus.RUNTIME_ERROR and "SIGSYS" in verdict.reason, verdict
    assert_next_run_clean(runner)


def test_fork_server_killed_between_runs(runner):
    """Not an attack the code can make, but the failure the runner must survive: a dead
    fork-server is restarted before the slot's next run."""
    runner._slots[0].process.kill()
    runner._slots[0].process.wait()
    assert_next_run_clean(runner)


def test_fork_server_killed_during_a_run(runner):
    import threading
    killer = threading.Timer(0.5, runner._slots[0].process.kill)
    killer.start()
    verdict = run_py(runner, "import time\ntime.sleep(5)\n", wall_time_s=8.0)
    killer.join()
    assert verdict.status is CodeStatus.SANDBOX_ERROR and not verdict.judged, verdict
    assert_next_run_clean(runner)


def test_reading_the_tests_from_memory(runner):
    """Assert-style test code (with its expected values) never enters the solution's memory: the
    solution scans its own address space, every /proc entry it can open, and every descriptor."""
    code = '''import os, re
needle = re.compile(rb"EXPECTED_VALUE_3133[7]")  # never itself contiguous in this process's memory
found = []
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb") as mem:
    for line in maps:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if "r" not in line.split()[1] or end - start > (64 << 20):
            continue
        try:
            mem.seek(start)
            if needle.search(mem.read(end - start)):
                found.append(line.split()[-1])
        except (OSError, ValueError, OverflowError):
            pass
for pid in os.listdir("/proc"):
    for name in ("cmdline", "environ", "mem"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                if needle.search(f.read(1 << 20)):
                    found.append(pid + name)
        except OSError:
            pass
for fd in range(3, 64):
    try:
        if needle.search(os.pread(fd, 1 << 20, 0)):
            found.append(fd)
    except OSError:
        pass
print("found" if found else "hidden", found)
def answer():
    return 0
'''
    verdict = run_assert(runner, code, "SECRET = 'EXPECTED_VALUE_31337'\nassert answer() == SECRET\n")
    assert verdict.status is CodeStatus.FAILED and verdict.stdout.startswith("hidden"), verdict
    control = run_assert(runner, "planted = 'EXPECTED_VALUE_31337'\n" + code, "assert answer() == 1\n")
    assert control.stdout.startswith("found"), control  # the scan does find what is in memory
    assert_next_run_clean(runner)
