"""Operating-system confinement for a worker process that runs an untrusted model (issue 28).

A model file is a program for its runtime; a hostile one that finds a bug in a parser runs code in
the process that loads it. The worker that loads it confines *itself*, with the layers below,
after it has what it needs (its control socket, the model's file descriptor, its runtime imported)
and before it touches a byte of the model. Each layer is a function of this package, each can be
probed without being applied (:func:`probe`, for ``wasinn explain`` and a ``strict`` mode), and
:func:`confine` applies them in the right order. Only the standard library is used (ctypes and
raw system calls, x86_64 and aarch64 Linux); nothing here imports the rest of wasinn.

**Privileges** (:mod:`~wasinn.sandbox.privileges`): ``PR_SET_NO_NEW_PRIVS`` and, for a worker
started as root, every capability dropped. *Stops*: a root worker undoing the other layers
(raising its rlimits, bypassing file permissions, signalling anyone). *Does not*: change the uid.

**Memory** (:mod:`~wasinn.sandbox.rlimits`, :mod:`~wasinn.sandbox.cgroup`): ``RLIMIT_DATA`` caps the
private writable memory (heap, anonymous mappings, thread stacks) when it is *mapped*, so an
allocation past the cap fails at once instead of reaching the OOM killer: a 3 GiB tensor under a
512 MiB cap is a ``MemoryError`` in numpy, ``Fail`` from onnxruntime (a ``ConstantOfShape``),
``RuntimeError`` from OpenVINO, ``ValueError`` ("Failed to create llama_context") from
llama-cpp-python, and the worker lives on. It is usable with every runtime measured here on any
core count, because it ignores address-space reservations and read-only file mappings.
``RLIMIT_AS`` also counts those (a 64 MiB malloc arena per thread, the mmap'd GGUF, a GPU driver's
reservations), so it is only a loose second backstop. The smallest caps under which each runtime
imported, loaded and ran a small model here (2 vCPUs; then with 16 runtime threads):

=============  ============  ==========  ==========================
runtime        RLIMIT_DATA   RLIMIT_AS   16 threads: DATA / AS
=============  ============  ==========  ==========================
numpy          128 MiB       176 MiB
onnxruntime    128 MiB       220 MiB     232 / 580 MiB
OpenVINO       252 MiB       556 MiB     252 / 556 MiB
LiteRT         100 MiB       172 MiB     212 / 288 MiB
llama.cpp      112 MiB       176 MiB     112 / 176 MiB
=============  ============  ==========  ==========================
 A cgroup v2
``memory.max`` counts more (page cache, kernel memory) but needs a delegated cgroup, which
:func:`probe` looks for. *Stops*: a shape or a KV cache that allocates gigabytes. *Does not*: bound
page cache or kernel memory (threads, pipes) without a cgroup; ``RLIMIT_CORE`` 0 also keeps a
crashing worker from writing a core file.

**Files** (:mod:`~wasinn.sandbox.landlock`): Landlock; only the listed paths are readable
(interpreter, ``sys.path``, loaded libraries' directories, CPU topology, the model file), nothing
is writable, creatable, removable or executable anywhere; TCP bind/connect denied (ABI 4+);
signals and abstract UNIX sockets scoped to the worker (ABI 6+). *Stops*: reading ``/etc``,
``$HOME``, the host's other models, ``/proc/<host pid>``; writing anything (``/tmp``, the current
directory, ``/dev/shm``, the model file itself) but ``/dev/null``.
*Does not*: restrict file descriptors opened before it (the host must pass only what the worker
needs), confine threads that were already running (it refuses to run then), restrict ``stat``
(file metadata) of paths outside the list. ``RLIMIT_FSIZE`` 0 backs it up: no file can grow.

**Syscalls** (:mod:`~wasinn.sandbox.seccomp`): a seccomp-BPF filter on every thread. *Stops*: any
socket (every address family, so no network even without Landlock's TCP rights), ``execve``,
``fork``/``vfork``/``posix_spawn`` (threads keep working), signals to other processes, shared
anonymous memory, ``memfd``, SysV IPC, and kills the worker for ``ptrace``, ``io_uring``, ``bpf``,
namespaces, mounts, keyrings and the like. *Does not*: stop a worker that runs as the host's uid
from changing the host's scheduling (``sched_setaffinity``, ``setpriority``); stop it using
sockets it inherited (the host must send it only its control socket, and never accept a file
descriptor from it).

**CPU** (:mod:`~wasinn.sandbox.rlimits`): ``RLIMIT_CPU`` as the worker's lifetime cap (``SIGXCPU``,
then ``SIGKILL`` a second later) and :func:`~wasinn.sandbox.rlimits.cpu_budget` to move the soft
limit before each call. *Stops*: a model that spins. *Does not*: stop one that blocks without
using CPU, nor act faster than whole seconds: the host keeps a wall-clock deadline per call and
kills the worker past it.

Order and threads: Landlock and dropping capabilities act on the calling thread only, so a worker
confines itself while it has one thread: in a child forked from a template process (a fork child
has one thread, whatever its parent had), or before importing numpy or a runtime in a fresh
interpreter. The seccomp filter is synchronised to all threads.

What a worker needs besides (measured with the runtimes of this repository's tox envs):

- import the runtime *before* confining (the template does): ``import openvino`` reads a telemetry
  client id in ``~/intel`` and fails when that is unreadable, unless ``HOME`` points nowhere; a
  worker's environment should be minimal anyway (no ``HOME``, no credentials);
- stdin/stdout on ``/dev/null`` or a pipe, only the control socket and the model's descriptor
  inherited, shared memory as sealed ``memfd`` files (``F_SEAL_GROW``/``SHRINK``) sent by the host;
- a wall-clock deadline in the host: OpenBLAS (numpy's BLAS), short of memory while it starts its
  threads, calls ``exit()`` holding a lock and then deadlocks in its own exit handler. The worker
  hangs rather than fails; ``OPENBLAS_NUM_THREADS=1`` in the worker avoids that code path.

Costs on the development VM (2 vCPUs, Linux 6.18, shared and loaded, so upper bounds): confining a
freshly forked worker takes about 1.6 ms in all (privileges ~0.7 ms, Landlock with 20 paths
~0.35 ms, seccomp ~0.5 ms, each rlimit ~10 µs), most of it copy-on-write faults after the fork. The
seccomp filter (269 instructions on x86_64) adds nothing measurable to calls the kernel's allow
cache answers and well under a microsecond to those it inspects (``mmap``). A worker forked from
a template that imported onnxruntime is ready in ~2 ms with ~1 MiB of its own memory; spawning an
interpreter that imports it takes ~300 ms and ~50 MiB.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from wasinn.sandbox import cgroup, landlock, privileges, rlimits, seccomp
from wasinn.sandbox._sys import ARCH, SandboxError, prctl
from wasinn.sandbox.landlock import LandlockResult, runtime_read_paths
from wasinn.sandbox.rlimits import MemoryLimit

__all__ = [
    "LAYERS",
    "Applied",
    "Confinement",
    "Layer",
    "Probe",
    "SandboxError",
    "confine",
    "probe",
    "runtime_read_paths",
]

#: The layers :func:`probe` reports, in the order :func:`confine` applies them.
LAYERS = ("privileges", "memory", "cpu", "files", "network", "processes", "cgroup")

_STOPS = {
    "privileges": "root's capabilities, setuid",
    "memory": "allocations past the cap",
    "cpu": "a model that spins",
    "files": "reading outside the allowed paths, any write",
    "network": "sockets of any kind",
    "processes": "exec, fork, signals to other processes",
    "cgroup": "page cache, shared and kernel memory past the cap",
}


@dataclass(frozen=True)
class Layer:
    """One confinement layer on this machine: whether it works, and how or why not."""

    name: str
    available: bool
    #: What is used (``"Landlock ABI 7"``) or why it cannot be (``"cgroup v2: not mounted"``).
    how: str
    #: What it stops, in a few words.
    stops: str

    def line(self) -> str:
        return f"{self.name}: {'yes' if self.available else 'NO'} - {self.how}"


@dataclass(frozen=True)
class Probe:
    """What confinement this machine offers (:func:`probe`)."""

    system: str
    arch: str | None
    landlock_abi: int
    layers: tuple[Layer, ...]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def missing(self, required: Iterable[str] = LAYERS) -> list[Layer]:
        """The ``required`` layers that are not available (``strict`` refuses to run a worker then)."""
        return [self.layer(name) for name in required if not self.layer(name).available]

    def lines(self) -> list[str]:
        return [f"sandbox on {self.system} ({self.arch or 'unsupported arch'}):"] + \
            ["  " + layer.line() for layer in self.layers]


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = platform.release().split(".")
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= (major, minor)
    except (IndexError, ValueError):
        return False


def probe() -> Probe:
    """Find out which layers work here, without applying any. Cheap (a few syscalls and reads)."""
    linux = platform.system() == "Linux"
    version = landlock.abi()
    seccomp_how = seccomp.reason()
    seccomp_ok = seccomp.available()
    try:
        prctl(39)  # PR_GET_NO_NEW_PRIVS: prctl works
        priv = (True, "no_new_privs" + (", drop all capabilities" if privileges.capabilities() else ""))
    except SandboxError as e:
        priv = (False, f"prctl: {e.strerror}")
    if not linux:
        memory = (False, "rlimits: not Linux")
    elif not _kernel_at_least(4, 7):
        memory = (False, f"RLIMIT_DATA counts mmap only from Linux 4.7 (this is {platform.release()})")
    else:
        hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
        memory = (True, "RLIMIT_DATA" + ("" if hard == resource.RLIM_INFINITY else f" (hard limit now {hard})"))
    network_how = seccomp_how if seccomp_ok else (
        f"{seccomp_how}; Landlock denies TCP only" if version >= 4 else seccomp_how)
    layers = (
        Layer("privileges", priv[0], priv[1], _STOPS["privileges"]),
        Layer("memory", memory[0], memory[1], _STOPS["memory"]),
        Layer("cpu", linux, "RLIMIT_CPU (whole seconds; the host keeps a wall-clock deadline)" if linux
              else "rlimits: not Linux", _STOPS["cpu"]),
        Layer("files", version >= 1, landlock.abi_reason(), _STOPS["files"]),
        Layer("network", seccomp_ok, network_how, _STOPS["network"]),
        Layer("processes", seccomp_ok, seccomp_how, _STOPS["processes"]),
        Layer("cgroup", cgroup.delegated() is not None, cgroup.reason(), _STOPS["cgroup"]),
    )
    return Probe(f"{platform.system()} {platform.release()}", ARCH, version, layers)


@dataclass(frozen=True)
class Confinement:
    """What :func:`confine` applies. ``None``/``False`` leaves a layer out."""

    #: Memory cap in bytes, and which rlimit carries it (``"data"``: see the module docs).
    memory_bytes: int | None = None
    memory_limit: MemoryLimit = "data"
    #: Lifetime CPU cap in seconds (``SIGXCPU``, then ``SIGKILL`` a second later).
    cpu_seconds: int | None = None
    #: Landlock: the paths left readable (``None``: :func:`runtime_read_paths`).
    files: bool = True
    read_only: Sequence[str] | None = None
    #: Folders where files may be created, written and removed (a probe's scratch folder; a worker
    #: has none). Files there may grow to ``memory_bytes`` (``RLIMIT_FSIZE``; 0 without this).
    writable: Sequence[str] = ()
    #: The seccomp filter (no network, no exec, no new process).
    syscalls: bool = True
    #: no_new_privs and no capabilities; RLIMIT_CORE 0 and RLIMIT_FSIZE 0.
    privileges: bool = True
    #: Raise :class:`SandboxError` when a requested layer cannot be applied (else skip it and say so).
    strict: bool = True


@dataclass
class Applied:
    """What :func:`confine` did: the cost of each layer in microseconds, and what it skipped and why."""

    cost_us: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    landlock: LandlockResult | None = None


#: Whether this process has called :func:`confine` (it is a worker, or a probe).
_confined = False


def confined() -> bool:
    """Whether this process confined itself (:func:`confine`): a worker of :mod:`wasinn.worker`."""
    return _confined


def confine(spec: Confinement) -> Applied:
    """Apply ``spec`` to the calling process: privileges, memory, CPU, files, then syscalls.

    Irreversible. Call in the worker once it holds what it needs and, for Landlock, while it has
    a single thread. With ``spec.strict`` (the default) any layer that fails raises
    :class:`SandboxError` and the caller must exit: layers applied before it stay applied.
    """
    global _confined
    _confined = True
    done = Applied()

    def step(name: str, action: Callable[[], object]) -> None:
        start = time.perf_counter_ns()
        try:
            result = action()
        except SandboxError as e:
            if spec.strict:
                raise
            done.skipped[name] = str(e)
            return
        done.cost_us[name] = (time.perf_counter_ns() - start) / 1000
        if isinstance(result, LandlockResult):
            done.landlock = result

    if spec.privileges:
        def _privileges() -> None:
            rlimits.no_core_dumps()
            privileges.drop_privileges()
        step("privileges", _privileges)
    if spec.memory_bytes is not None:
        nbytes, kind = spec.memory_bytes, spec.memory_limit
        step("memory", lambda: rlimits.limit_memory(nbytes, kind))
    if spec.cpu_seconds is not None:
        seconds = spec.cpu_seconds
        step("cpu", lambda: rlimits.limit_cpu(seconds))
    if spec.files:
        paths = list(spec.read_only) if spec.read_only is not None else runtime_read_paths()

        writable = list(spec.writable)

        def _files() -> LandlockResult:
            # First: it still holds where Landlock cannot apply.
            if writable:
                rlimits.limit_file_size(spec.memory_bytes or 1 << 30)
            else:
                rlimits.no_file_growth()
            return landlock.restrict_files(paths, writable=writable)
        step("files", _files)
    if spec.syscalls:
        step("syscalls", seccomp.install)
    return done
