"""wasinn's backend conformance kit, run against this backend with torch.export programs of every
claimed type (the format that declares its tensors' types and shapes, which the kit checks)."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence

import pytest
import torch
from torch_models import TORCH_DTYPE, AddOne, exported

from wasinn import ExecutionTarget, Limits, TensorType
from wasinn.host.host import WasiNnHost
from wasinn.testing import BackendConformance
from wasinn.testing.harness import KitHarness
from wasinn_backend_pytorch._info import TENSOR_TYPES
from wasinn_backend_pytorch.backend import ContextState, GraphState


class _GuestCodeKit(KitHarness):
    """The kit's hosts, with the embedder's opt-in to guest TorchScript/.pt2 (refused by default)."""

    def new_host(self, *, forced: bool = False) -> WasiNnHost:
        host = super().new_host(forced=forced)
        host.limits = Limits(allow_guest_code=True)
        return host


class TestPytorchConformance(BackendConformance):
    backend = "pytorch"
    tensor_types = TENSOR_TYPES
    targets = (ExecutionTarget.CPU,)  # the fixtures' snapshot has no GPU, and this torch no CUDA device
    encoding = "pytorch"
    heavy_modules = ("torch", "wasinn_backend_pytorch.backend", "importlib.metadata")

    @pytest.fixture
    def kit(self) -> Iterator[KitHarness]:
        with _GuestCodeKit(self.backend, hardware=self.hardware) as harness:
            yield harness

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        return [exported(AddOne(), torch.zeros(shape, dtype=TORCH_DTYPE[dtype]))]

    def live_objects(self) -> int:
        return sum(type(o) in (GraphState, ContextState) for o in gc.get_objects())
