"""No privileges: ``PR_SET_NO_NEW_PRIVS`` and, for a worker started as root, no capabilities.

A worker that runs as root (a container, a test machine) could otherwise raise its own rlimits
back (``CAP_SYS_RESOURCE``), read any file outside Landlock's reach, signal any process, mount,
load modules... Dropping every capability (effective, permitted, inheritable, ambient and the
bounding set) leaves it with the uid 0 but none of root's powers; Landlock and seccomp still
apply on top. The uid itself is not changed (that needs a user the host knows about).
"""

from __future__ import annotations

import ctypes
import errno

from wasinn.sandbox._sys import SandboxError, prctl, syscall, thread_count

__all__ = ["capabilities", "drop_privileges", "no_new_privs"]

_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def no_new_privs() -> None:
    """``PR_SET_NO_NEW_PRIVS``: no exec can ever grant privileges (setuid bits, file capabilities)."""
    prctl(_PR_SET_NO_NEW_PRIVS, 1)


def capabilities() -> int:
    """The calling thread's effective capabilities, as a mask (``capget``)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    try:
        syscall("capget", ctypes.byref(header), ctypes.byref(data))
    except SandboxError:
        return 0
    return int(data[0].effective) | int(data[1].effective) << 32


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def drop_privileges() -> None:
    """Set no_new_privs and drop every capability of the process (a no-op for a process that has none).

    Call in a worker before :func:`~wasinn.sandbox.landlock.restrict_files` and
    :func:`~wasinn.sandbox.seccomp.install` (dropping the bounding set needs ``CAP_SETPCAP``, which
    goes last). Threads started earlier keep their capabilities: call it while single-threaded.
    """
    no_new_privs()
    if capabilities() == 0:
        return
    if thread_count() > 1:  # capabilities are per thread: the others would keep theirs
        raise SandboxError(errno.EBUSY, "cannot drop capabilities of a process with several threads")
    for cap in range(_last_cap() + 1):
        try:
            prctl(_PR_CAPBSET_DROP, cap)
        except SandboxError as e:
            if e.errno != errno.EINVAL:  # EINVAL: a capability this kernel does not have
                raise
    prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # all zero: no effective, permitted or inheritable capability
    syscall("capset", ctypes.byref(header), ctypes.byref(data))
    if capabilities() != 0:
        raise SandboxError(errno.EPERM, "capabilities still present after capset")
