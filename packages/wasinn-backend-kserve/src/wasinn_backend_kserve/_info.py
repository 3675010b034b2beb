"""What ``wasinn backends`` needs from this backend, without importing the rest of it."""

from __future__ import annotations

from wasinn.enums import ExecutionTarget, ModelFormat, TensorType
from wasinn.hookspecs import BackendInfo, hookimpl
from wasinn.plugins import distribution_version


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
