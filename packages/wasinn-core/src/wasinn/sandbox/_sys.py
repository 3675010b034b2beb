"""Raw system calls through ctypes, and the numbers they have on each supported architecture.

Only x86_64 and aarch64 are known; on anything else every layer that needs a syscall number reports
itself unavailable rather than guessing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

__all__ = [
    "ARCH",
    "AUDIT_ARCH",
    "NR",
    "SandboxError",
    "check",
    "libc",
    "prctl",
    "syscall",
    "thread_count",
]


class SandboxError(OSError):
    """A confinement layer could not be applied (``errno`` says why when the kernel said no)."""


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)  # the libc the interpreter is already linked with
    except OSError:  # pragma: no cover - a static interpreter
        name = ctypes.util.find_library("c")
        return ctypes.CDLL(name, use_errno=True) if name else None


libc = _load_libc()
if libc is not None:
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int

_MACHINE = platform.machine().lower()
#: ``"x86_64"``, ``"aarch64"`` or ``None`` (an architecture whose syscall numbers we do not carry).
ARCH: str | None = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(_MACHINE) \
    if sys.platform.startswith("linux") and sys.maxsize > 2**32 else None

#: ``seccomp_data.arch`` for the native ABI (linux/audit.h: EM_X86_64 / EM_AARCH64 | 64BIT | LE).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

# Syscall numbers (x86_64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64: asm-generic/unistd.h).
# A name missing from one table does not exist there (aarch64 has no fork, vfork, mknod, iopl...).
_X86_64 = {
    "ioctl": 16, "mmap": 9, "shmget": 29, "shmat": 30, "shmctl": 31, "socket": 41, "connect": 42,
    "accept": 43, "bind": 49, "listen": 50, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58,
    "execve": 59, "kill": 62, "semget": 64, "semop": 65, "semctl": 66, "msgget": 68, "msgsnd": 69,
    "msgrcv": 70, "msgctl": 71, "ptrace": 101, "syslog": 103, "capget": 125, "capset": 126, "rt_sigqueueinfo": 129,
    "mknod": 133, "uselib": 134, "vhangup": 153, "modify_ldt": 154, "pivot_root": 155, "_sysctl": 156, "adjtimex": 159,
    "setrlimit": 160, "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166,
    "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172,
    "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179, "tkill": 200,
    "lookup_dcookie": 212, "semtimedop": 220, "clock_settime": 227, "tgkill": 234, "mq_open": 240,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "migrate_pages": 256,
    "mknodat": 259, "unshare": 272, "move_pages": 279, "accept4": 288, "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298, "fanotify_init": 300, "prlimit64": 302, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "seccomp": 317, "memfd_create": 319,
    "kexec_file_load": 320, "bpf": 321, "execveat": 322, "userfaultfd": 323, "pidfd_send_signal": 424,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434,
    "clone3": 435, "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442, "quotactl_fd": 443,
    "landlock_create_ruleset": 444, "landlock_add_rule": 445, "landlock_restrict_self": 446,
    "memfd_secret": 447,
    "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94, "utime": 132, "setxattr": 188,
    "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
    "utimes": 235, "fchownat": 260, "futimesat": 261, "fchmodat": 268, "utimensat": 280, "fchmodat2": 452,
    "setxattrat": 463, "removexattrat": 466,
}
_AARCH64 = {
    "lookup_dcookie": 18, "ioctl": 29, "mknodat": 33, "umount2": 39, "mount": 40, "pivot_root": 41,
    "chroot": 51, "vhangup": 58, "quotactl": 60, "acct": 89, "capget": 90, "capset": 91, "unshare": 97,
    "kexec_load": 104, "init_module": 105, "delete_module": 106, "clock_settime": 112, "syslog": 116,
    "ptrace": 117, "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "reboot": 142,
    "sethostname": 161, "setdomainname": 162, "setrlimit": 164, "settimeofday": 170, "adjtimex": 171,
    "mq_open": 180, "msgget": 186, "msgctl": 187, "msgrcv": 188, "msgsnd": 189, "semget": 190,
    "semctl": 191, "semtimedop": 192, "semop": 193, "shmget": 194, "shmctl": 195, "shmat": 196,
    "socket": 198, "socketpair": 199, "bind": 200, "listen": 201, "accept": 202, "connect": 203,
    "add_key": 217, "request_key": 218, "keyctl": 219, "clone": 220, "execve": 221, "mmap": 222,
    "swapon": 224, "swapoff": 225, "migrate_pages": 238, "move_pages": 239, "rt_tgsigqueueinfo": 240,
    "perf_event_open": 241, "accept4": 242, "prlimit64": 261, "fanotify_init": 262,
    "name_to_handle_at": 264, "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268,
    "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "finit_module": 273, "seccomp": 277,
    "memfd_create": 279, "bpf": 280, "execveat": 281, "userfaultfd": 282, "kexec_file_load": 294,
    "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442,
    "quotactl_fd": 443, "landlock_create_ruleset": 444, "landlock_add_rule": 445,
    "landlock_restrict_self": 446, "memfd_secret": 447,
    "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14, "lremovexattr": 15, "fremovexattr": 16,
    "fchmod": 52, "fchmodat": 53, "fchownat": 54, "fchown": 55, "utimensat": 88, "fchmodat2": 452,
    "setxattrat": 463, "removexattrat": 466,
}
#: The syscall numbers of this machine's native ABI (empty where :data:`ARCH` is ``None``).
NR: dict[str, int] = {"x86_64": _X86_64, "aarch64": _AARCH64}.get(ARCH or "", {})
TABLES = {"x86_64": _X86_64, "aarch64": _AARCH64}


def syscall(name: str, *args: object) -> int:
    """Call syscall ``name`` with ``args`` (ints are passed as C longs, other ctypes objects as they are);
    raise :class:`SandboxError` on -1."""
    if libc is None or name not in NR:
        raise SandboxError(0, f"{name}: not available on {ARCH or _MACHINE}")
    c_args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    return check(int(libc.syscall(ctypes.c_long(NR[name]), *c_args)), name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(2)``; raise :class:`SandboxError` on -1."""
    if libc is None:
        raise SandboxError(0, "prctl: no libc")
    ctypes.set_errno(0)
    res = libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4),
                     ctypes.c_ulong(arg5))
    return check(int(res), f"prctl({option})")


def check(result: int, what: str) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")
    return result


def thread_count() -> int:
    """Threads of this process right now (``/proc/self/task``)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no procfs: say "unknown" as "more than one", the safe answer for callers
        return 2
