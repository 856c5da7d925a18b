"""The isolation layers, one function each: namespaces, the read-only root, cgroups, rlimits,
the uid drop and the seccomp filter (Linux, x86_64).

Why each layer (what it stops; docs/sandbox.md has the whole threat model):
- mount namespace + a minimal read-only root built from read-only binds (/usr, the interpreter's
  stdlib, a few /etc files, /dev/{null,zero,full,random,urandom}): the code sees no repository,
  no /root, no /home, no host /proc or /sys, and can write only its private size-capped /tmp and
  /dev/shm (fresh tmpfs per run, gone with the run).
- pid namespace: the code sees only its own run's processes; the run's init (pid 1, ours) kills
  everything left with kill(-1) and the kernel kills the namespace when init exits.
- net namespace with no interface up (one per fork-server, no route anywhere), ipc and uts
  namespaces per run, cgroup namespace (host cgroup paths hidden).
- cgroups (pooled, one per slot): memory limit (OOM kill inside the slot only), pids limit (fork
  bombs), one core of CPU quota, CPU usage for time verdicts, and cgroup.kill (v2) for the whole
  tree. Layout supported: the hybrid one (v1 memory, pids, cpu + the v2 unified hierarchy).
  The v1 cpu group of a slot is flat, a sibling of the server's own tasks: cpu.shares weighs a
  group against its siblings only, so demoting a run that has burnt a lot of CPU (cpu.shares 2,
  the fork-server's job) makes it yield to the server, its math workers and fresh runs only there.
  Only the solution processes join the slot's cpu group: the run's init (our code, light) stays at
  the fork-server's full weight, so that it stops a demoted hog on time. The unified group's
  cpu.pressure (PSI) tells a run starved of CPU from one that slept.
- rlimits: CPU (a backstop to the exact cgroup accounting), address space, file size, open
  files, processes, core dumps off, no locked memory; hard = soft, and nobody here holds
  CAP_SYS_RESOURCE, so they cannot be raised.
- an unprivileged uid/gid per slot, no supplementary groups, no capabilities, no_new_privs.
- seccomp (built once with libseccomp via pyseccomp, loaded as raw BPF per process): clone3 ->
  ENOSYS (threads fall back to clone), clone/unshare with namespace flags, setns, mount,
  ptrace, process_vm_*, bpf, perf_event_open, keyctl, io_uring, kexec, modules, reboot and
  other kernel-administration calls -> EPERM; sockets of any family but AF_UNIX -> EAFNOSUPPORT.
  The i386 ABI (int 0x80) kills the process (libseccomp's bad-arch action); the x32 ABI, which
  shares x86_64's audit arch, gets the same rules (this kernel has no x32 anyway).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import resource
import time
from typing import NamedTuple

__all__ = [
    "CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWNET", "CLONE_NEWIPC", "CLONE_NEWUTS", "CLONE_NEWCGROUP",
    "unshare", "mount", "build_root", "mount_run_filesystems", "SlotCgroup", "CgroupFds",
    "cgroup_parents", "slot_paths", "FULL_SHARES", "DEMOTED_SHARES", "seccomp_bpf", "SeccompProgram",
    "set_rlimits", "drop_privileges",
    "set_oom_score_adj", "prctl_dumpable", "set_parent_death_signal", "IsolationError",
]

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWTIME = 0x00000080
_NS_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
             CLONE_NEWNET, CLONE_NEWTIME)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
_SYS_PIVOT_ROOT, _SYS_SECCOMP = 155, 317
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS, _SECCOMP_SET_MODE_FILTER = 1, 4, 38, 1

_libc = ctypes.CDLL(None, use_errno=True)


class IsolationError(OSError):
    """A layer could not be set up (the message says which)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise IsolationError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {target}")


def _bind_readonly(source: str, target: str) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


# ---------------------------------------------------------------- the root file system

_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_TOP_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def build_root(root: str, extra_ro: tuple[str, ...], users: dict[str, int]) -> None:
    """Build the sandbox's root in `root` and pivot into it (the caller is in its own mount ns).

    `extra_ro`: host directories bound read-only at the same path (the interpreter's prefix when
    it is not under /usr). `users`: names and uids written to a synthetic /etc/passwd.
    """
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("verirl-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for sub in ("usr", "etc", "dev", "dev/shm", "proc", "tmp", ".old"):
        os.makedirs(f"{root}/{sub}", exist_ok=True)
    _bind_readonly("/usr", f"{root}/usr")
    for name in _TOP_LINKS:
        host = f"/{name}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{root}/{name}")
        elif os.path.isdir(host):
            os.makedirs(f"{root}/{name}")
            _bind_readonly(host, f"{root}/{name}")
    for name in _ETC_FILES:
        host = f"/etc/{name}"
        if os.path.isdir(host) and not os.path.islink(host):
            os.makedirs(f"{root}/etc/{name}")
            _bind_readonly(host, f"{root}/etc/{name}")
        elif os.path.exists(host):
            if os.path.islink(host):
                os.symlink(os.readlink(host), f"{root}/etc/{name}")
            else:
                open(f"{root}/etc/{name}", "w").close()
                _bind_readonly(host, f"{root}/etc/{name}")
    with open(f"{root}/etc/passwd", "w") as f:
        f.writelines(f"{name}:x:{uid}:{uid}::/tmp:/bin/false\n" for name, uid in users.items())
    with open(f"{root}/etc/group", "w") as f:
        f.writelines(f"{name}:x:{uid}:\n" for name, uid in users.items())
    for dev in _DEVICES:
        open(f"{root}/dev/{dev}", "w").close()
        mount(f"/dev/{dev}", f"{root}/dev/{dev}", None, MS_BIND)
        mount("none", f"{root}/dev/{dev}", None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    for path in extra_ro:
        if not path.startswith("/usr/"):
            os.makedirs(f"{root}{path}", exist_ok=True)
            _bind_readonly(path, f"{root}{path}")
    os.chmod(f"{root}/tmp", 0o1777)
    _check(_libc.syscall(_SYS_PIVOT_ROOT, root.encode(), f"{root}/.old".encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    mount("none", "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def mount_run_filesystems(tmp_bytes: int, shm_bytes: int) -> None:
    """In the run's fresh mount and pid namespaces: private size-capped /tmp and /dev/shm, and a
    /proc of the run's pid namespace in which other users' processes are invisible."""
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_bytes},mode=1777,nr_inodes=4096")
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          f"size={shm_bytes},mode=1777,nr_inodes=1024")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")


# ---------------------------------------------------------------- cgroups

_V1 = ("memory", "pids", "cpu")
CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_parents() -> dict[str, str]:
    """This process's cgroup directory in each hierarchy we use (v1 memory/pids/cpu, v2 unified).
    Raises IsolationError if the layout is not the hybrid one."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else ["unified"]:
                own[name] = path
    parents = {}
    for name in (*_V1, "unified"):
        base = f"{CGROUP_ROOT}/{name}"
        if name not in own or not os.path.isdir(base):
            raise IsolationError(errno.ENOENT, f"cgroup hierarchy {name} is not mounted at {base}")
        parents[name] = base + own[name].rstrip("/")
    if not os.path.exists(f"{parents['unified']}/cgroup.procs"):
        raise IsolationError(errno.ENOENT, "no cgroup v2 unified hierarchy")
    return parents


class CgroupFds(NamedTuple):
    """Open files of one slot's cgroups, used without a path (the fork-server lives in the
    sandbox root, where /sys is not mounted)."""

    procs: list[int]       # cgroup.procs of memory, pids, unified: the run's init writes "0" to join
    cpu_procs: int         # v1 cpu cgroup.procs: joined by each solution process, not by the init (below)
    memory_limit: int
    memory_peak: int
    oom_control: int
    pids_current: int
    cpu_stat: int          # v2 cpu.stat: usage_usec of the whole tree
    kill: int              # v2 cgroup.kill
    cpu_shares: int        # v1 cpu.shares (the fork-server demotes a CPU hog through it)
    members: int           # v2 cgroup.procs, read-only: which processes the run has
    cpu_pressure: int      # v2 cpu.pressure (PSI), or -1 where the kernel has none
    pids_events: int       # v1 pids.events, read-only: "max N", the forks refused at pids.max

    def all(self) -> list[int]:
        return [*self.procs, self.cpu_procs, self.memory_limit, self.memory_peak, self.oom_control, self.pids_current,
                self.cpu_stat, self.kill, self.cpu_shares, self.members, self.pids_events,
                *([self.cpu_pressure] if self.cpu_pressure >= 0 else [])]

    def close_writers(self) -> None:
        """Keep only the read-only counters (cpu.stat, cpu.pressure, memory.oom_control, pids.events) open."""
        for fd in (*self.procs, self.cpu_procs, self.memory_limit, self.memory_peak, self.pids_current, self.kill,
                   self.cpu_shares, self.members):
            os.close(fd)

    def cpu_usec(self) -> int:
        for line in os.pread(self.cpu_stat, 4096, 0).split(b"\n"):
            if line.startswith(b"usage_usec "):
                return int(line.split()[1])
        raise IsolationError(errno.EIO, "cpu.stat has no usage_usec")

    def cpu_wait_usec(self) -> int | None:
        """Time (µs, since the group was made) during which at least one of its tasks was runnable
        but not running: PSI's "some" total. None without PSI."""
        if self.cpu_pressure < 0:
            return None
        return _psi_some_total(os.pread(self.cpu_pressure, 4096, 0))

    def member_pids(self) -> bytes:
        return os.pread(self.members, 65536, 0)

    def set_cpu_shares(self, shares: int) -> None:
        os.pwrite(self.cpu_shares, str(shares).encode(), 0)

    def oom_kills(self) -> int:
        for line in os.pread(self.oom_control, 4096, 0).split(b"\n"):
            if line.startswith(b"oom_kill "):
                return int(line.split()[1])
        return 0

    def pids(self) -> int:
        return int(os.pread(self.pids_current, 64, 0))

    def forks_refused(self) -> int:
        """Forks and clones refused at pids.max since the group was made (a running count)."""
        for line in os.pread(self.pids_events, 4096, 0).split(b"\n"):
            if line.startswith(b"max "):
                return int(line.split()[1])
        return 0

    def peak(self) -> int:
        return int(os.pread(self.memory_peak, 64, 0))

    def reset(self, memory_bytes: int) -> None:
        os.pwrite(self.memory_peak, b"0", 0)
        os.pwrite(self.memory_limit, str(memory_bytes).encode(), 0)

    def kill_all(self) -> None:
        os.pwrite(self.kill, b"1", 0)


FULL_SHARES = 1024   # v1 cpu.shares of a run at its start (the kernel's default: a nice-0 task's weight)
DEMOTED_SHARES = 2   # the kernel's minimum: the group runs only on cycles nobody else wants


def _psi_some_total(text: bytes) -> int:
    for line in text.split(b"\n"):
        if line.startswith(b"some "):
            return int(line.rsplit(b"total=", 1)[1])
    raise IsolationError(errno.EIO, "cpu.pressure has no 'some' line")


def slot_paths(parents: dict[str, str], group: str, index: int) -> dict[str, str]:
    """Where slot `index` of the runner `group` lives in each hierarchy: <parent>/<group>/slot<i>,
    except in v1 cpu, where it is flat (<parent>/<group>-slot<i>): a sibling of the server's own
    tasks, so that its cpu.shares weighs it against them (see the module docstring)."""
    return {name: f"{parent}/{group}-slot{index}" if name == "cpu" else f"{parent}/{group}/slot{index}"
            for name, parent in parents.items()}


class SlotCgroup(NamedTuple):
    """One slot's cgroup in each hierarchy (`slot_paths`), where the group names the runner that
    owns it (verirl-<pid>-<n>: one process may hold several runners)."""

    paths: dict[str, str]

    @classmethod
    def create(cls, parents: dict[str, str], group: str, index: int, pids_max: int) -> "SlotCgroup":
        paths = slot_paths(parents, group, index)
        for path in paths.values():
            os.makedirs(path)
        _write(f"{paths['pids']}/pids.max", str(pids_max))
        _write(f"{paths['cpu']}/cpu.cfs_period_us", "100000")
        _write(f"{paths['cpu']}/cpu.cfs_quota_us", "100000")  # one core per slot
        _write(f"{paths['cpu']}/cpu.shares", str(FULL_SHARES))
        _write(f"{paths['memory']}/memory.swappiness", "0")
        return cls(paths)

    def has_pressure(self) -> bool:
        """Whether the kernel keeps PSI for the slot (CONFIG_PSI, not booted with psi=0)."""
        try:
            with open(f"{self.paths['unified']}/cpu.pressure", "rb") as f:
                _psi_some_total(f.read())
        except OSError:  # absent, or EOPNOTSUPP where PSI is switched off
            return False
        return True

    def open(self) -> CgroupFds:
        p = self.paths
        return CgroupFds(
            procs=[os.open(f"{p[name]}/cgroup.procs", os.O_WRONLY) for name in ("memory", "pids", "unified")],
            cpu_procs=os.open(f"{p['cpu']}/cgroup.procs", os.O_WRONLY),
            memory_limit=os.open(f"{p['memory']}/memory.limit_in_bytes", os.O_WRONLY),
            memory_peak=os.open(f"{p['memory']}/memory.max_usage_in_bytes", os.O_RDWR),
            oom_control=os.open(f"{p['memory']}/memory.oom_control", os.O_RDONLY),
            pids_current=os.open(f"{p['pids']}/pids.current", os.O_RDONLY),
            cpu_stat=os.open(f"{p['unified']}/cpu.stat", os.O_RDONLY),
            kill=os.open(f"{p['unified']}/cgroup.kill", os.O_WRONLY),
            cpu_shares=os.open(f"{p['cpu']}/cpu.shares", os.O_WRONLY),
            members=os.open(f"{p['unified']}/cgroup.procs", os.O_RDONLY),
            cpu_pressure=os.open(f"{p['unified']}/cpu.pressure", os.O_RDONLY) if self.has_pressure() else -1,
            pids_events=os.open(f"{p['pids']}/pids.events", os.O_RDONLY),
        )

    def remove(self) -> None:
        """Kill whatever is left and remove the directories (idempotent). A nested slot
        (.../<group>/slot<i>) takes its group along once the group is empty; a flat one
        (.../<group>-slot<i>) has the hierarchy's parent above it, which is never touched."""
        if "unified" in self.paths and os.path.exists(f"{self.paths['unified']}/cgroup.kill"):
            _write(f"{self.paths['unified']}/cgroup.kill", "1")
        for path in self.paths.values():
            for _ in range(200):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:  # EBUSY while killed processes are still exiting
                    if err.errno != errno.EBUSY:
                        raise
                    time.sleep(0.005)
            if not _NESTED_SLOT.fullmatch(os.path.basename(path)):
                continue
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass  # other slots of this runner are still there


_NESTED_SLOT = re.compile(r"slot\d+")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


# ---------------------------------------------------------------- process limits and identity

def set_rlimits(cpu_s: float, address_space: int, file_bytes: int, nofile: int, nproc: int,
                stack: int) -> None:
    cpu = max(1, int(cpu_s + 0.999)) + 1  # whole seconds; the cgroup accounting is the exact judge
    for limit, soft, hard in (
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_AS, address_space, address_space),
            (resource.RLIMIT_FSIZE, file_bytes, file_bytes),
            (resource.RLIMIT_NOFILE, nofile, nofile),
            (resource.RLIMIT_NPROC, nproc, nproc),
            (resource.RLIMIT_CORE, 0, 0),
            (resource.RLIMIT_MEMLOCK, 0, 0),
            (resource.RLIMIT_MSGQUEUE, 0, 0),
            (resource.RLIMIT_STACK, stack, stack),
            (resource.RLIMIT_RTPRIO, 0, 0)):
        resource.setrlimit(limit, (soft, hard))


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def set_oom_score_adj(value: int) -> None:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def set_parent_death_signal(sig: int) -> None:
    _check(_libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def prctl_dumpable(on: bool) -> None:
    _check(_libc.prctl(_PR_SET_DUMPABLE, int(on), 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


# ---------------------------------------------------------------- seccomp

_DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "syslog", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm", "vhangup",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "lookup_dcookie", "personality",
    "seccomp",
)
AF_UNIX = 1


def seccomp_bpf() -> bytes:
    """The filter as raw BPF, built once by libseccomp (pyseccomp) in the fork-server."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    f.add_arch(sc.Arch.X32)  # same audit arch as x86_64 (numbers | 0x40000000): give it the same rules
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # glibc then uses clone, whose flags we can see
    for name in _DENIED:
        f.add_rule(sc.ERRNO(errno.EPERM), name)
    for flag in _NS_FLAGS:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for call in ("socket", "socketpair"):
        f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), call, sc.Arg(0, sc.NE, AF_UNIX))
    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(write_fd, "wb", closefd=False) as out:
            f.export_bpf(out)
        os.close(write_fd)
        write_fd = -1
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    return b"".join(chunks)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompProgram:
    """A BPF program kept in memory so that a freshly forked child loads it with two syscalls."""

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % 8:
            raise IsolationError(errno.EINVAL, "empty or malformed seccomp program")
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._prog = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buffer))

    def load(self) -> None:
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        _check(_libc.syscall(_SYS_SECCOMP, _SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(self._prog)),
               "seccomp(SET_MODE_FILTER)")

