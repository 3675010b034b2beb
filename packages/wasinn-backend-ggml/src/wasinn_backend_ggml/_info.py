"""What ``wasinn backends`` needs from this backend, without importing llama.cpp."""

from __future__ import annotations

import importlib.util

from wasinn.enums import ExecutionTarget, ModelFormat, TensorType
from wasinn.hookspecs import BackendInfo, hookimpl

FORMATS = (ModelFormat.GGUF,)
# CPU, and AUTO (WasmEdge's --nn-preload default:GGML:AUTO:...): this build decides and says which.
TARGETS = (ExecutionTarget.CPU, ExecutionTarget.AUTO)
TENSOR_TYPES = (TensorType.U8,)


def runtime_version() -> str | None:
    from wasinn.plugins import distribution_version

    return distribution_version("llama-cpp-python")


@hookimpl
def backend_info() -> BackendInfo:
    missing = importlib.util.find_spec("llama_cpp") is None
    return BackendInfo(
        runtime="llama-cpp-python",
        runtime_version=None if missing else runtime_version(),
        formats=FORMATS,
        targets=TARGETS,
        tensor_types=TENSOR_TYPES,
        concurrent_contexts=True,  # one llama_context per wasi-nn context; the model is shared read-only
        summary="llama.cpp: GGUF language models, WasmEdge GGML conventions, token streaming",
        unavailable="llama-cpp-python is not installed (pip install llama-cpp-python)" if missing else None,
    )
