"""``can_handle``: cheap, and honest about where the model will run."""

from __future__ import annotations

import functools

from wasinn import Decline, ErrorCode, ExecutionTarget, Hardware, ModelDescription, ModelFormat, Score

CPU_SCORE = 90.0  # llama.cpp is GGUF's native runtime


@functools.cache
def gpu_offload() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (imports llama_cpp: asked only for a
    GPU or AUTO target)."""
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())


def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    if model.format != ModelFormat.GGUF:
        return None
    if model.target is ExecutionTarget.CPU:
        return Score(CPU_SCORE, "llama.cpp reads GGUF natively; runs on the CPU", device="cpu")
    if model.target in (ExecutionTarget.GPU, ExecutionTarget.TPU):
        if model.target is ExecutionTarget.GPU and gpu_offload():
            return Score(100.0, "llama.cpp with GPU offload", device="gpu")
        return Decline(f"this llama.cpp build cannot run on a {model.target.value} (no GPU offload): "
                       f"ask for cpu or auto", ErrorCode.UNSUPPORTED_OPERATION)
    # AUTO (WasmEdge's --nn-preload default:GGML:AUTO:...): say plainly which it will be.
    if gpu_offload():
        return Score(100.0, "target auto: llama.cpp with GPU offload", device="gpu")
    return Score(CPU_SCORE, "target auto: llama.cpp on the CPU (this build has no GPU offload)", device="cpu")
