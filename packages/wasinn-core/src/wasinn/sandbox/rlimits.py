"""Memory and CPU caps with ``setrlimit``, and the small limits every worker should have.

Memory: ``RLIMIT_DATA`` (Linux 4.7+) caps the process's *private writable* memory: the heap, every
``malloc``/``mmap`` of anonymous or copy-on-write memory, thread stacks. It is checked when memory is
mapped, not when it is touched, so an allocation past the cap fails at once (``ENOMEM``:
``MemoryError`` in Python, ``std::bad_alloc`` in C++, an abort or an error from a C runtime)
instead of waking the OOM killer. It does not count read-only file mappings (a GGUF that
llama.cpp ``mmap``\\ s) nor reserved ``PROT_NONE`` ranges (glibc's 64 MiB per-thread malloc arenas,
allocators that reserve address space), so the cap means what it says on any core count. It
does not count ``MAP_SHARED`` anonymous memory, ``memfd`` or SysV shared memory either: the
worker's seccomp filter refuses those.

``RLIMIT_AS`` caps the *address space*: everything above plus reservations and file mappings.
Its meaning depends on the runtime and the machine (each extra thread reserves a 64 MiB malloc
arena and an 8 MiB stack; a GPU driver reserves many GiB), so it is offered as a second, looser
backstop, not as the cap.

CPU: ``RLIMIT_CPU`` counts the CPU seconds of all threads. At the soft limit the kernel sends
``SIGXCPU`` (which terminates a Python process: CPython leaves it at its default action), then
again each second up to the hard limit, where it sends ``SIGKILL``. :func:`limit_cpu` sets the
lifetime cap of a worker; :func:`cpu_budget` moves the soft limit before each call (the worker may
lower or move its soft limit below the hard one, never raise the hard one without
``CAP_SYS_RESOURCE``, which :func:`~wasinn.sandbox.privileges.drop_privileges` removes). Granularity
is one second of CPU time; a call that blocks without using CPU is not stopped: the host needs its
own wall-clock deadline for that (and SIGKILLs the worker).
"""

from __future__ import annotations

import errno
import math
import os
import resource
from typing import Literal

from wasinn.sandbox._sys import SandboxError

__all__ = ["MemoryLimit", "cpu_budget", "cpu_seconds_of", "cpu_seconds_used", "limit_cpu", "limit_memory",
           "no_core_dumps", "no_file_growth"]

MemoryLimit = Literal["data", "as", "both"]


def _lower(which: int, soft: int, hard: int | None = None) -> None:
    """Set ``which`` to (``soft``, ``hard``), never above the current hard limit."""
    _, cur_hard = resource.getrlimit(which)
    hard = soft if hard is None else hard
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError) as e:
        raise SandboxError(errno.EPERM, f"setrlimit({which}): {e}") from e


def limit_memory(nbytes: int, kind: MemoryLimit = "data") -> None:
    """Cap the process's memory at ``nbytes`` (soft = hard): ``RLIMIT_DATA``, ``RLIMIT_AS`` or both."""
    if nbytes <= 0:
        raise ValueError("memory cap must be positive")
    if kind in ("data", "both"):
        _lower(resource.RLIMIT_DATA, nbytes)
    if kind in ("as", "both"):
        _lower(resource.RLIMIT_AS, nbytes)


def cpu_seconds_used() -> float:
    """CPU seconds used so far by all threads of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds_of(pid: int) -> float:
    """CPU seconds used by process ``pid`` (``/proc/<pid>/stat``): for the host's watchdog of a worker."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def limit_cpu(seconds: int, *, grace: int = 1) -> None:
    """The worker's lifetime CPU cap: ``SIGXCPU`` after ``seconds``, ``SIGKILL`` ``grace`` seconds later."""
    if seconds <= 0 or grace < 1:
        raise ValueError("CPU cap must be positive, grace at least 1 s")
    _lower(resource.RLIMIT_CPU, seconds, seconds + grace)


def cpu_budget(seconds: float) -> None:
    """Allow about ``seconds`` more CPU time from now (rounded up to whole seconds) before
    ``SIGXCPU``, within the hard limit. Call before each ``compute``."""
    used = cpu_seconds_used()
    soft = math.ceil(used + seconds)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError) as e:
        raise SandboxError(errno.EPERM, f"setrlimit(RLIMIT_CPU): {e}") from e


def no_core_dumps() -> None:
    """``RLIMIT_CORE`` 0: a crashing worker writes no core file (gigabytes, and the model in it)."""
    _lower(resource.RLIMIT_CORE, 0)


def limit_file_size(nbytes: int) -> None:
    """``RLIMIT_FSIZE`` at ``nbytes``: no file grows past it (a process with a scratch folder)."""
    _lower(resource.RLIMIT_FSIZE, nbytes)


def no_file_growth() -> None:
    """``RLIMIT_FSIZE`` 0: no regular file can grow (``EFBIG``; CPython ignores ``SIGXFSZ``).
    A backstop where Landlock is missing; pipes and sockets are not files and keep working."""
    _lower(resource.RLIMIT_FSIZE, 0)
