"""wasinn backend for inference servers that speak the Open Inference Protocol (KServe v2): Triton,
KServe, OpenVINO Model Server, MLServer. It serves the names the host mapped to a server
(``--nn-remote NAME=URI``, ``WasiNnHost.register_remote``) and nothing else: a local model is never
sent anywhere.

Published as the ``kserve`` entry point of group ``wasinn.backends``. Discovery imports only this
module; the hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from wasinn.enums import ExecutionTarget, ModelFormat, TensorType
from wasinn.hookspecs import BackendInfo, hookimpl
from wasinn.plugins import deferred, distribution_version

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    import numpy as np

    from wasinn import Context, Decline, Graph, Hardware, ModelDescription, Score, Tensor

__version__ = "0.1.0"


_impl: Callable[[], ModuleType] = deferred(lambda: importlib.import_module("wasinn_backend_kserve.backend"))


@hookimpl
def backend_info() -> BackendInfo:
    grpc = distribution_version("grpcio")
    return BackendInfo(
        runtime="open-inference-protocol",
        runtime_version=f"v2 (REST; gRPC with grpcio {grpc})" if grpc else "v2 (REST; gRPC: pip install "
                                                                           "'wasinn-backend-kserve[grpc]')",
        formats=(ModelFormat.REMOTE,),
        targets=(ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU, ExecutionTarget.AUTO),
        tensor_types=(TensorType.F16, TensorType.BF16, TensorType.F32, TensorType.F64, TensorType.U8,
                      TensorType.I8, TensorType.I32, TensorType.I64),
        concurrent_contexts=True,  # each context sends its own requests; transports are thread-safe
        summary="models on a Triton, KServe, OpenVINO Model Server or MLServer endpoint (KServe v2, REST and gRPC)",
    )


@hookimpl
def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline:
    return _impl().can_handle(model, hw)  # type: ignore[no-any-return]


@hookimpl
def load(model: ModelDescription, hw: Hardware) -> Graph:
    return _impl().load(model, hw)  # type: ignore[no-any-return]


@hookimpl
def unload(graph: Graph) -> None:
    _impl().unload(graph)


@hookimpl
def init_execution_context(graph: Graph) -> Context:
    return _impl().init_execution_context(graph)  # type: ignore[no-any-return]


@hookimpl
def set_input(context: Context, index: int, tensor: Tensor) -> None:
    _impl().set_input(context, index, tensor)


@hookimpl
def compute(context: Context) -> None:
    _impl().compute(context)


@hookimpl
def get_output(context: Context, index: int) -> np.ndarray:
    return _impl().get_output(context, index)  # type: ignore[no-any-return]
