"""wasinn's backend conformance kit, run against this backend with IR models of every claimed type."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from ov_helpers import IR_TYPES, ir_builders

from wasinn import ExecutionTarget, TensorType
from wasinn.testing import BackendConformance
from wasinn_backend_openvino import runtime


class TestOpenVinoConformance(BackendConformance):
    backend = "openvino"
    tensor_types = runtime.TENSOR_TYPES
    targets = (ExecutionTarget.CPU,)  # this machine, like CI, has no Intel GPU or NPU
    encoding = "openvino"
    heavy_modules = ("openvino", "wasinn_backend_openvino.backend", "importlib.metadata")

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        element = IR_TYPES[dtype]
        x = ops.parameter(list(shape), element, name="x")
        one = ops.convert(ops.constant(np.array(1, np.float32)), element)
        model = ov.Model([ops.result(ops.add(x, one))], [x], f"add_one_{dtype.value}")
        with TemporaryDirectory() as folder:
            return ir_builders(model, Path(folder))

