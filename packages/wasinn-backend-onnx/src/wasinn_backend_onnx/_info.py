"""What ``wasinn backends`` needs from this backend, without importing the rest of it.

Discovery imports every installed backend just to call ``backend_info``, so this module is all the
package imports up front: the hooks that need :mod:`wasinn_backend_onnx.backend` import it when
first called (see the package ``__init__``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from wasinn.enums import ExecutionTarget, ModelFormat, TensorType
from wasinn.hookspecs import BackendInfo, hookimpl

#: ONNX Runtime's own serialisation (``.ort`` files), recognised by ``detect_format``.
ORT_FORMAT = ModelFormat("ort")
FORMATS = (ModelFormat.ONNX, ORT_FORMAT)
TARGETS = (ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU, ExecutionTarget.AUTO)
TENSOR_TYPES = (TensorType.F16, TensorType.F32, TensorType.F64, TensorType.U8, TensorType.I8,
                TensorType.I32, TensorType.I64)
#: The distributions that provide the ``onnxruntime`` module, most common first.
RUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino",
                         "onnxruntime-qnn", "onnxruntime-silicon", "onnxruntime-rocm", "onnxruntime-migraphx",
                         "onnxruntime-training", "onnxruntime-cann", "onnxruntime-vitisai")


def runtime_version() -> str | None:
    """The version of whichever distribution provides ``onnxruntime``, read from its metadata."""
    from wasinn.plugins import distribution_version

    for name in RUNTIME_DISTRIBUTIONS:
        version = distribution_version(name)
        if version is not None:
            return version
    return None


@hookimpl
def backend_info() -> BackendInfo:
    missing = importlib.util.find_spec("onnxruntime") is None
    return BackendInfo(
        runtime="onnxruntime",
        runtime_version=None if missing else runtime_version(),
        formats=FORMATS,
        targets=TARGETS,
        tensor_types=TENSOR_TYPES,
        concurrent_contexts=True,  # InferenceSession.run is thread-safe
        summary="ONNX Runtime: ONNX models on the CPU, or on a GPU/NPU execution provider",
        unavailable="onnxruntime is not installed (pip install onnxruntime)" if missing else None,
    )


@hookimpl
def detect_format(builders: Sequence[bytes]) -> str | None:
    # ORT format files are flatbuffers with the file identifier "ORTM".
    if len(builders) == 1 and len(builders[0]) >= 8 and bytes(builders[0][4:8]) == b"ORTM":
        return str(ORT_FORMAT)
    return None
