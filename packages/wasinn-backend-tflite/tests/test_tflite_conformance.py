"""wasinn's backend conformance kit, run against this backend with TFLite models of every kit-tested type.

The models (y = x + 1, shape [2, 3]) are committed in tests/data (made by tests/data/make_models.py),
so the kit also runs where only tflite-runtime is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wasinn import ExecutionTarget, TensorType
from wasinn.testing import BackendConformance

DATA = Path(__file__).resolve().parent / "data"
MODELS = {TensorType.F32: "add_one_f32.tflite", TensorType.I32: "add_one_i32.tflite",
          TensorType.I64: "add_one_i64.tflite"}


class TestTfliteConformance(BackendConformance):
    backend = "tflite"
    tensor_types = tuple(MODELS)
    targets = (ExecutionTarget.CPU,)  # gpu/tpu need a delegate, which this machine has none of
    encoding = "tensorflowlite"
    heavy_modules = ("ai_edge_litert", "tflite_runtime", "wasinn_backend_tflite.backend", "importlib.metadata")
    shape = (2, 3)

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        assert shape == (2, 3), "the committed kit models are [2, 3]"
        return [(DATA / MODELS[dtype]).read_bytes()]
