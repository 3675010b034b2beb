"""What ``wasinn backends`` needs from this backend, without importing the rest of it.

Discovery imports every installed backend just to call ``backend_info``, so this module (with
:mod:`._runtime`, which finds the interpreter without importing it) is all the package imports up
front: the other hooks import :mod:`wasinn_backend_tflite.backend` when first called (see the
package ``__init__``).
"""

from __future__ import annotations

from typing import Any

from wasinn.enums import ExecutionTarget, ModelFormat, TensorType
from wasinn.hookspecs import BackendInfo, hookimpl
from wasinn_backend_tflite import _runtime

FORMATS = (ModelFormat.TFLITE,)
TARGETS = (ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU, ExecutionTarget.AUTO)
TENSOR_TYPES = (TensorType.F16, TensorType.F32, TensorType.F64, TensorType.U8, TensorType.I8, TensorType.I32,
                TensorType.I64)


@hookimpl
def backend_info() -> BackendInfo:
    runtime = _runtime.select()
    common: dict[str, Any] = {
        "formats": FORMATS,
        "targets": TARGETS,
        "tensor_types": TENSOR_TYPES,
        "concurrent_contexts": True,
    }
    if isinstance(runtime, str):
        return BackendInfo(runtime="ai-edge-litert", runtime_version=None, unavailable=runtime,
                           summary="TFLite flatbuffers on LiteRT or tflite-runtime", **common)
    return BackendInfo(runtime=runtime.distribution, runtime_version=runtime.version,
                       summary=f"TFLite flatbuffers on {runtime.distribution} (CPU: XNNPACK; "
                               f"GPU/TPU: allowed delegates only)", **common)
