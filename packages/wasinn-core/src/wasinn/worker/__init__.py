"""Untrusted models run in a sandboxed worker process (issue 28).

A model file is a program for its runtime. wasinn loads a guest's model bytes (``load``) in a
**worker process** of their own, which the operating system confines (:mod:`wasinn.sandbox`), so
that the worst a hostile model can do is kill its own worker. The worker runs the *same* backend
hooks as the host would in-process: no backend has code of its own for isolation.

Processes:

* a **template** per backend (:class:`~wasinn.worker.proxy.Template`): a fresh interpreter, started
  on the first isolated load with that backend, with a minimal environment (no ``HOME``, no
  credentials, ``OPENBLAS_NUM_THREADS=1``), nothing inherited but its control socket, and the
  backend (and its runtime, through the optional ``devices`` hook) imported once. It never sees a
  model byte; it only forks.
* a **worker** per graph, forked from the template (ready in a few milliseconds with the runtime
  already imported). Its first message is ``load``: it confines itself (no new privileges, every
  capability dropped, ``RLIMIT_DATA`` at its memory cap, Landlock read-only file access and no TCP,
  seccomp: no socket, exec or fork), *then* reads the model from its file (unnamed, read-only:
  :func:`~wasinn.worker.protocol.model_file`) and calls the backend's ``load``. Its contexts live in
  it too; it exits when its graph is unloaded, when the host or the template goes
  (``PR_SET_PDEATHSIG``), or when the host kills it.

Wire (:mod:`~wasinn.worker.protocol`): control messages over a ``SOCK_SEQPACKET`` socket pair
(pickle from host to worker, JSON from worker to host: a taken-over worker cannot run code in the
host); tensors through two sealed memfds per worker, mapped by both sides: the host copies an input
from the guest's memory straight into the worker's input buffer (one copy, as in-process), and
the core copies an output from the worker's output buffer straight into the guest's memory. The
host never accepts a file descriptor from a worker.

Death (:class:`~wasinn.worker.proxy.WorkerGraph`): a worker that dies (a signal, an abort, the
seccomp filter's ``SIGSYS``, ``SIGXCPU`` at its CPU cap) or that does not answer within the
wall-clock deadline (``Limits.worker_call_seconds``: ``RLIMIT_CPU`` cannot stop a call that blocks)
is killed, reaped by its template, and its graph is marked dead: the call answers
``runtime_error`` with a log line naming the signal and the caps, later calls on the graph and its
contexts answer ``runtime_error``, and the store and every other graph go on. An allocation the
memory cap refuses is an exception inside the worker (``RLIMIT_DATA`` fails the ``mmap``), which the
guest receives as ``too_large``, naming the cap.

Policy (:func:`select_backend`, ``Limits.guest_models``): ``"isolate"`` runs a guest's
``load`` bytes in a worker, ``"in-process"`` in the host as before, ``"refuse"`` answers
``unsupported_operation`` to them. The embedder's named models run in-process. A guest's
code-bearing format (TorchScript) needs ``Limits.allow_guest_code``; isolated, it then runs in a worker.
``Limits.strict_isolation`` refuses to run a worker where a confinement layer is missing; without
it the missing layers are logged once per host and shown by ``wasinn explain``.

Costs and limits: one worker per graph (about a megabyte of its own memory beyond what the
runtime allocates for the model); the contexts of one isolated graph run one at a time; each hook
call is a round trip between processes (tens of microseconds).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from wasinn.enums import ErrorCode, ModelFormat
from wasinn.errors import WasiNnError
from wasinn.formats import CODE_FORMATS
from wasinn.limits import Limits
from wasinn.model import ModelDescription
from wasinn.plugins import Backend

if TYPE_CHECKING:
    from wasinn.sandbox import Probe

__all__ = ["POLICIES", "describe", "isolation_missing", "prestart", "select_backend", "wanted"]

log = logging.getLogger("wasinn.worker")

#: The values of ``Limits.guest_models`` (and ``wasinn run --guest-models``).
POLICIES = ("isolate", "in-process", "refuse")
#: The layers ``strict_isolation`` requires (a delegated cgroup is a bonus, not a requirement).
REQUIRED_LAYERS = ("privileges", "memory", "cpu", "files", "network", "processes")

_probe: Probe | None = None
_probe_lock = threading.Lock()
_warned = False


def _sandbox_probe() -> Probe:
    global _probe
    with _probe_lock:
        if _probe is None:
            from wasinn.sandbox import probe
            _probe = probe()
        return _probe


def isolation_missing() -> list[str]:
    """The confinement layers this machine cannot apply, as ``"files (Landlock: ...)"`` lines."""
    return [f"{layer.name} ({layer.how})" for layer in _sandbox_probe().missing(REQUIRED_LAYERS)]


def wanted(limits: Limits, model: ModelDescription) -> bool:
    """Whether ``model`` runs in a worker under ``limits``: a guest's bytes, policy ``isolate``."""
    return model.from_guest and limits.guest_models == "isolate"


def select_backend(limits: Limits, model: ModelDescription, chosen: Backend) -> Backend:
    """The backend that loads ``model``: ``chosen`` itself, or its worker proxy.

    Raises ``WasiNnError`` where the policy refuses the model: ``refuse`` for any guest bytes,
    ``strict_isolation`` where a layer is missing.
    """
    global _warned
    if not model.from_guest:
        return chosen
    policy = limits.guest_models
    if policy == "refuse":
        raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, "this host does not load model bytes from a guest "
                                                           "(only the embedder's named models)")
    if policy != "isolate":
        # A code-bearing format got here only through Limits.allow_guest_code (the core refuses it
        # otherwise); in-process it then rests on the backend's whitelists alone.
        return chosen
    missing = isolation_missing()
    if missing:
        if limits.strict_isolation:
            log.warning("refused a guest's %s: strict isolation, and this machine cannot apply: %s",
                        model.describe(), "; ".join(missing))
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, "this host requires full isolation of a guest's "
                                                               "model and cannot provide it here")
        if not _warned:
            _warned = True
            log.warning("guest models run in workers without: %s (Limits(strict_isolation=True) refuses "
                        "to run them then)", "; ".join(missing))
    from wasinn.worker.proxy import isolated_backend
    return isolated_backend(chosen)


def prestart(limits: Limits, backends: list[Backend]) -> None:
    """Start, in the background, the templates of the backends a guest's ``load`` could be given
    to: available, local (not ``remote``), and not only for code-bearing formats unless the
    embedder allows guest code. Called when a store is made (a guest could call ``load`` next)."""
    if limits.guest_models != "isolate" or not limits.worker_prestart:
        return
    candidates = []
    for backend in backends:
        formats = set(backend.info.formats if backend.info is not None else ())
        formats.discard(ModelFormat.REMOTE)
        if not limits.allow_guest_code:
            formats -= set(CODE_FORMATS) | set(backend.info.code_formats if backend.info is not None else ())
        if backend.available and formats:
            candidates.append(backend)
    if candidates:
        from wasinn.worker.proxy import prestart as start
        start(candidates)


def describe(limits: Limits, model: ModelDescription, backend: str) -> str:
    """What ``wasinn explain`` says about where a model would run: ``"tflite, isolated worker,
    512 MiB cap"``."""
    from wasinn.worker.proxy import human_bytes, memory_cap
    if not model.from_guest:
        return f"{backend}, in-process (the embedder's model)"
    policy = limits.guest_models
    if policy == "refuse":
        return f"{backend}: refused (a guest's model bytes, --guest-models refuse)"
    if policy != "isolate":
        return f"{backend}, in-process (--guest-models in-process: not isolated)"
    text = f"{backend}, isolated worker, {human_bytes(memory_cap(limits.worker_memory_bytes, model.size))} cap"
    seconds = limits.worker_call_seconds
    if seconds:
        text += f", {seconds:g} s per call"
    cpu = limits.worker_cpu_seconds
    if cpu:
        text += f", {cpu:g} s CPU per call"
    missing = isolation_missing()
    if missing:
        text += ("; REFUSED (strict) without " if limits.strict_isolation else "; without ") + \
            ", ".join(m.split(" ")[0] for m in missing)
    return text
