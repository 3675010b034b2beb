"""No guest-chosen paths through ``load`` either: an ONNX model may keep tensors in other files
("external data", by path, absolute or relative to the working directory). From a guest, that is a
host path of the guest's choosing (OpenVINO reads it and hands the bytes back as an output, see
tests/hostile/test_real_backends.py). wasinn-core must refuse such a model before any backend sees it,
wherever in the model the reference hides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import wasmtime
from hostile_abi import CPU_ONLY, INVALID_ARGUMENT, SUCCESS, AbiHarness, Load, quiet_wasinn

from wasinn import BackendInfo, Graph, Limits, ModelFormat, TensorSpec, TensorType, WasiNnHost, hookimpl
from wasinn.hookspecs import Context, Score

ENGINE = wasmtime.Engine()


# ---- a minimal protobuf writer (wasinn-core's tests do not depend on the onnx package) -----------------------
def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def tensor(*, external: bool = True, location: bool = True) -> bytes:
    """TensorProto W, f32[4]; its data in the file /etc/passwd."""
    out = field(1, 4) + field(2, 1) + field(8, b"W")
    if location:
        out += field(13, field(1, b"location") + field(2, b"/etc/passwd"))
    if external:
        out += field(14, 1)  # data_location = EXTERNAL
    return out


def model(graph: bytes, *, functions: bytes = b"", training: bytes = b"") -> bytes:
    """ModelProto: ir_version 8, opset 13, the graph."""
    out = field(1, 8) + field(8, field(2, 13)) + field(7, graph)
    if functions:
        out += field(25, functions)
    if training:
        out += field(20, training)
    return out


INPUT = field(11, field(1, b"X"))  # GraphProto.input (a ValueInfoProto named X)
PLAIN = model(field(1, field(1, b"X") + field(2, b"Y") + field(4, b"Identity")) + INPUT)
CASES = {
    "initializer": model(field(5, tensor()) + INPUT),
    "initializer, location only": model(field(5, tensor(external=False)) + INPUT),
    "initializer, data_location only": model(field(5, tensor(location=False)) + INPUT),
    "sparse initializer": model(field(15, field(1, tensor())) + INPUT),
    "Constant node attribute": model(field(1, field(2, b"W") + field(4, b"Constant")
                                           + field(5, field(1, b"value") + field(5, tensor()))) + INPUT),
    "tensors attribute": model(field(1, field(4, b"X") + field(5, field(1, b"v") + field(10, tensor()))) + INPUT),
    "If subgraph": model(field(1, field(4, b"If") + field(5, field(1, b"then_branch")
                                                             + field(6, field(5, tensor()))))),
    "Loop body in a subgraph of a subgraph": model(field(1, field(4, b"If") + field(5, field(6, field(
        1, field(4, b"Loop") + field(5, field(6, field(5, tensor())))))))),
    "function body": model(INPUT, functions=field(7, field(4, b"Constant") + field(5, field(5, tensor())))),
    "training initialization": model(INPUT, training=field(1, field(5, tensor()))),
}


class OnnxRecorder:
    """A backend that reads ONNX and records every model it is asked to load."""

    def __init__(self) -> None:
        self.loaded: list[bytes] = []

    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(runtime="recorder", runtime_version="0", formats=(ModelFormat.ONNX,))

    @hookimpl
    def can_handle(self, model: object, hw: object) -> Score:
        return Score(50, "records ONNX models")

    @hookimpl
    def load(self, model: object, hw: object) -> Graph:
        self.loaded.append(model.builders[0])  # type: ignore[attr-defined]
        spec = TensorSpec("X", TensorType.F32, (4,))
        return Graph(inputs=[spec], outputs=[spec])

    @hookimpl
    def init_execution_context(self, graph: Graph) -> Context:
        return Context(graph)

    @hookimpl
    def set_input(self, context: Context, index: int, tensor: object) -> None:
        pass

    @hookimpl
    def compute(self, context: Context) -> None:
        pass

    @hookimpl
    def get_output(self, context: Context, index: int) -> object:
        raise NotImplementedError


@pytest.fixture
def recorder() -> Iterator[tuple[OnnxRecorder, AbiHarness]]:
    backend = OnnxRecorder()
    # In-process: the recorder lists what it was handed in this process.
    host = WasiNnHost(backends={"recorder": backend}, entry_points=False, allow=["recorder"], hardware=CPU_ONLY,
                      limits=Limits(guest_models="in-process"))
    linker = wasmtime.Linker(ENGINE)
    host.add_to_linker(linker)
    with quiet_wasinn():
        harness = AbiHarness(host, ENGINE, linker)
        yield backend, harness
        harness.guest.close()
    host.close()


def test_a_self_contained_onnx_model_reaches_the_backend(recorder: tuple[OnnxRecorder, AbiHarness]) -> None:
    backend, harness = recorder  # the control: the recorder does see ordinary ONNX models
    assert harness.step(Load((PLAIN,), encoding=1)) == SUCCESS
    assert backend.loaded == [PLAIN]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("encoding", [1, 5], ids=["onnx", "autodetect"])
def test_external_data_is_refused_before_any_backend_sees_it(recorder: tuple[OnnxRecorder, AbiHarness],
                                                              case: str, encoding: int) -> None:
    backend, harness = recorder
    assert harness.step(Load((CASES[case],), encoding=encoding)) == INVALID_ARGUMENT
    assert backend.loaded == [], f"the backend was handed a model with external data ({case})"
