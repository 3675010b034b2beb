"""What ``wasinn backends`` needs from this backend, without importing torch or the rest of it."""

from __future__ import annotations

import importlib.util

from wasinn.enums import ExecutionTarget, ModelFormat, TensorType
from wasinn.hookspecs import BackendInfo, hookimpl

#: TorchScript archives (``torch.jit.save``) and torch.export programs (``torch.export.save``, .pt2).
FORMATS = (ModelFormat.TORCHSCRIPT, ModelFormat.TORCH_EXPORT)
#: ``gpu`` is CUDA, and only where the installed torch has it (checked when a model asks for it).
TARGETS = (ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.AUTO)
TENSOR_TYPES = (TensorType.F16, TensorType.BF16, TensorType.F32, TensorType.F64, TensorType.U8, TensorType.I8,
                TensorType.I32, TensorType.I64)


@hookimpl
def backend_info() -> BackendInfo:
    from wasinn.plugins import distribution_version

    missing = importlib.util.find_spec("torch") is None
    return BackendInfo(
        runtime="torch",
        runtime_version=None if missing else distribution_version("torch"),
        formats=FORMATS,
        targets=TARGETS,
        tensor_types=TENSOR_TYPES,
        concurrent_contexts=True,  # a module's forward in inference mode is safe from several threads
        summary="PyTorch: TorchScript and torch.export models on the CPU, or on CUDA where torch has it",
        unavailable="torch is not installed (pip install torch)" if missing else None,
    )
