"""What ``wasinn backends`` needs from this backend, without importing the rest of it.

Discovery imports every installed backend just to call ``backend_info``, so this module (and
:mod:`.runtime`, for the tensor types) is all the package imports up front: the other hooks import
:mod:`wasinn_backend_openvino.backend` when first called (see the package ``__init__``).
"""

from __future__ import annotations

from wasinn.enums import ExecutionTarget, ModelFormat
from wasinn.hookspecs import BackendInfo, hookimpl
from wasinn.plugins import distribution_version
from wasinn_backend_openvino import runtime

FORMATS = (ModelFormat.OPENVINO_IR, ModelFormat.ONNX, ModelFormat.TFLITE)
TARGETS = (ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU, ExecutionTarget.AUTO)


@hookimpl
def backend_info() -> BackendInfo:
    version = distribution_version("openvino")
    return BackendInfo(
        runtime="openvino",
        runtime_version=version,
        formats=FORMATS,
        targets=TARGETS,
        tensor_types=runtime.TENSOR_TYPES,
        concurrent_contexts=True,  # infer requests are independent
        summary="OpenVINO: IR, ONNX and TFLite on Intel CPUs, GPUs and NPUs",
        unavailable=None if version is not None else "the openvino package is not installed (pip install openvino)",
    )
