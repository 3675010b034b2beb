"""``fakestream``: a step-wise backend for the streaming hooks (``compute_single`` and friends).

Its format is ``WSTR`` + a number N: the model echoes its u8 input, N bytes per step, then says
``END_OF_SEQUENCE``. ``compute`` produces the whole echo at once (output 0), like an LLM backend's
whole generation. Lets wasinn-core test the streaming dispatch without any LLM runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wasinn import (
    BackendInfo,
    Context,
    ErrorCode,
    Graph,
    Hardware,
    ModelDescription,
    ModelFormat,
    Score,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
    hookimpl,
)

FORMAT = ModelFormat("wasinn-stream")
MAGIC = b"WSTR"


def make_model(step: int = 1) -> bytes:
    return MAGIC + str(step).encode()


@hookimpl
def backend_info() -> BackendInfo:
    return BackendInfo(runtime="numpy", runtime_version=np.__version__, formats=(FORMAT,),
                       tensor_types=(TensorType.U8,), summary="test-only streaming echo")


@hookimpl
def detect_format(builders: Sequence[bytes]) -> str | None:
    return str(FORMAT) if len(builders) == 1 and bytes(builders[0][:4]) == MAGIC else None


@hookimpl
def can_handle(model: ModelDescription, hw: Hardware) -> Score | None:
    return Score(50, "streaming echo") if model.format == FORMAT else None


@hookimpl
def load(model: ModelDescription, hw: Hardware) -> Graph:
    try:
        step = int(model.builders[0][4:])
    except ValueError:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "bad wasinn-stream model") from None
    if step < 1:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "wasinn-stream step must be >= 1")
    # A byte string, as WasmEdge's GGML guests send a prompt: N bytes with dims [1].
    spec = TensorSpec("text", TensorType.U8, (None,), any_length=True)
    return Graph(inputs=[spec], outputs=[TensorSpec("text", TensorType.U8, (None,))], state=step)


@hookimpl
def init_execution_context(graph: Graph) -> Context:
    return Context(graph, extra={"input": b"", "pos": 0, "last": b"", "out": b""})


@hookimpl
def set_input(context: Context, index: int, tensor: Tensor) -> None:
    context.extra.update(input=bytes(tensor.data), pos=0, last=b"")


@hookimpl
def compute(context: Context) -> None:
    context.extra["out"] = context.extra["input"]


@hookimpl
def get_output(context: Context, index: int) -> np.ndarray:
    return np.frombuffer(context.extra["out"], np.uint8)


@hookimpl
def compute_single(context: Context) -> None:
    extra, step = context.extra, context.graph.state
    if extra["pos"] >= len(extra["input"]):
        raise WasiNnError(ErrorCode.END_OF_SEQUENCE, "the echo has ended")
    extra["last"] = extra["input"][extra["pos"]:extra["pos"] + step]
    extra["pos"] += step


@hookimpl
def get_output_single(context: Context, index: int) -> np.ndarray:
    return np.frombuffer(context.extra["last"], np.uint8)


@hookimpl
def fini_single(context: Context) -> None:
    context.extra.update(pos=0, last=b"")
