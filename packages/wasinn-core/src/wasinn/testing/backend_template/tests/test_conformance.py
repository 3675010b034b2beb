"""wasinn's conformance kit, run against this backend: keep it green.

Every test drives the backend the way WebAssembly guests do (through a real wasm guest and the
wasi-nn ABI), against a wasinn host that finds the backend through its entry point. See
docs/backend-authors.md in wasinn for what each test checks and how to adapt it.
"""

from __future__ import annotations

from collections.abc import Sequence

from wasinn_backend_yourbackend import backend as plugin
from wasinn_backend_yourbackend.model import make_model

from wasinn import ExecutionTarget, TensorType
from wasinn.testing import BackendConformance


class TestYourbackendConformance(BackendConformance):
    backend = "yourbackend"  # the entry-point name
    tensor_types = plugin.TENSOR_TYPES  # every type the backend claims
    targets = (ExecutionTarget.CPU,)  # every target it serves on this machine
    encoding = None  # a format of its own: guests load it with autodetect
    heavy_modules = ()  # your runtime's modules: discovering the backend must not import them

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        return [make_model(dtype, shape, scale=1, bias=1)]  # y = x + 1

    def live_objects(self) -> int:
        return int(plugin.live_objects())
