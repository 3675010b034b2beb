"""Try a model in a throwaway process before this process builds an interpreter for it.

The verifier (:mod:`._verify`) makes sure the flatbuffer is well formed, but the interpreter also
trusts the model's *meaning*: an operator with the wrong number of inputs (swap one opcode for
another, say SPLIT for AVERAGE_POOL_2D) crashes LiteRT 2.3 in ``allocate_tensors``, inside the
kernel's Prepare. No flatbuffer check can know every kernel's expectations, so a model that came
from an untrusted guest is first built, allocated and invoked once (on zeros) in a child process;
a crash there is an ``invalid_argument`` for the guest, not the end of the host.

``WASINN_TFLITE_PROBE`` chooses when: ``untrusted`` (default: models whose bytes came from the
guest's ``load``), ``always`` or ``never``. A guest cannot change it (it is not a model config key).
Results are cached by the model's SHA-256, so a model is probed once per process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections import OrderedDict

from wasinn import ErrorCode, WasiNnError

PROBE_ENV = "WASINN_TFLITE_PROBE"
POLICIES = ("untrusted", "always", "never")
TIMEOUT_S = 120.0
CACHE_SIZE = 256

# Runs in the child: build, allocate, invoke on zeros. Exit 0 = fine, 3 = a Python-level error
# (the parent then gets the same error in-process, as a proper error code); death by a signal = crash.
_SCRIPT = r"""
import importlib, sys
import numpy as np
module, threads, xnnpack = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
api = importlib.import_module(module + ".interpreter")
data = sys.stdin.buffer.read()
kwargs = {"model_content": data, "num_threads": threads}
if not xnnpack:
    kwargs["experimental_op_resolver_type"] = api.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
try:
    interpreter = api.Interpreter(**kwargs)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
except Exception as exc:
    sys.stderr.write(f"probe: {type(exc).__name__}: {exc}\n")
    sys.exit(3)
"""

_passed: OrderedDict[tuple[str, str, int, bool], bool] = OrderedDict()
_lock = threading.Lock()


def policy() -> str:
    value = os.environ.get(PROBE_ENV, "untrusted").strip().lower() or "untrusted"
    return value if value in POLICIES else "untrusted"


def wanted(trusted: bool) -> bool:
    """Whether a model of this provenance must be probed under the current policy."""
    chosen = policy()
    return chosen == "always" or (chosen == "untrusted" and not trusted)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def probe(data: bytes, module: str, num_threads: int, xnnpack: bool) -> None:
    """Raise WasiNnError(INVALID_ARGUMENT) if building and running ``data`` kills a child process."""
    key = (hashlib.sha256(data).hexdigest(), module, num_threads, xnnpack)
    with _lock:
        if key in _passed:
            _passed.move_to_end(key)
            return
    try:
        result = subprocess.run(
            [sys.executable, "-c", _SCRIPT, module, str(num_threads), "1" if xnnpack else "0"],
            input=data, capture_output=True, timeout=TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"the TFLite model probe did not finish in {TIMEOUT_S:g} s "
                                                   f"(set {PROBE_ENV}=never to skip probing)") from None
    except OSError as exc:
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"cannot start the TFLite model probe: {exc}") from None
    if result.returncode < 0:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"malformed TFLite model: it crashes the interpreter "
                                                      f"({_signal_name(result.returncode)} in a probe process)")
    if result.returncode not in (0, 3):
        detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"the TFLite model probe failed (exit {result.returncode}: "
                                                   f"{detail[0]})")
    # Exit 3 means the interpreter refused the model politely: the in-process load reports why.
    with _lock:
        _passed[key] = True
        while len(_passed) > CACHE_SIZE:
            _passed.popitem(last=False)
