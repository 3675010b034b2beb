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

from wasinn import ErrorCode
from wasinn.isolation import ChildProbe

PROBE_ENV = "WASINN_TFLITE_PROBE"
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

# A child that exits oddly (not a signal, not 0 or 3) is the probe's failure, not the model's.
CHILD = ChildProbe(PROBE_ENV, _SCRIPT, what="TFLite model", crashes="the interpreter", timeout_s=TIMEOUT_S,
                   failure=ErrorCode.RUNTIME_ERROR, cache_size=CACHE_SIZE, preload=("numpy",))
policy = CHILD.policy
wanted = CHILD.wanted


def probe(data: bytes, module: str, num_threads: int, xnnpack: bool, memory_bytes: int | None = None) -> None:
    """Raise WasiNnError(INVALID_ARGUMENT) if building and running ``data`` kills a child process."""
    key = (hashlib.sha256(data).hexdigest(), module, num_threads, xnnpack)
    CHILD.run(key, [module, str(num_threads), "1" if xnnpack else "0"], stdin=data,
              preload=(module + ".interpreter",), memory_bytes=memory_bytes)
