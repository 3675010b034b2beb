"""Try an untrusted model in a throwaway, confined process before the host process loads it.

A backend can check everything a model's file format says, but the native runtime behind it
also trusts the model's *meaning* (operator arity, hyperparameters, tensor shapes), and some of
its checks abort the process instead of raising. :class:`ChildProbe` runs a backend's own script
on the model in another process first, so that such a crash is an ``invalid_argument`` for the
guest, not the end of the host::

    PROBE = ChildProbe("WASINN_MINE_PROBE", SCRIPT, what="Mine model", crashes="the runtime",
                       preload=("mine_runtime",))

    def load(self, model, hw):
        if PROBE.wanted(trusted=model.name is not None):  # named models come from the embedder
            PROBE.run(hashlib.sha256(model.builders[0]).hexdigest(), stdin=model.builders[0])

The script gets ``args`` as ``sys.argv[1:]`` and the model bytes (if any) on ``sys.stdin``. It exits 0
when the model is fine and 3 when the runtime refused it politely (the in-process load then
reports the same error properly); death by a signal is a crash the host must not suffer.

The process is a worker of :mod:`wasinn.worker`, not a second mechanism: forked from a probe
template that has ``preload`` (the runtime) imported already, and confined as a graph's worker is
(:mod:`wasinn.sandbox`: a memory cap, no file written, no network, no exec or fork) before the
script runs. It reads the runtime's own files and the paths ``run`` names (``read``), and writes only
in the folders it names (``writable``, a scratch folder for a probe that leaves a result there).

The policy is an environment variable, so a guest cannot change it: ``untrusted`` (the default:
only models whose bytes came from a guest), ``always`` (also the embedder's named models) or
``never``. A model that passed is remembered by its key, so it is probed once per process.

In a worker of :mod:`wasinn.worker` (a guest's model under ``Limits(guest_models="isolate")``) no
probe runs: the worker is the throwaway process, confined, and its crash is already the guest's
error, not the host's end (:func:`in_worker`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

from wasinn import sandbox
from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError
from wasinn.limits import Limits

__all__ = ["POLICIES", "REFUSED", "ChildProbe", "in_worker", "signal_name"]

#: The values of a probe's environment variable; anything else reads as ``untrusted``.
POLICIES = ("untrusted", "always", "never")

#: Exit status of a script whose runtime refused the model with an ordinary error.
REFUSED = 3

def in_worker() -> bool:
    """Whether this process is a :mod:`wasinn.worker` process (a graph's worker or a probe): the model
    already runs in a confined child of its own, so :meth:`ChildProbe.wanted` says no (a probe there
    could not even start: no exec, no fork)."""
    return sandbox.confined()


def signal_name(returncode: int) -> str:
    """``SIGSEGV`` for a child killed by signal 11 (``returncode`` is the negative signal number)."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class ChildProbe:
    """Runs a script on a model in a child process and maps the child's fate to a :class:`WasiNnError`.

    ``env_var`` names the policy variable (``WASINN_<BACKEND>_PROBE``); ``script`` is Python source
    run with ``python -c``; ``what`` names the model kind in messages (``"GGUF model"``) and
    ``crashes`` what it crashes (``"llama.cpp"``). ``failure`` is the error code for a child that
    exits with any status other than 0 or 3: ``INVALID_ARGUMENT`` blames the model,
    ``RUNTIME_ERROR`` the probe. ``cache_size`` bounds the remembered keys (least recently used go
    first); ``None`` keeps them all. ``preload`` names the modules the probe template imports once
    (the runtime); ``memory_bytes`` is the probe's memory cap on top of that import, plus twice the
    model's size (``None``: ``Limits().worker_memory_bytes``, as a graph's worker gets).

    Thread-safe: concurrent loads may probe at the same time (each in its own child).
    """

    def __init__(self, env_var: str, script: str, *, what: str, crashes: str, timeout_s: float = 120.0,
                 failure: ErrorCode = ErrorCode.INVALID_ARGUMENT, cache_size: int | None = None,
                 preload: Sequence[str] = (), memory_bytes: int | None = None) -> None:
        self.env_var = env_var
        self.script = script
        self.what = what
        self.crashes = crashes
        self.timeout_s = timeout_s
        self.failure = failure
        self.cache_size = cache_size
        self.preload = tuple(preload)
        self.memory_bytes = Limits().worker_memory_bytes if memory_bytes is None else memory_bytes
        #: Keys of the models that passed, least recently used first.
        self.passed: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def policy(self) -> str:
        """The policy in force now: one of :data:`POLICIES`."""
        value = os.environ.get(self.env_var, "untrusted").strip().lower() or "untrusted"
        return value if value in POLICIES else "untrusted"

    def wanted(self, trusted: bool) -> bool:
        """Whether a model of this provenance must be probed under the current policy."""
        if in_worker():
            return False
        chosen = self.policy()
        return chosen == "always" or (chosen == "untrusted" and not trusted)

    def run(self, key: Hashable, args: Sequence[str] = (), *, stdin: bytes | None = None, read: Sequence[str] = (),
            writable: Sequence[str] = (), preload: Sequence[str] = (), memory_bytes: int | None = None) -> None:
        """Probe once per ``key``: raise :class:`WasiNnError` if the child crashes, hangs or fails.

        ``key`` identifies the model (and whatever else changes the outcome, such as options), e.g.
        the SHA-256 of its bytes. A child that exits 0 or 3 passes and ``key`` is remembered.
        ``read`` lists the files (a model by its path) and ``writable`` the folders the script needs
        beyond the runtime's own files; ``preload`` adds modules to the constructor's. ``memory_bytes``
        replaces the constructor's cap (a backend passes ``model.limits.worker_memory_bytes``: the
        embedder's cap for a worker is the probe's too).
        """
        with self._lock:
            if key in self.passed:
                self.passed.move_to_end(key)
                return
        # Imported when first needed: backends import this module at their own import, and the worker
        # machinery (numpy, the templates) is more than most of them ever use.
        from wasinn.worker.probe import ProbeTimeout, run_probe
        from wasinn.worker.proxy import human_bytes

        try:
            result = run_probe(self.script, args, stdin,
                               runtime_bytes=self.memory_bytes if memory_bytes is None else memory_bytes,
                               timeout_s=self.timeout_s, read=read, writable=writable,
                               preload=(*self.preload, *preload))
        except ProbeTimeout:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"the {self.what} probe did not finish in "
                                                       f"{self.timeout_s:g} s (set {self.env_var}=never to "
                                                       f"skip probing)") from None
        except (OSError, WasiNnError) as exc:
            reason = exc.message if isinstance(exc, WasiNnError) else str(exc)
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"cannot start the {self.what} probe: {reason}") from None
        if result.returncode < 0:
            # A runtime that aborts when an allocation fails looks the same as a crash: the cap is named.
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"malformed {self.what}: it crashes {self.crashes} "
                                                          f"({signal_name(result.returncode)} in a probe process "
                                                          f"whose memory cap is {human_bytes(result.memory_cap)}, "
                                                          f"Limits.worker_memory_bytes)")
        if result.returncode not in (0, REFUSED):
            failed = f"(exit {result.returncode}: {result.detail or 'no output'})"
            raise WasiNnError(self.failure, f"malformed {self.what}: the probe process failed {failed}"
                              if self.failure is ErrorCode.INVALID_ARGUMENT
                              else f"the {self.what} probe failed {failed}")
        # Exit 3: the runtime refused the model politely, and the in-process load will say why.
        with self._lock:
            self.passed[key] = None
            while self.cache_size is not None and len(self.passed) > self.cache_size:
                self.passed.popitem(last=False)

