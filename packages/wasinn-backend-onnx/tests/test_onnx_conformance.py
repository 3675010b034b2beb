"""wasinn's backend conformance kit, run against this backend with ONNX models of every claimed type."""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort  # type: ignore[import-untyped]
from onnx import TensorProto, helper
from onnx_test_models import model

from wasinn import ExecutionTarget, TensorType
from wasinn.testing import BackendConformance
from wasinn.testing.harness import FOREIGN_SAMPLES, JUNK_BUILDERS, KitHarness
from wasinn_backend_onnx.backend import ORT_FORMAT, TENSOR_TYPES, ContextState, GraphState

_ELEMENT = {TensorType.F16: TensorProto.FLOAT16, TensorType.F32: TensorProto.FLOAT, TensorType.F64: TensorProto.DOUBLE,
            TensorType.U8: TensorProto.UINT8, TensorType.I8: TensorProto.INT8, TensorType.I32: TensorProto.INT32,
            TensorType.I64: TensorProto.INT64}


def add_one(dtype: TensorType, shape: tuple[int, ...]) -> bytes:
    """y = x + 1. ONNX Runtime's CPU Add has no 8-bit kernels: those add in int32 and cast back
    (wrapping like numpy's uint8/int8 arithmetic)."""
    element = _ELEMENT[dtype]
    x = helper.make_tensor_value_info("x", element, list(shape))
    y = helper.make_tensor_value_info("y", element, list(shape))
    if dtype in (TensorType.U8, TensorType.I8):
        one = helper.make_tensor("one", TensorProto.INT32, [], [1])
        nodes = [helper.make_node("Cast", ["x"], ["wide"], to=TensorProto.INT32),
                 helper.make_node("Constant", [], ["one"], value=one),
                 helper.make_node("Add", ["wide", "one"], ["sum"]),
                 helper.make_node("Cast", ["sum"], ["y"], to=element)]
    else:
        one = helper.make_tensor("one", element, [], [1])
        nodes = [helper.make_node("Constant", [], ["one"], value=one), helper.make_node("Add", ["x", "one"], ["y"])]
    return model(nodes, [x], [y])


class TestOnnxConformance(BackendConformance):
    backend = "onnx"
    tensor_types = TENSOR_TYPES
    targets = (ExecutionTarget.CPU,)  # the fixtures' hardware snapshot has no GPU or NPU
    encoding = "onnx"
    heavy_modules = ("onnxruntime", "onnx", "wasinn_backend_onnx.backend", "importlib.metadata")

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        return [add_one(dtype, shape)]

    def live_objects(self) -> int:
        return sum(isinstance(o, GraphState | ContextState) for o in gc.get_objects())

    def test_detect_format_is_safe(self, kit: KitHarness) -> None:
        # The kit's version expects make_model to produce the backend's own format; here that is
        # ONNX, which wasinn detects itself, while the backend's own format is ORT's (.ort).
        hook = kit.backend.hooks["detect_format"]
        for builders in JUNK_BUILDERS:
            assert hook(builders=builders) is None, builders
        for builders in FOREIGN_SAMPLES.values():
            assert hook(builders=builders) is None, builders
        with tempfile.TemporaryDirectory() as folder:
            source, saved = Path(folder) / "m.onnx", Path(folder) / "m.ort"
            source.write_bytes(add_one(TensorType.F32, (2, 3)))
            options = ort.SessionOptions()
            options.optimized_model_filepath = str(saved)
            options.add_session_config_entry("session.save_model_format", "ORT")
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            assert hook(builders=(saved.read_bytes(),)) == str(ORT_FORMAT)
