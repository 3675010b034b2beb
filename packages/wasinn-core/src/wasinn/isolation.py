"""Try an untrusted model in a throwaway child process before the host process loads it.

A backend can check everything a model's file format says, but the native runtime behind it
also trusts the model's *meaning* (operator arity, hyperparameters, tensor shapes), and some of
its checks abort the process instead of raising. :class:`ChildProbe` runs a backend's own script
on the model in a child Python process first, so that such a crash is an ``invalid_argument``
for the guest, not the end of the host::

    PROBE = ChildProbe("WASINN_MINE_PROBE", SCRIPT, what="Mine model", crashes="the runtime")

    def load(self, model, hw):
        if PROBE.wanted(trusted=model.name is not None):  # named models come from the embedder
            PROBE.run(hashlib.sha256(model.builders[0]).hexdigest(), stdin=model.builders[0])

The script gets ``args`` as ``sys.argv[1:]`` and the model bytes (if any) on stdin. It exits 0
when the model is fine and 3 when the runtime refused it politely (the in-process load then
reports the same error properly); death by a signal is a crash the host must not suffer.

The policy is an environment variable, so a guest cannot change it: ``untrusted`` (the default:
only models whose bytes came from a guest), ``always`` (also the embedder's named models) or
``never``. A model that passed is remembered by its key, so it is probed once per process.

In a worker of :mod:`wasinn.worker` (a guest's model under ``Limits(guest_models="isolate")``) no
probe runs: the worker is the throwaway process, confined, and its crash is already the guest's
error, not the host's end (:data:`IN_WORKER`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence

from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError

__all__ = ["POLICIES", "REFUSED", "ChildProbe", "signal_name"]

#: The values of a probe's environment variable; anything else reads as ``untrusted``.
POLICIES = ("untrusted", "always", "never")

#: Exit status of a script whose runtime refused the model with an ordinary error.
REFUSED = 3

#: Set in a :mod:`wasinn.worker` process: the model already runs in a confined child of its own,
#: so :meth:`ChildProbe.wanted` says no (a probe there could not even start: no exec, no fork).
IN_WORKER = False


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
    first); ``None`` keeps them all.

    Thread-safe: concurrent loads may probe at the same time (each in its own child).
    """

    def __init__(self, env_var: str, script: str, *, what: str, crashes: str, timeout_s: float = 120.0,
                 failure: ErrorCode = ErrorCode.INVALID_ARGUMENT, cache_size: int | None = None) -> None:
        self.env_var = env_var
        self.script = script
        self.what = what
        self.crashes = crashes
        self.timeout_s = timeout_s
        self.failure = failure
        self.cache_size = cache_size
        #: Keys of the models that passed, least recently used first.
        self.passed: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def policy(self) -> str:
        """The policy in force now: one of :data:`POLICIES`."""
        value = os.environ.get(self.env_var, "untrusted").strip().lower() or "untrusted"
        return value if value in POLICIES else "untrusted"

    def wanted(self, trusted: bool) -> bool:
        """Whether a model of this provenance must be probed under the current policy."""
        if IN_WORKER:
            return False
        chosen = self.policy()
        return chosen == "always" or (chosen == "untrusted" and not trusted)

    def run(self, key: Hashable, args: Sequence[str] = (), *, stdin: bytes | None = None) -> None:
        """Probe once per ``key``: raise :class:`WasiNnError` if the child crashes, hangs or fails.

        ``key`` identifies the model (and whatever else changes the outcome, such as options), e.g.
        the SHA-256 of its bytes. A child that exits 0 or 3 passes and ``key`` is remembered.
        """
        with self._lock:
            if key in self.passed:
                self.passed.move_to_end(key)
                return
        argv = [sys.executable, "-c", self.script, *args]
        try:
            if stdin is None:  # the child must not read the host's own stdin
                result = subprocess.run(argv, capture_output=True, timeout=self.timeout_s, check=False,
                                        stdin=subprocess.DEVNULL)
            else:
                result = subprocess.run(argv, input=stdin, capture_output=True, timeout=self.timeout_s,
                                        check=False)
        except subprocess.TimeoutExpired:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"the {self.what} probe did not finish in "
                                                       f"{self.timeout_s:g} s (set {self.env_var}=never to "
                                                       f"skip probing)") from None
        except OSError as exc:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"cannot start the {self.what} probe: {exc}") from None
        if result.returncode < 0:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"malformed {self.what}: it crashes {self.crashes} "
                                                          f"({signal_name(result.returncode)} in a probe process)")
        if result.returncode not in (0, REFUSED):
            detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            failed = f"(exit {result.returncode}: {detail[0]})"
            raise WasiNnError(self.failure, f"malformed {self.what}: the probe process failed {failed}"
                              if self.failure is ErrorCode.INVALID_ARGUMENT
                              else f"the {self.what} probe failed {failed}")
        # Exit 3: the runtime refused the model politely, and the in-process load will say why.
        with self._lock:
            self.passed[key] = None
            while self.cache_size is not None and len(self.passed) > self.cache_size:
                self.passed.popitem(last=False)
