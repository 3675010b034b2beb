"""Files: Landlock, through its three system calls (no libseccomp, no PyPI ``landlock``).

:func:`restrict_files` makes every path on the machine unreadable and unwritable for the calling
process except the directories and files it is given, which stay *readable* (files) and *listable*
(directories); nothing is writable (but ``/dev/null``), creatable, removable, renamable or
executable anywhere. On ABI 4+
it also denies binding and connecting TCP sockets, and on ABI 6+ it scopes signals and abstract
UNIX sockets to the process's own Landlock domain (so a worker cannot signal its host).

Each ABI version handles more rights; a right the kernel does not know is simply not restricted, so
what a ruleset denies is reported back (:class:`LandlockResult`) and shown by :func:`abi_reason`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from wasinn.sandbox._sys import NR, SandboxError, prctl, syscall, thread_count

__all__ = [
    "FS_RIGHTS",
    "KNOWN_ABI",
    "LandlockResult",
    "abi",
    "abi_reason",
    "fs_rights",
    "restrict_files",
    "runtime_read_paths",
]

# include/uapi/linux/landlock.h
_FS = {
    "execute": 1 << 0, "write_file": 1 << 1, "read_file": 1 << 2, "read_dir": 1 << 3, "remove_dir": 1 << 4,
    "remove_file": 1 << 5, "make_char": 1 << 6, "make_dir": 1 << 7, "make_reg": 1 << 8, "make_sock": 1 << 9,
    "make_fifo": 1 << 10, "make_block": 1 << 11, "make_sym": 1 << 12,
    "refer": 1 << 13,  # ABI 2
    "truncate": 1 << 14,  # ABI 3
    "ioctl_dev": 1 << 15,  # ABI 5
}
#: The filesystem rights, by name, that this module knows.
FS_RIGHTS = dict(_FS)
_FIRST_ABI = {"refer": 2, "truncate": 3, "ioctl_dev": 5}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
#: The newest ABI whose rights this module knows; a newer kernel is used at this level (its new
#: rights are then not restricted, which :func:`abi_reason` says).
KNOWN_ABI = 7
# Rights that make sense on a file (a rule on a file with any other right is EINVAL).
_FILE_RIGHTS = _FS["execute"] | _FS["write_file"] | _FS["read_file"] | _FS["truncate"] | _FS["ioctl_dev"]
_READ = _FS["read_file"] | _FS["read_dir"]


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi() -> int:
    """The Landlock ABI version of the running kernel; 0 where Landlock is missing or disabled."""
    if "landlock_create_ruleset" not in NR:
        return 0
    try:
        return syscall("landlock_create_ruleset", None, 0, _CREATE_RULESET_VERSION)
    except SandboxError:
        return 0


def abi_reason() -> str:
    """Why :func:`abi` is what it is, in words for ``wasinn explain``."""
    if "landlock_create_ruleset" not in NR:
        return "Landlock: no syscall numbers for this platform"
    try:
        version = syscall("landlock_create_ruleset", None, 0, _CREATE_RULESET_VERSION)
    except SandboxError as e:
        if e.errno == errno.ENOSYS:
            return "Landlock: the kernel has no Landlock (Linux 5.13+ built with CONFIG_SECURITY_LANDLOCK)"
        if e.errno == errno.EOPNOTSUPP:
            return "Landlock: built into the kernel but not enabled (add landlock to the lsm= boot parameter)"
        return f"Landlock: {e.strerror}"
    extra = []
    if version < 4:
        extra.append("TCP not restricted (ABI 4)")
    if version < 6:
        extra.append("signals not scoped (ABI 6)")
    if version > KNOWN_ABI:
        extra.append(f"rights newer than ABI {KNOWN_ABI} not used")
    return f"Landlock ABI {version}" + (f" ({', '.join(extra)})" if extra else "")


def fs_rights(version: int) -> int:
    """The filesystem rights ABI ``version`` handles (all denied unless a rule grants them)."""
    mask = 0
    for name, bit in _FS.items():
        if version >= _FIRST_ABI.get(name, 1):
            mask |= bit
    return mask if version >= 1 else 0


@dataclass(frozen=True)
class LandlockResult:
    """What :func:`restrict_files` enforced: the ABI used, the rights masks and the rules."""

    abi: int
    handled_fs: int
    handled_net: int
    scoped: int
    #: The paths readable from now on.
    allowed: tuple[str, ...]
    #: Paths asked for that do not exist (nothing to allow).
    missing: tuple[str, ...] = field(default=())


def restrict_files(read_only: Iterable[str | os.PathLike[str]], *, network: bool = True,
                   scope: bool = True, devnull: bool = True,
                   writable: Iterable[str | os.PathLike[str]] = ()) -> LandlockResult:
    """Confine the calling process to reading ``read_only`` (directories recursively); no writes anywhere
    but in the folders ``writable`` names (a probe's scratch folder: files may be created, written,
    truncated and removed there, nothing else: no folders, links, sockets or devices).

    The one exception is ``/dev/null`` (unless ``devnull`` is false), which stays writable: it
    stores nothing, and runtimes open it to silence their logs (llama-cpp-python does on import).

    Also sets ``PR_SET_NO_NEW_PRIVS`` (Landlock needs it without ``CAP_SYS_ADMIN``). ``network``
    denies TCP bind/connect (ABI 4+), ``scope`` scopes signals and abstract UNIX sockets (ABI 6+).

    Landlock confines the calling thread and the threads and processes it starts *afterwards*:
    a thread that already runs stays free. So this refuses (``EBUSY``) when the process has more
    than one thread; call it before importing a runtime that starts a thread pool (numpy's BLAS
    does), or in a child just forked from a template (a fork child has one thread).

    Files opened before the call stay usable (the worker's control socket, a model file descriptor).
    Raises :class:`SandboxError` when Landlock is unavailable or a syscall fails: the process is
    then *not* confined (unless ``landlock_restrict_self`` itself succeeded, which is the last step).
    """
    version = abi()
    if version < 1:
        raise SandboxError(errno.ENOSYS, abi_reason())
    if thread_count() > 1:
        raise SandboxError(errno.EBUSY, "Landlock confines only the calling thread: this process already has "
                                        f"{thread_count()} threads (confine before starting any)")
    used = min(version, KNOWN_ABI)
    attr = _RulesetAttr(fs_rights(used), _NET_BIND_TCP | _NET_CONNECT_TCP if network and used >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if scope and used >= 6 else 0)
    # Older kernels reject a struct larger than they know when its extra fields are non-zero; pass
    # the size of the version's struct.
    size = 8 if used < 4 else 16 if used < 6 else 24
    ruleset = syscall("landlock_create_ruleset", ctypes.byref(attr), size, 0)
    allowed: list[str] = []
    missing: list[str] = []
    try:
        for path in dict.fromkeys(os.fspath(p) for p in read_only):  # keep order, drop repeats
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                missing.append(path)
                continue
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                rule = _PathBeneathAttr(_READ if is_dir else _READ & _FILE_RIGHTS, fd)
                syscall("landlock_add_rule", ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
            finally:
                os.close(fd)
            allowed.append(path)
        for path in dict.fromkeys(os.fspath(p) for p in writable):
            fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                scratch = _PathBeneathAttr((_READ | _FS["write_file"] | _FS["make_reg"] | _FS["remove_file"]
                                            | _FS["truncate"]) & attr.handled_access_fs, fd)
                syscall("landlock_add_rule", ruleset, _RULE_PATH_BENEATH, ctypes.byref(scratch), 0)
            finally:
                os.close(fd)
            allowed.append(path)
        if devnull:
            fd = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
            try:
                if not stat.S_ISCHR(os.fstat(fd).st_mode):  # a regular file there would be storage
                    raise SandboxError(errno.EINVAL, "/dev/null is not a character device")
                sink = _PathBeneathAttr((_READ | _FS["write_file"] | _FS["truncate"]) & _FILE_RIGHTS
                                        & attr.handled_access_fs, fd)
                syscall("landlock_add_rule", ruleset, _RULE_PATH_BENEATH, ctypes.byref(sink), 0)
            finally:
                os.close(fd)
        prctl(_PR_SET_NO_NEW_PRIVS, 1)
        syscall("landlock_restrict_self", ruleset, 0)
    finally:
        os.close(ruleset)
    return LandlockResult(used, attr.handled_access_fs, attr.handled_access_net, attr.scoped, tuple(allowed),
                          tuple(missing))


_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache")
# What CPU runtimes read to size their thread pools (sysconf, cpuinfo, OpenVINO's and
# onnxruntime's topology probes); none of it is private.
_SYSTEM_INFO = ("/sys/devices/system/cpu", "/sys/devices/system/node", "/proc/cpuinfo", "/proc/meminfo",
                "/proc/self")


def runtime_read_paths(*extra: str | os.PathLike[str], cwd: bool = False) -> list[str]:
    """What a Python worker needs to read after :func:`restrict_files`: the interpreter's prefixes,
    every ``sys.path`` entry, the directories of shared libraries already loaded (a runtime
    ``dlopen``\\ s more of its own later), the system library directories, the dynamic loader's
    cache, CPU topology, the process's own ``/proc/<pid>``, then ``extra`` (the model's file).

    The current directory and the script's directory (``sys.path[0]``, unless ``python -P``) are
    left out unless ``cwd``: a worker imports from its environment, not from where it was started.
    ``/proc/self`` resolves to this process when :func:`restrict_files` opens it: call that in the
    worker itself.
    """
    here = os.getcwd()
    paths = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    entries = sys.path if cwd or getattr(sys.flags, "safe_path", False) else sys.path[1:]
    for entry in entries:
        if entry and (cwd or os.path.abspath(entry) != here) and os.path.exists(entry):
            paths.append(os.path.abspath(entry))
    paths.extend(_loaded_library_dirs())
    paths.extend(_LIB_DIRS)
    paths.extend(_SYSTEM_INFO)
    paths.extend(os.fspath(p) for p in extra)
    return list(dict.fromkeys(paths))


def _loaded_library_dirs() -> list[str]:
    dirs: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    dirs.append(os.path.dirname(parts[5].rstrip("\n")))
    except OSError:
        pass
    return list(dict.fromkeys(dirs))
