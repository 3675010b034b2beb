"""Memory: a cgroup v2 ``memory.max`` per worker, where the host has a cgroup it may write.

A cgroup counts what rlimits cannot: page cache the worker fills, tmpfs and shared memory, kernel
memory of its threads and sockets. At ``memory.max`` the kernel reclaims, then OOM-kills inside
the cgroup only (``memory.oom.group`` kills the whole worker), and ``memory.events`` tells the host
it happened. It needs a *delegated* cgroup v2 subtree: the memory controller enabled on this
process's cgroup v2 hierarchy, a directory the host may create children in, and (cgroup v2's
"no internal processes" rule) a parent with no processes of its own, for instance a systemd unit
with ``Delegate=yes`` whose host process lives in a leaf next to its workers.

The parent creates a :class:`MemoryCgroup`, moves the worker into it (``add``), reads
``oom_kills`` when the worker dies, and removes it. :func:`delegated` finds where that is
possible and :func:`reason` says why not.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from wasinn.sandbox._sys import SandboxError

__all__ = ["MemoryCgroup", "delegated", "reason", "v2_mount"]


def v2_mount() -> str | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` on a pure v2 system)."""
    try:
        with open("/proc/self/mountinfo") as info:
            for line in info:
                pre, _, post = line.partition(" - ")
                if post.split(" ", 1)[0] == "cgroup2":
                    return pre.split()[4]
    except OSError:
        pass
    return None


def _own_v2_path() -> str | None:
    try:
        with open("/proc/self/cgroup") as cg:
            for line in cg:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _controllers(directory: str) -> set[str]:
    try:
        with open(os.path.join(directory, "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


def _check(parent: str | None) -> tuple[str | None, str]:
    mount = v2_mount()
    if mount is None:
        return None, "cgroup v2: not mounted"
    if parent is None:
        own = _own_v2_path()
        if own is None:
            return None, "cgroup v2: this process is not in the v2 hierarchy"
        parent = os.path.normpath(os.path.join(mount, own.lstrip("/")))
    if "memory" not in _controllers(parent):
        where = "bound to a cgroup v1 hierarchy" if os.path.isdir("/sys/fs/cgroup/memory") else "not enabled"
        return None, f"cgroup v2: no memory controller at {parent} ({where})"
    if not os.access(parent, os.W_OK) or not os.access(os.path.join(parent, "cgroup.subtree_control"), os.W_OK):
        return None, f"cgroup v2: {parent} is not writable by this user (not delegated)"
    try:
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            enabled = set(f.read().split())
    except OSError as e:
        return None, f"cgroup v2: {e.strerror}"
    if "memory" not in enabled:
        try:
            with open(os.path.join(parent, "cgroup.procs")) as f:
                busy = bool(f.read().strip())
        except OSError:
            busy = True
        if busy:
            return None, (f"cgroup v2: {parent} holds processes, so its children cannot get the memory "
                          "controller (move the host into a leaf cgroup first)")
    return parent, f"cgroup v2 memory.max under {parent}"


def delegated(parent: str | None = None) -> str | None:
    """A cgroup v2 directory where :class:`MemoryCgroup` can create workers' cgroups, or ``None``.

    ``parent`` defaults to this process's own cgroup. Nothing is written.
    """
    return _check(parent)[0]


def reason(parent: str | None = None) -> str:
    """Why :func:`delegated` says what it says, in words for ``wasinn explain``."""
    return _check(parent)[1]


@dataclass
class MemoryCgroup:
    """A worker's cgroup: ``memory.max`` = ``max_bytes``, no swap, the whole group killed on OOM."""

    path: str

    @classmethod
    def create(cls, parent: str, name: str, max_bytes: int) -> MemoryCgroup:
        if os.sep in name or name in ("", ".", ".."):
            raise ValueError(f"bad cgroup name {name!r}")
        ctl = os.path.join(parent, "cgroup.subtree_control")
        with open(ctl) as f:
            if "memory" not in f.read().split():
                with open(ctl, "w") as w:
                    w.write("+memory")
        path = os.path.join(parent, name)
        os.mkdir(path)
        group = cls(path)
        try:
            group._write("memory.max", str(max_bytes))
            group._write("memory.oom.group", "1")
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                group._write("memory.swap.max", "0")
        except OSError:
            group.remove()
            raise
        return group

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def add(self, pid: int) -> None:
        """Move process ``pid`` (the worker, before it touches the model) into this cgroup."""
        self._write("cgroup.procs", str(pid))

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for hitting ``memory.max``."""
        try:
            with open(os.path.join(self.path, "memory.events")) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            pass
        return 0

    def peak(self) -> int | None:
        """The cgroup's peak memory in bytes (``memory.peak``, Linux 5.19+)."""
        try:
            with open(os.path.join(self.path, "memory.peak")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Remove the cgroup (its processes must have exited)."""
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise SandboxError(errno.EBUSY, f"cgroup {self.path} still has processes") from e
            raise
