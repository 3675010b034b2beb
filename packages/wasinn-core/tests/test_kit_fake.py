"""The conformance kit against the test-only ``fake`` backend: a correct backend passes all of it.

This is also the smallest complete example of enabling the kit in a backend's test suite.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence

import numpy as np
import pytest

from wasinn import Cpu, Device, ExecutionTarget, Hardware, TensorType
from wasinn.testing import BackendConformance
from wasinn_test_backends import affine_model, fake

#: ``fake`` serves the GPU target only where there is a GPU: give it one, so both claims are tested.
MACHINE_WITH_A_GPU = Hardware(cpu=Cpu("x86_64", "intel", "kit CPU", 4, frozenset()),
                              accelerators=(Device(ExecutionTarget.GPU, "kit GPU", "nvidia"),))


class TestFakeBackend(BackendConformance):
    backend = "fake"
    tensor_types = fake.TENSOR_TYPES
    targets = (ExecutionTarget.CPU, ExecutionTarget.GPU)
    hardware = MACHINE_WITH_A_GPU
    heavy_modules = ("onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime")

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        return [affine_model(dtype.value, shape)]  # y = 2x + 1

    def expected(self, x: np.ndarray) -> np.ndarray:
        return x * np.asarray(2, x.dtype) + np.asarray(1, x.dtype)

    def live_objects(self) -> int:
        return len(fake.LIVE_GRAPHS) + len(fake.LIVE_CONTEXTS)

    @pytest.fixture(autouse=True)
    def _forget_other_modules_leftovers(self) -> None:
        # fake counts ids: a stale id left by another module's test could be reused and skew the count.
        gc.collect()
        fake.LIVE_GRAPHS.clear()
        fake.LIVE_CONTEXTS.clear()

