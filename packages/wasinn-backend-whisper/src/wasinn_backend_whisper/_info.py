"""What ``wasinn backends`` needs from this backend, and its format detector, without importing whisper.cpp."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from wasinn.enums import ExecutionTarget, ModelFormat, TensorType
from wasinn.hookspecs import BackendInfo, hookimpl

FORMATS = (ModelFormat.WHISPER,)
# CPU; GPU/TPU requests are declined (the manylinux wheel has no GPU backend); AUTO runs on the CPU.
TARGETS = (ExecutionTarget.CPU, ExecutionTarget.AUTO)
# The audio is bytes, whatever type the guest declares (WasmEdge's example says f32): any_length.
TENSOR_TYPES = (TensorType.U8, TensorType.F32)


def runtime_version() -> str | None:
    from wasinn.plugins import distribution_version

    return distribution_version("pywhispercpp")


@hookimpl
def backend_info() -> BackendInfo:
    missing = importlib.util.find_spec("_pywhispercpp") is None
    return BackendInfo(
        runtime="pywhispercpp (whisper.cpp)",
        runtime_version=None if missing else runtime_version(),
        formats=FORMATS,
        targets=TARGETS,
        tensor_types=TENSOR_TYPES,
        # one whisper_context (and its decoding state) per graph: the graph's calls are serialised
        concurrent_contexts=False,
        summary="whisper.cpp: speech-to-text, WasmEdge Whisper conventions (WAV in, timestamped text out)",
        unavailable="pywhispercpp is not installed (pip install pywhispercpp)" if missing else None,
    )


@hookimpl
def detect_format(builders: Sequence[bytes]) -> str | None:
    """whisper.cpp's files: the ``ggml`` magic and a whisper header (a second builder is WasmEdge's
    JSON options)."""
    from wasinn_backend_whisper.validate import is_whisper

    try:
        if builders and len(builders) <= 2 and is_whisper(builders[0]):
            return "whisper"
    except Exception:  # never raise: detection only
        return None
    return None
