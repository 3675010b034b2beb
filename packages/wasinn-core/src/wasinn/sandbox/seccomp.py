"""No network, no exec, no new process: a seccomp-BPF filter assembled here, instruction by instruction.

The filter (:func:`worker_filter`) checks, in order:

1. the architecture of the call (``seccomp_data.arch``): anything but the native 64-bit ABI kills
   the process (``int 0x80`` from an x86_64 process reaches the *i386* table with other numbers,
   and the x32 ABI shares the arch with bit 30 set in the number: both are killed);
2. a short list of calls decided by their arguments:

   - ``clone``: allowed only with ``CLONE_THREAD`` and no ``CLONE_NEW*`` flag (threads, which every
     runtime's thread pool needs; ``fork``/``vfork``/``posix_spawn`` all become ``clone`` without it);
   - ``mmap``: ``MAP_SHARED|MAP_ANONYMOUS`` is refused (shared anonymous memory is not counted by
     ``RLIMIT_DATA``; mapping a file or private memory is fine);
   - ``ioctl``: ``TIOCSTI`` and ``TIOCLINUX`` are refused (typing into an inherited terminal);
   - ``kill``, ``tgkill``, ``rt_sigqueueinfo``, ``rt_tgsigqueueinfo``: only to the process itself
     (its pid as of :func:`install`; ``kill(0)`` and ``kill(-1)`` reach the host's process group);
   - ``prlimit64``: only on the process itself (pid 0 or its own), so it cannot lower the host's limits;

3. a list of calls refused with ``EPERM`` (:data:`EPERM_CALLS`): sockets of every family, exec,
   fork/vfork, SysV IPC and POSIX message queues (kernel objects that outlive the process),
   ``memfd_create`` (memory no rlimit counts), ``perf_event_open``, ``tkill`` and pidfd signals,
   node/page migration of other processes, time and host name changes, and every change to a
   file's metadata (mode, owner, times, extended attributes: Landlock does not cover those). A runtime may try some of
   these for harmless reasons (a telemetry socket, ``lscpu`` in a subprocess) and copes with
   ``EPERM``, so they fail rather than kill;
4. a list of calls that kill the process (:data:`KILL_CALLS`): ``ptrace``, ``process_vm_*``, ``bpf``,
   ``io_uring_*`` (its operations bypass seccomp), ``userfaultfd``, keyrings, namespaces, mounts,
   module loading, kexec, reboot, swap, ``pidfd_getfd``, ``kcmp``, ``open_by_handle_at``... No
   inference runtime calls them; a worker that does was taken over, and killing it (``SIGSYS``)
   tells the host so at once and leaves no chance to probe further;
5. ``clone3`` answers ``ENOSYS``: its flags sit in a struct that seccomp cannot read, and glibc
   then falls back to ``clone``, which step 2 checks;
6. everything else is allowed.

It is a deny list on purpose: files, TCP and signals are already confined by allow lists (Landlock,
:mod:`wasinn.sandbox.landlock`), and an allow list of syscalls for every runtime (CPython, numpy,
onnxruntime, OpenVINO, LiteRT, llama.cpp and their drivers) would break a worker on the next
glibc or driver update. The filter is synchronised to every thread of the process (``TSYNC``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from wasinn.sandbox._sys import ARCH, AUDIT_ARCH, NR, TABLES, SandboxError, prctl, syscall

__all__ = [
    "EPERM_CALLS",
    "KILL_CALLS",
    "Filter",
    "available",
    "install",
    "reason",
    "worker_filter",
]

# linux/filter.h, linux/bpf_common.h
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_AND_K = 0x54
_RET_K = 0x06
# linux/seccomp.h
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
_SET_MODE_FILTER = 1
_GET_ACTION_AVAIL = 2
_FILTER_FLAG_TSYNC = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_SECCOMP = 21
# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_lo(i: int) -> int:  # low 32 bits of args[i] (little-endian, both architectures)
    return 16 + 8 * i


_X32_SYSCALL_BIT = 0x40000000
_CLONE_THREAD = 0x00010000
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_MAP_SHARED_ANON = 0x01 | 0x20  # MAP_SHARED (also in MAP_SHARED_VALIDATE) | MAP_ANONYMOUS
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C

#: Refused with ``EPERM`` (names missing on an architecture are skipped).
EPERM_CALLS = (
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "fork", "vfork", "execve", "execveat",
    "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "semtimedop", "msgget", "msgsnd", "msgrcv",
    "msgctl", "mq_open", "memfd_create", "memfd_secret",
    "perf_event_open", "tkill", "pidfd_open", "pidfd_send_signal", "migrate_pages", "move_pages",
    "mknod", "mknodat", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "sethostname",
    "setdomainname", "syslog", "vhangup",
    # Landlock does not cover a file's metadata: mode, owner, times, extended attributes.
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "setxattrat", "removexattrat",
)
#: Kill the whole process (``SECCOMP_RET_KILL_PROCESS``, seen by the parent as ``SIGSYS``).
KILL_CALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "bpf", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
    "keyctl", "add_key", "request_key", "unshare", "setns",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at", "fanotify_init", "quotactl",
    "quotactl_fd", "acct", "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "iopl", "ioperm", "modify_ldt", "uselib", "_sysctl", "lookup_dcookie",
)

_Insn = tuple[int, int, int, int]  # code, jt, jf, k


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _ld(offset: int) -> _Insn:
    return (_LD_W_ABS, 0, 0, offset)


def _ret(action: int) -> _Insn:
    return (_RET_K, 0, 0, action)


def _eperm() -> _Insn:
    return _ret(RET_ERRNO | errno.EPERM)


def _jeq(k: int, jt: int, jf: int) -> _Insn:
    return (_JEQ_K, jt, jf, k)


def _jset(k: int, jt: int, jf: int) -> _Insn:
    return (_JSET_K, jt, jf, k)


def _only_self(arg: int, pid: int, *, zero_too: bool = False) -> list[_Insn]:
    # args[arg] (a pid_t: the kernel reads 32 bits) must be this process (or 0 = "myself" for prlimit).
    if zero_too:
        return [_ld(_arg_lo(arg)), _jeq(0, 1, 0), _jeq(pid, 0, 1), _ret(RET_ALLOW), _eperm()]
    return [_ld(_arg_lo(arg)), _jeq(pid, 0, 1), _ret(RET_ALLOW), _eperm()]


@dataclass(frozen=True)
class Filter:
    """An assembled program: ``insns`` as (code, jt, jf, k) for the architecture ``arch``."""

    arch: str
    insns: tuple[_Insn, ...]
    #: The only process the filter lets signal: the one that must install it.
    pid: int

    def __len__(self) -> int:
        return len(self.insns)


def worker_filter(*, pid: int | None = None, arch: str | None = None) -> Filter:
    """The worker's filter for ``arch`` (default: this machine), with ``pid`` (default: this process)
    as the only target of signals and ``prlimit64``."""
    arch = arch or ARCH
    if arch is None or arch not in TABLES:
        raise SandboxError(errno.ENOSYS, "seccomp: no syscall table for this architecture")
    nr = TABLES[arch]
    pid = os.getpid() if pid is None else pid
    prog: list[_Insn] = [_ld(_OFF_ARCH), _jeq(AUDIT_ARCH[arch], 1, 0), _ret(RET_KILL_PROCESS), _ld(_OFF_NR)]
    if arch == "x86_64":
        prog += [(_JGE_K, 0, 1, _X32_SYSCALL_BIT), _ret(RET_KILL_PROCESS)]
    blocks: list[tuple[str, list[_Insn]]] = [
        # Hot calls first: mmap and ioctl are frequent and cannot use the kernel's allow cache.
        ("mmap", [_ld(_arg_lo(3)), (_AND_K, 0, 0, _MAP_SHARED_ANON), _jeq(_MAP_SHARED_ANON, 0, 1), _eperm(),
                  _ret(RET_ALLOW)]),
        ("ioctl", [_ld(_arg_lo(1)), _jeq(_TIOCSTI, 2, 0), _jeq(_TIOCLINUX, 1, 0), _ret(RET_ALLOW), _eperm()]),
        ("clone", [_ld(_arg_lo(0)), _jset(_CLONE_NEW, 2, 0), _jset(_CLONE_THREAD, 0, 1), _ret(RET_ALLOW),
                   _eperm()]),
        ("clone3", [_ret(RET_ERRNO | errno.ENOSYS)]),
        ("kill", _only_self(0, pid)),
        ("tgkill", _only_self(0, pid)),
        ("rt_sigqueueinfo", _only_self(0, pid)),
        ("rt_tgsigqueueinfo", _only_self(0, pid)),
        ("prlimit64", _only_self(0, pid, zero_too=True)),
    ]
    blocks += [(name, [_eperm()]) for name in EPERM_CALLS]
    blocks += [(name, [_ret(RET_KILL_PROCESS)]) for name in KILL_CALLS]
    for name, block in blocks:
        if name not in nr:
            continue
        # Not this call: skip the block (which always ends in a return, so A still holds the number).
        prog.append(_jeq(nr[name], 0, len(block)))
        prog += block
    prog.append(_ret(RET_ALLOW))
    if len(prog) > 4096:  # BPF_MAXINSNS
        raise SandboxError(errno.E2BIG, "seccomp filter too long")
    return Filter(arch, tuple(prog), pid)


def install(flt: Filter | None = None) -> Filter:
    """Install ``flt`` (default: :func:`worker_filter` for this process) on every thread of the process.

    Sets ``PR_SET_NO_NEW_PRIVS`` first (required without ``CAP_SYS_ADMIN``). Irreversible.
    """
    flt = flt or worker_filter()
    if flt.arch != ARCH:
        raise SandboxError(errno.EINVAL, f"seccomp: a filter for {flt.arch} on {ARCH}")
    if flt.pid != os.getpid():  # built in a template, installed in its fork child: it could not even abort()
        raise SandboxError(errno.EINVAL, f"seccomp: a filter for pid {flt.pid} installed in {os.getpid()}")
    raw = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *insn) for insn in flt.insns))
    prog = _SockFprog(len(flt), ctypes.cast(raw, ctypes.POINTER(_SockFilter)))
    prctl(_PR_SET_NO_NEW_PRIVS, 1)
    res = syscall("seccomp", _SET_MODE_FILTER, _FILTER_FLAG_TSYNC, ctypes.byref(prog))
    if res != 0:  # TSYNC: the id of a thread that could not be synchronised
        raise SandboxError(errno.EBUSY, f"seccomp: thread {res} could not take the filter")
    return flt


def _action_available(action: int) -> bool:
    value = ctypes.c_uint32(action)
    try:
        syscall("seccomp", _GET_ACTION_AVAIL, 0, ctypes.byref(value))
    except SandboxError:
        return False
    return True


def reason() -> str:
    """Whether :func:`install` can work here, in words; see :func:`available`."""
    if ARCH is None or "seccomp" not in NR:
        return "seccomp: no syscall table for this platform (x86_64 and aarch64 Linux only)"
    try:
        mode = prctl(_PR_GET_SECCOMP)
    except SandboxError as e:
        return f"seccomp: {e.strerror} (kernel without CONFIG_SECCOMP?)"
    if not _action_available(RET_KILL_PROCESS) or not _action_available(RET_ERRNO):
        return "seccomp: the kernel lacks SECCOMP_RET_KILL_PROCESS or filters (Linux 4.14+ with CONFIG_SECCOMP_FILTER)"
    return "seccomp filter" + (" (stacked on an existing filter)" if mode == 2 else "")


def available() -> bool:
    """True where :func:`install` should succeed (filters and the actions it uses exist)."""
    return reason().startswith("seccomp filter")
