"""Host side: templates, workers, and the proxy backend that presents a worker's graph to the core.

:func:`isolated_backend` wraps a discovered :class:`~wasinn.plugins.Backend` in a proxy of the same
name whose ``hooks`` forward every graph and context hook to a worker process (one per graph); the
core holds the proxy's graphs and contexts exactly as it holds a backend's own (``LoadedGraph``,
``ContextEntry``), so nothing in the store's code knows about workers.
"""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import mmap
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from wasinn.enums import ErrorCode, TensorType
from wasinn.errors import WasiNnError
from wasinn.guestlog import GuestLog
from wasinn.hardware import Hardware
from wasinn.hookspecs import BackendInfo, Context, Graph
from wasinn.limits import Limits, MiB
from wasinn.model import ModelDescription
from wasinn.plugins import Backend
from wasinn.sandbox import Confinement
from wasinn.tensor import Tensor, TensorSpec
from wasinn.worker import protocol
from wasinn.worker.template import BOOT

log = logging.getLogger("wasinn.worker")

#: Environment variables a template (and its workers) keep from the host's; nothing else (no
#: ``HOME``, no credentials). Prefixes end with ``_``.
KEEP_ENV = ("LD_LIBRARY_PATH", "LANG", "LC_ALL", "WASINN_", "OMP_", "MKL_", "KMP_", "ORT_", "OV_",
            "CUDA_", "TF_", "GGML_", "LLAMA_")
#: How long a worker that closed its socket may take to exit before it is killed.
EXIT_GRACE_S = 2.0
#: The smallest shared buffer (a page: a zero-sized mapping is not allowed).
MIN_BUFFER = mmap.PAGESIZE
#: Signals a runtime's crash ends a worker with (SIGSYS: the seccomp filter's verdict).
CRASHES = frozenset({signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGSYS,
                     signal.SIGTRAP})
#: Pending inputs (see :meth:`Proxy.set_input`) may fill this much of a worker's input buffer.
PENDING_BYTES = 64 * MiB


def memory_cap(runtime_bytes: int, model_bytes: int) -> int:
    """A worker's (or a probe's) memory cap: ``runtime_bytes`` (``Limits.worker_memory_bytes``) for the
    runtime, plus twice the model's size (the worker's copy of the bytes and the runtime's own)."""
    return runtime_bytes + 2 * model_bytes


def human_bytes(nbytes: int) -> str:
    """A memory cap for a message: ``512 MiB``, ``1.5 GiB``."""
    return f"{nbytes / (1 << 30):.1f} GiB" if nbytes >= 1 << 30 else f"{nbytes // MiB} MiB"


def kill(pidfd: int) -> None:
    """``SIGKILL`` through a pidfd (it reaches this process even after its pid is reaped and reused);
    nothing when the process is gone already."""
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass


def plugin_spec(backend: Backend) -> list[str]:
    """How a template imports the same backend object: ``["module", name]`` for a module plugin,
    ``["class", module, qualname]`` for an instance of a class with a no-argument constructor."""
    plugin = backend.plugin
    if inspect.ismodule(plugin):
        return ["module", plugin.__name__]
    kind = type(plugin)
    # Only an instance of a class that defines the hooks itself can be made again by its name.
    if "<locals>" in kind.__qualname__ or kind.__module__ in ("__main__", "builtins", "types") or \
            not callable(getattr(kind, "load", None)):
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"backend {backend.name} cannot run in a worker: its "
                                                   f"object ({kind.__qualname__}) is not importable")
    return ["class", kind.__module__, kind.__qualname__]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in KEEP_ENV or any(
        k.startswith(p) for p in KEEP_ENV if p.endswith("_"))}
    # OpenBLAS short of memory while starting its threads deadlocks in exit(): one thread.
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.setdefault("LANG", "C.UTF-8")
    return env


class Template:
    """A template process for one backend: imports it once and forks a worker per graph. (A probe
    template, :func:`probe_template`, imports a list of modules instead and forks probes.)"""

    def __init__(self, name: str, boot: dict[str, Any]) -> None:
        self.name = name
        host_end, child_end = protocol.pair()
        stderr = None if os.environ.get("WASINN_WORKER_STDERR") else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", BOOT, json.dumps(sys.path), str(child_end.fileno())],
                pass_fds=(child_end.fileno(),), env=_environment(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr, cwd="/")
        finally:
            child_end.close()
        self.sock = host_end
        self.lock = threading.Lock()
        protocol.send(self.sock, boot)
        answer = self._answer(120.0)
        self.pid = int(answer["pid"])
        self.import_ms = float(answer["import_ms"])
        #: What the runtime's import holds (VmData) before any model: a worker's cap comes on top of it.
        self.baseline = max(0, int(answer.get("data_bytes", 0)))
        log.debug("worker template for %s started (pid %d, imports %.0f ms)", self.name, self.pid, self.import_ms)

    def _answer(self, timeout: float | None) -> Any:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"the worker template of {self.name} does not answer")
        try:
            value = protocol.recv_reply(self.sock)
        except (EOFError, OSError, ValueError) as exc:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"the worker template of {self.name} failed: "
                                                       f"{type(exc).__name__}") from None
        return value[1]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self) -> tuple[int, socket.socket]:
        """A new worker: its pid and the host's end of its socket."""
        host_end, worker_end = protocol.pair()
        try:
            with self.lock:
                protocol.send(self.sock, ("fork",), [worker_end.fileno()])
                pid = int(self._answer(30.0))
        except BaseException:
            host_end.close()
            raise
        finally:
            worker_end.close()
        return pid, host_end

    def reap(self, pid: int) -> int | None:
        """The wait status of a worker that has exited (or been killed), collected by its parent."""
        try:
            with self.lock:
                protocol.send(self.sock, ("reap", pid))
                status = self._answer(30.0)
        except (WasiNnError, OSError):
            return None
        return status if isinstance(status, int) else None

    def close(self) -> None:
        """End the template: it kills and reaps the workers it still has, then exits."""
        try:
            self.sock.close()
        finally:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_templates: dict[tuple[str, ...], Template] = {}
_templates_lock = threading.Lock()
#: One lock per template key: starting one backend's template (hundreds of ms) never holds up a
#: load that needs another's.
_starting: dict[tuple[str, ...], threading.Lock] = {}


def template(backend: Backend) -> Template:
    """The template of ``backend`` (one per backend name and object, per process), started on first use."""
    spec = plugin_spec(backend)
    return _template((backend.name, *spec), backend.name, {"name": backend.name, "plugin": spec})


def probe_template(preload: tuple[str, ...]) -> Template:
    """The template that forks :class:`wasinn.isolation.ChildProbe`'s probes, with the modules
    ``preload`` names already imported (a runtime: hundreds of milliseconds saved per probe)."""
    return _template(("probe", *preload), "probes", {"name": "probes", "plugin": None, "preload": list(preload)})


def _template(key: tuple[str, ...], name: str, boot: dict[str, Any]) -> Template:
    with _templates_lock:
        lock = _starting.setdefault(key, threading.Lock())
    with lock:
        with _templates_lock:
            found = _templates.get(key)
        if found is not None and found.alive:
            return found
        if found is not None:
            found.close()
        made = Template(name, boot)
        with _templates_lock:
            _templates[key] = made
        return made


def prestart(backends: list[Backend]) -> threading.Thread | None:
    """Start the templates of ``backends`` in a background thread, one after the other (a template is
    an interpreter importing a runtime: hundreds of milliseconds that the first isolated ``load``
    would otherwise wait for). A load that needs one meanwhile waits for just that one."""
    keys = {}
    for backend in backends:
        try:
            keys[backend.name] = (backend.name, *plugin_spec(backend))
        except WasiNnError:
            continue  # not importable by a template: its loads say so
    with _templates_lock:
        wanted = [b for b in backends if b.name in keys and keys[b.name] not in _templates]
    if not wanted:
        return None

    def start() -> None:
        for backend in wanted:
            try:
                template(backend)
            except Exception as exc:  # the load that needs it will start it again, and say why
                log.debug("worker template of %s did not start ahead: %s", backend.name, exc)

    thread = threading.Thread(target=start, name="wasinn-worker-prestart", daemon=True)
    thread.start()
    return thread


#: Set at interpreter exit: workers the exit ended are not news.
_exiting = False


@atexit.register
def _close_at_exit() -> None:
    global _exiting
    _exiting = True
    close_templates()


def close_templates() -> None:
    """End every template (and so every worker): at exit, and for tests that count processes."""
    with _templates_lock:
        for made in _templates.values():
            made.close()
        _templates.clear()


@dataclass(frozen=True)
class WorkerOptions:
    """What the host asks of each worker (from :class:`~wasinn.limits.Limits`)."""

    memory_bytes: int = 512 * MiB
    call_seconds: float | None = 300.0
    cpu_seconds: float | None = None
    strict: bool = False

    @staticmethod
    def from_limits(limits: Limits) -> WorkerOptions:
        return WorkerOptions(
            memory_bytes=limits.worker_memory_bytes, call_seconds=limits.worker_call_seconds,
            cpu_seconds=limits.worker_cpu_seconds, strict=limits.strict_isolation)


@dataclass(eq=False)
class WorkerGraph:
    """One worker process serving one graph: the host's end of it."""

    backend: str
    template: Template
    pid: int
    sock: socket.socket
    pidfd: int
    options: WorkerOptions
    cap: int
    max_tensor_bytes: int
    #: One request at a time on the socket (the core does not serialise context creation).
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: Why the worker is gone (``None`` while it serves).
    dead: str | None = None
    dead_code: ErrorCode = ErrorCode.RUNTIME_ERROR
    #: The signal that ended the worker, when one did (and the host did not send it).
    crash_signal: int | None = None
    inputs: mmap.mmap | None = None
    outputs: mmap.mmap | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    #: The graph's inputs as the worker's backend declared them (for :meth:`Proxy.set_input`).
    input_specs: list[TensorSpec] = field(default_factory=list)
    #: Inputs written into the input buffer but not yet sent, per context handle:
    #: ``(index, dtype, shape, offset, nbytes)``; they travel with the context's next call.
    pending: dict[int, list[tuple[int, str, tuple[int, ...], int, int]]] = field(default_factory=dict)
    #: Bytes of the input buffer that pending inputs occupy.
    in_used: int = 0
    #: The outputs the worker copied after the last ``compute``: for ``(context handle, hook)``,
    #: ``index -> (dtype, shape, offset)`` in the output buffer. Any later call clears them.
    eager_for: tuple[int, str] | None = None
    eager: dict[int, tuple[Any, Any, int]] = field(default_factory=dict)
    #: How long the last call of each kind took: how long to poll for its reply next time.
    last_s: dict[str, float] = field(default_factory=dict)
    poller: protocol.Poller | None = None
    #: The worker's log records reach the host's log at most at a guest's rate (burst 20, 2/s).
    log_bucket: GuestLog = field(default_factory=GuestLog)

    def __post_init__(self) -> None:
        # A graph the core drops without unloading it (an error path) still ends its worker.
        self._finalizer = weakref.finalize(self, _abandon, self.sock, self.pidfd)
        self._finalizer.atexit = False  # at exit the templates end every worker
        self.poller = protocol.Poller(self.sock)

    # -- the call -------------------------------------------------------------------------------------
    def call(self, what: str, message: tuple[Any, ...], fds: tuple[int, ...] = (),
             seconds: float | None = None) -> list[Any]:
        """Send ``message`` and wait for the reply, within the wall-clock deadline. A worker that
        dies or overstays is killed, reaped and marked dead: the call raises ``WasiNnError``."""
        with self.lock:
            return self._call(what, message, fds, seconds)

    def check_alive(self) -> None:
        if self.dead is not None:
            raise WasiNnError(self.dead_code, f"backend {self.backend}: this graph's worker is gone ({self.dead})")

    def _call(self, what: str, message: tuple[Any, ...], fds: tuple[int, ...], seconds: float | None) -> list[Any]:
        self.check_alive()
        deadline = self.options.call_seconds if seconds is None else seconds
        self.eager_for = None  # the worker may write its output buffer again
        try:
            started = time.perf_counter()
            protocol.send(self.sock, message, fds)
            assert self.poller is not None
            ready = self.poller.wait(self.last_s.get(what, 0.0), deadline)
            self.last_s[what] = time.perf_counter() - started
            answer = protocol.recv_reply(self.sock) if ready else None
            if answer is not None and answer[0] == protocol.LOG:
                self._relay(answer)  # the reply follows at once
                answer = protocol.recv_reply(self.sock) if select.select([self.sock], [], [], deadline)[0] else None
            if answer is None:
                self._kill(f"{what} did not finish within {deadline:g} s (Limits.worker_call_seconds)")
            else:
                if answer[0] in (protocol.ERROR, protocol.EXCEPTION):
                    if answer[0] == protocol.ERROR:
                        code = ErrorCode.__members__.get(str(answer[1]), ErrorCode.RUNTIME_ERROR)
                        error = WorkerError(code, protocol.text(answer[2]))
                    else:
                        error = _exception(self, what, str(answer[1]), str(answer[2]))
                    held = answer[3] if len(answer) > 3 else None
                    error.held = held if type(held) is int and held >= 0 else None
                    raise error
                if answer[0] in (protocol.OK, protocol.NEED):
                    return answer
                raise ValueError("unknown reply")
        except (EOFError, ConnectionError, BrokenPipeError):
            self._died(what)
        except (ValueError, TypeError, IndexError, OSError) as exc:
            if isinstance(exc, WasiNnError):
                raise
            self._kill(f"it answered {what} with a malformed reply ({type(exc).__name__})")
        assert self.dead is not None
        raise WasiNnError(self.dead_code, f"backend {self.backend}: {what} failed: the worker {self.dead}")

    def _relay(self, message: list[Any]) -> None:
        """Write a worker's log records (levels clamped to DEBUG..WARNING, text escaped, at most
        :data:`~wasinn.worker.protocol.MAX_LOG_RECORDS` per call and the store's rate per worker)."""
        records = message[1] if len(message) > 1 and isinstance(message[1], list) else []
        for record in records[:protocol.MAX_LOG_RECORDS]:
            if not (isinstance(record, list) and len(record) == 3 and type(record[0]) is int):
                continue
            level = min(max(record[0], logging.DEBUG), logging.WARNING)
            source = protocol.text(record[1])[:100]
            self.log_bucket.log(log, level, f"backend {self.backend} (worker {self.pid}): {source}: "
                                            f"{protocol.text(record[2])}")
        dropped = message[2] if len(message) > 2 and type(message[2]) is int else 0
        if dropped > 0:
            self.log_bucket.log(log, logging.DEBUG, f"backend {self.backend} (worker {self.pid}): {dropped} more "
                                                    f"log record(s) of one call were dropped")

    def _wait_exit(self, seconds: float) -> bool:
        if self.pidfd < 0:
            return True
        try:
            ready, _, _ = select.select([self.pidfd], [], [], seconds)
        except (OSError, ValueError):
            return True
        return bool(ready)

    def _sigkill(self) -> None:
        kill(self.pidfd)

    def abandon(self, why: str) -> None:
        """Kill, reap and close a worker that is still alive (a load that failed): ``why`` is its epitaph."""
        if self.dead is None:
            self.dead = why
            self._sigkill()
            self.template.reap(self.pid)
            self.close()

    def _kill(self, why: str) -> None:
        self._sigkill()
        self._wait_exit(EXIT_GRACE_S)
        self._gone(f"was killed: {why}", self.template.reap(self.pid), killed=True)

    def _died(self, what: str) -> None:
        if not self._wait_exit(EXIT_GRACE_S):
            self._sigkill()
        status = self.template.reap(self.pid)
        self._gone(f"died during {what}", status, killed=False)

    def _gone(self, why: str, status: int | None, *, killed: bool) -> None:
        detail = why
        if status is not None and not killed:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                self.crash_signal = sig
                name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
                detail = f"{why}: {name}"
                if sig == signal.SIGXCPU or (sig == signal.SIGKILL and self.options.cpu_seconds):
                    detail += f" (CPU cap {self.options.cpu_seconds:g} s per call, Limits.worker_cpu_seconds)"
                elif sig == signal.SIGSYS:
                    detail += " (a forbidden system call: the seccomp filter killed it)"
            elif os.WIFEXITED(status):
                detail = f"{why}: exit status {os.WEXITSTATUS(status)}"
        self.dead = detail + f"; memory cap {human_bytes(self.cap)} (Limits.worker_memory_bytes)"
        log.log(logging.DEBUG if _exiting else logging.WARNING, "backend %s: worker %d %s", self.backend, self.pid,
                self.dead)
        self.close()

    def close(self) -> None:
        """Release the host's end (idempotent): socket, pidfd, buffers."""
        if self.sock.fileno() >= 0:
            self.sock.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        self._finalizer.detach()
        self.inputs = self.outputs = None  # unmapped when the last view goes

    def finish(self) -> None:
        """The graph is unloaded: the worker exits; wait for it and reap it."""
        if self.dead is None and _exiting:
            self.dead = "ended at exit"
            self.close()
        if self.dead is None:
            try:
                self.call("unload", ("unload",))
            except WasiNnError:
                return  # already reaped by the failure
            self.dead = "unloaded"
            if not self._wait_exit(EXIT_GRACE_S):
                self._sigkill()
            self.template.reap(self.pid)
            self.close()

    # -- buffers ----------------------------------------------------------------------------------------
    def ensure_buffers(self, in_size: int = 0, out_size: int = 0) -> None:
        """Give the worker bigger shared buffers when a tensor does not fit (never smaller ones)."""
        fds: list[int] = []
        try:
            grown_in = _grown(self.inputs, in_size, f"wasinn-in-{self.pid}", fds, write=True)
            grown_out = _grown(self.outputs, out_size, f"wasinn-out-{self.pid}", fds, write=False)
            if fds:
                if grown_in is not None and self.inputs is not None and self.in_used:
                    # pending inputs keep their offsets in the new buffer
                    grown_in[:self.in_used] = self.inputs[:self.in_used]
                self.call("buffers", ("buffers", len(grown_in) if grown_in is not None else 0,
                                      len(grown_out) if grown_out is not None else 0), tuple(fds))
                if grown_in is not None:
                    self.inputs = grown_in
                if grown_out is not None:
                    self.outputs = grown_out
        finally:
            for fd in fds:
                os.close(fd)

    # -- inputs waiting for the context's next call ----------------------------------------------------
    def write_input(self, handle: int, index: int, tensor: Tensor) -> None:
        """Copy ``tensor`` from the guest's memory into the input buffer (the one copy) and queue it
        for the context's next call."""
        nbytes = len(tensor.data)
        offset = protocol.align(self.in_used)
        self.ensure_buffers(in_size=max(offset + nbytes, 1))
        assert self.inputs is not None
        self.inputs[offset:offset + nbytes] = tensor.data
        self.in_used = offset + nbytes
        self.pending.setdefault(handle, []).append((index, tensor.dtype.value, tensor.shape, offset, nbytes))

    def take(self, handle: int) -> list[tuple[int, str, tuple[int, ...], int, int]]:
        """The context's pending inputs, now to be sent (the buffer's space is free once none is left)."""
        taken = self.pending.pop(handle, [])
        if not self.pending:
            self.in_used = 0
        return taken


def _grown(buffer: mmap.mmap | None, need: int, name: str, fds: list[int], *, write: bool) -> mmap.mmap | None:
    """A new shared buffer (its memfd appended to ``fds``) when ``buffer`` is smaller than ``need``:
    at least twice the old size, at least a page; ``None`` when ``buffer`` is big enough."""
    if not need or (buffer is not None and len(buffer) >= need):
        return None
    size = max(need, MIN_BUFFER, 2 * len(buffer) if buffer is not None else 0)
    fd = protocol.sealed_memfd(name, size)
    fds.append(fd)
    return protocol.map_fd(fd, size, write=write)


def _abandon(sock: socket.socket, pidfd: int) -> None:
    """A worker whose graph was dropped without ``unload``: kill it (its template reaps it). Runs at
    garbage collection, so it takes no lock."""
    kill(pidfd)
    os.close(pidfd)
    sock.close()


class WorkerError(WasiNnError):
    """A worker's error reply: with what the call's context holds after it (``None``: not said)."""

    held: int | None = None


def _exception(worker: WorkerGraph, what: str, kind: str, message: str) -> WorkerError:
    """A backend's exception in the worker, as ``call_backend`` words it in-process; an allocation
    the memory cap refused is ``too_large``, naming the cap."""
    if kind == "MemoryError" or "bad_alloc" in message or "ailed to allocate" in message:
        log.warning("backend %s: worker %d: %s ran out of memory under its cap of %s (Limits.worker_memory_bytes)",
                    worker.backend, worker.pid, what, human_bytes(worker.cap))
        return WorkerError(ErrorCode.TOO_LARGE, f"backend {worker.backend}: {what} needs more memory than the "
                                                f"worker's cap of {human_bytes(worker.cap)} ({kind}: {message})")
    return WorkerError(ErrorCode.RUNTIME_ERROR, f"backend {worker.backend}: {what} failed: {kind}: {message}")


def _spec(raw: Any) -> TensorSpec:
    name, dtype, shape, any_length, optional = raw
    return TensorSpec(protocol.text(name)[:200], TensorType(dtype) if dtype is not None else None,
                      None if shape is None else tuple(None if d is None else int(d) for d in shape),
                      bool(any_length), bool(optional))


# -- the proxy backend's hooks ------------------------------------------------------------------------
class Proxy:
    """The hook functions of an isolated backend (bound to the real backend for what stays in the host)."""

    def __init__(self, real: Backend) -> None:
        self.real = real
        self.name = real.name

    @staticmethod
    def worker(graph: Graph) -> WorkerGraph:
        state = graph.state
        assert isinstance(state, WorkerGraph)
        return state

    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        options = WorkerOptions.from_limits(model.limits)
        made = template(self.real)
        pid, sock = made.fork()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            sock.close()
            made.reap(pid)
            raise
        cap = memory_cap(model.limits.worker_memory_bytes, model.size)
        worker = WorkerGraph(self.name, made, pid, sock, pidfd, options, cap, model.limits.max_tensor_bytes)
        sizes = [len(b) for b in model.builders]
        fd = protocol.model_file(model.builders)
        try:
            spec = Confinement(memory_bytes=made.baseline + cap, files=True, syscalls=True, privileges=True,
                               strict=options.strict)
            cpu = options.cpu_seconds
            # The worker needs no bytes in the description: they travel in the model's file.
            described = replace(model, builders=())
            level = logging.getLogger().getEffectiveLevel()
            answer = worker.call("load", ("load", described, sizes, hw, spec, cpu, level), (fd,))
        except WasiNnError as exc:
            worker.abandon("load failed")
            if worker.crash_signal in CRASHES:
                # The worker is the probe: bytes that crash the runtime are a malformed model, as a
                # child probe says of them in-process (wasinn.isolation).
                name = signal.Signals(worker.crash_signal).name
                # A runtime that aborts when an allocation fails looks the same: the cap is named.
                log.warning("a guest's %s crashes %s (%s in its worker, memory cap %s, Limits.worker_memory_bytes): "
                            "refused", model.describe(), self.name, name, human_bytes(worker.cap))
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"the model crashes backend {self.name} when it is "
                                                              f"loaded ({name} in an isolated worker whose memory "
                                                              f"cap is {human_bytes(worker.cap)})") from None
            raise exc
        except BaseException:
            worker.abandon("load failed")
            raise
        finally:
            os.close(fd)
        info = answer[1]
        worker.skipped = {str(k): protocol.text(v) for k, v in dict(info.get("skipped", {})).items()}
        if worker.skipped:
            log.warning("backend %s: worker %d runs without %s", self.name, pid, ", ".join(
                f"{k} ({v})" for k, v in worker.skipped.items()))
        worker.input_specs = [_spec(s) for s in info["inputs"]]
        return Graph(inputs=list(worker.input_specs), outputs=[_spec(s) for s in info["outputs"]],
                     device=protocol.text(info.get("device", "cpu"))[:100], state=worker)

    def unload(self, graph: Graph) -> None:
        self.worker(graph).finish()

    def init_execution_context(self, graph: Graph) -> Context:
        worker = self.worker(graph)
        answer = worker.call("init_execution_context", ("init",))
        context = Context(graph, state=int(answer[1]))
        _hold(context, answer)
        return context

    def finalize_execution_context(self, context: Context) -> None:
        worker = self.worker(context.graph)
        with worker.lock:
            worker.take(context.state)  # inputs it never computed with
            if worker.dead is None and not _exiting:  # at exit the templates ended every worker
                worker.call("finalize_execution_context", ("fini", context.state))

    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        """The input goes into the worker's input buffer now; it is *sent* with the context's next
        call (``compute``, usually: one round trip per inference) when the backend is sure to take
        it: its dtype and shape are exactly what the graph declares, and no earlier input of that
        index waits. Anything else is sent at once, so that the backend's error answers this call."""
        worker = self.worker(context.graph)
        handle = context.state
        with worker.lock:
            worker.check_alive()
            waiting = worker.pending.get(handle, ())
            defer = _declared_exactly(worker.input_specs, index, tensor) and \
                all(item[0] != index for item in waiting) and worker.in_used + len(tensor.data) <= PENDING_BYTES
            worker.write_input(handle, index, tensor)
            if worker.eager_for is not None and worker.eager_for[0] == handle:
                worker.eager_for = None  # what get_output answers may depend on the inputs
            if defer:
                return
            answer = _charging(context, worker.call, "set_input", ("set_input", handle, worker.take(handle)))
        _hold(context, answer)

    def _compute(self, context: Context, hook: str) -> None:
        worker = self.worker(context.graph)
        eager = {"compute": "get_output", "compute_single": "get_output_single"}.get(hook)
        with worker.lock:
            answer = _charging(context, worker.call, hook, ("compute", context.state, hook, worker.take(context.state),
                                                           eager))
            if eager is not None and worker.outputs is not None:
                worker.eager = _eager_outputs(answer[1])
                worker.eager_for = (context.state, eager)
        _hold(context, answer)

    def compute(self, context: Context) -> None:
        self._compute(context, "compute")

    def compute_single(self, context: Context) -> None:
        self._compute(context, "compute_single")

    def fini_single(self, context: Context) -> None:
        self._compute(context, "fini_single")

    def _output(self, context: Context, index: int, hook: str) -> np.ndarray:
        worker = self.worker(context.graph)
        with worker.lock:
            if worker.eager_for == (context.state, hook) and index in worker.eager:
                dtype, shape, offset = worker.eager[index]
                assert worker.outputs is not None
                return self._checked(worker, index, hook, memoryview(worker.outputs)[offset:], dtype, shape)
            for _ in range(2):
                answer = _charging(context, worker.call, hook,
                                   ("get_output", context.state, index, hook, worker.take(context.state)))
                if answer[0] == protocol.NEED:
                    nbytes = int(answer[1])
                    if nbytes > worker.max_tensor_bytes:
                        raise WasiNnError(ErrorCode.TOO_LARGE, f"output {index} of {nbytes} bytes exceeds the "
                                                               f"limit of {worker.max_tensor_bytes} bytes")
                    worker.ensure_buffers(out_size=max(nbytes, 1))
                    continue
                _hold(context, answer)
                assert worker.outputs is not None
                dtype, shape = answer[1]
                return self._checked(worker, index, hook, worker.outputs, dtype, shape)
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"backend {self.name}: {hook}: the output kept growing")

    def _checked(self, worker: WorkerGraph, index: int, hook: str, buffer: mmap.mmap | memoryview, dtype: Any,
                 shape: Any) -> np.ndarray:
        try:
            return protocol.checked_array(buffer, dtype, shape)
        except (ValueError, TypeError) as exc:
            worker._kill(f"it described output {index} wrongly ({exc})")
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"backend {self.name}: {hook} failed: the worker "
                                                       f"{worker.dead}") from None

    def get_output(self, context: Context, index: int) -> np.ndarray:
        return self._output(context, index, "get_output")

    def get_output_single(self, context: Context, index: int) -> np.ndarray:
        return self._output(context, index, "get_output_single")


def _declared_exactly(specs: list[TensorSpec], index: int, tensor: Tensor) -> bool:
    """Whether the graph declares input ``index`` with exactly ``tensor``'s dtype and static shape."""
    if not 0 <= index < len(specs):
        return False
    spec = specs[index]
    return spec.dtype is tensor.dtype and not spec.any_length and spec.shape is not None and \
        tuple(spec.shape) == tuple(tensor.shape)


def _eager_outputs(raw: Any) -> dict[int, tuple[Any, Any, int]]:
    """The worker's ``[index, dtype, shape, offset]`` list (checked when an output is read)."""
    found: dict[int, tuple[Any, Any, int]] = {}
    if isinstance(raw, list):
        for item in raw[:4096]:
            if isinstance(item, list) and len(item) == 4 and type(item[0]) is int and type(item[3]) is int and \
                    0 <= item[3] < 1 << 48:
                found[item[0]] = (item[1], item[2], item[3])
    return found


def _charging(context: Context, call: Callable[..., list[Any]], *args: Any) -> list[Any]:
    """``call(*args)``; when the worker answers with an error, what the context holds after it still
    replaces the store's charge (a refused run's output is gone in the worker: so is its charge)."""
    try:
        return call(*args)
    except WorkerError as exc:
        if exc.held is not None:
            try:
                context.budget.hold("isolated worker", exc.held)
            except WasiNnError:
                pass  # more than before, and over a limit: the error the guest gets is the worker's
        raise


def _hold(context: Context, answer: list[Any]) -> None:
    """Charge what the worker's runtime holds for this context to the store's budget."""
    held = answer[2] if len(answer) > 2 and isinstance(answer[2], int) else 0
    if held or context.budget.holding("isolated worker"):
        context.budget.hold("isolated worker", max(0, held))


#: Hooks the proxy forwards to a worker; what else the core asks stays with the real backend.
FORWARDED = ("load", "unload", "init_execution_context", "finalize_execution_context", "set_input", "compute",
             "get_output", "compute_single", "get_output_single", "fini_single")

_proxies_lock = threading.Lock()
_PROXY_ATTRIBUTE = "_wasinn_isolated"


def isolated_backend(real: Backend) -> Backend:
    """The proxy of ``real`` (made once per backend): same name and info (but contexts of one graph
    run one at a time: a worker serves one call at a time), hooks forwarded to workers."""
    with _proxies_lock:
        found = vars(real).get(_PROXY_ATTRIBUTE)
        if isinstance(found, Backend):
            return found
        proxy = Proxy(real)
        hooks: dict[str, Callable[..., Any]] = dict(real.hooks)
        for name in FORWARDED:
            if name in real.hooks or name in ("unload", "finalize_execution_context"):
                hooks[name] = getattr(proxy, name)
        info = replace(real.info, concurrent_contexts=False) if real.info is not None else \
            BackendInfo(runtime="?", runtime_version=None, formats=(), concurrent_contexts=False)
        made = Backend(name=real.name, distribution=real.distribution, version=real.version, info=info,
                       unavailable=real.unavailable, plugin=real.plugin, hooks=hooks)
        vars(real)[_PROXY_ATTRIBUTE] = made
        return made


def is_isolated(backend: Backend) -> bool:
    return isinstance(getattr(backend.hooks.get("load"), "__self__", None), Proxy)
