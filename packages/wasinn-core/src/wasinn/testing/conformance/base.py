"""The ground the conformance checks stand on: :class:`ConformanceBase`.

It holds what a backend's author sets and may override (the backend's name, the tensor types and
targets it claims, :meth:`~ConformanceBase.make_model`, tolerances, corrupt models, a live-object
count), the parametrisation of ``dtype``/``target``/``unclaimed_target``, the ``kit`` fixture (a
:class:`~wasinn.testing.harness.KitHarness`) and the ``_kit_*`` helpers every group of checks uses
(load the author's model, run one inference and compare its output, check that nothing leaked).
Each group of checks in this package derives from it; :class:`wasinn.testing.BackendConformance`
combines them all.
"""

from __future__ import annotations

import gc
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import pytest

from wasinn.enums import ExecutionTarget, GraphEncoding, TensorType
from wasinn.errors import WasiNnError
from wasinn.hardware import Hardware
from wasinn.model import ModelDescription
from wasinn.testing.drivers import GuestDriver, StateDriver, abi_for
from wasinn.testing.harness import KitHarness
from wasinn.testing.values import ALL_TARGETS, check_values, decode, expect_ok, logical, sample_input

__all__ = ["ConformanceBase", "Driver", "ModelFactory"]

Driver = GuestDriver | StateDriver


class ModelFactory(Protocol):
    """Makes the graph builders of a one-input, one-output model of ``dtype`` and ``shape`` that
    computes ``expected(x)`` elementwise (by default ``y = x + 1``)."""

    def __call__(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]: ...


def _names(items: Sequence[Any]) -> str:
    return ", ".join(getattr(i, "value", str(i)) for i in items) or "none"


class ConformanceBase:
    """What every group of checks stands on: the author's settings and hooks, the parametrisation,
    the ``kit`` fixture and the helpers the checks share (no tests).

    Everything below the "what the author provides" line may be overridden.
    """

    # -- what the author provides -------------------------------------------------------------------
    #: The backend's entry-point name in group ``wasinn.backends``.
    backend: ClassVar[str] = ""
    #: The tensor types the backend claims (each is run through all five operations).
    tensor_types: ClassVar[Sequence[TensorType]] = (TensorType.F32,)
    #: The targets the backend claims to serve *on the machine running the tests*; the others
    #: (of cpu, gpu, tpu) must be declined.
    targets: ClassVar[Sequence[ExecutionTarget]] = (ExecutionTarget.CPU,)
    #: The encoding a guest passes to ``load`` ("onnx", "openvino", "tensorflowlite", ...); ``None``
    #: for autodetect (the only choice for a format of your own).
    encoding: ClassVar[str | None] = None
    #: The shape of the models :meth:`make_model` is asked for.
    shape: ClassVar[tuple[int, ...]] = (2, 3)
    #: Modules that discovering the backend and calling ``backend_info`` must not import.
    heavy_modules: ClassVar[Sequence[str]] = ()
    #: The hardware snapshot the backend scores against (``None``: this machine, probed).
    hardware: ClassVar[Hardware | None] = None
    #: Concurrency test: threads, and inferences per thread.
    threads: ClassVar[int] = 4
    iterations: ClassVar[int] = 6
    #: Seconds one ``backend_info`` call may take (in a fresh interpreter).
    backend_info_budget_s: ClassVar[float] = 0.1
    #: Alternative to overriding :meth:`make_model`.
    model_factory: ClassVar[ModelFactory | None] = None

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        """The graph builders of a model with one input and one output, both ``dtype[shape]``,
        computing :meth:`expected`. Called once per tensor type (cached)."""
        factory = type(self).model_factory
        if factory is None:
            raise NotImplementedError(f"{type(self).__name__}: override make_model(dtype, shape) or set model_factory")
        return factory(dtype, shape)

    def expected(self, x: np.ndarray) -> np.ndarray:
        """What the model of :meth:`make_model` computes (bf16 inputs arrive as float32)."""
        result: np.ndarray = x + np.asarray(1, dtype=x.dtype)
        return result

    def tolerance(self, dtype: TensorType) -> tuple[float, float]:
        """(rtol, atol) for comparing outputs of ``dtype``."""
        return {TensorType.F16: (1e-3, 1e-3), TensorType.BF16: (1e-2, 1e-2), TensorType.F32: (1e-5, 1e-6),
                TensorType.F64: (1e-12, 1e-12)}.get(dtype, (0.0, 0.0))

    def wrong_shapes(self, shape: tuple[int, ...]) -> Sequence[tuple[int, ...]]:
        """Input shapes the model must refuse at ``set_input`` (with matching byte lengths)."""
        return [(*shape[:-1], shape[-1] + 1), (*shape, 1)] if shape else [(2,)]

    def bad_models(self, dtype: TensorType, shape: tuple[int, ...]) -> dict[str, Sequence[bytes]]:
        """Corrupt models (label → builders) that must fail to load. Extend it with corruptions
        that get past format detection (a valid header, a broken body): only those reach you."""
        good = [bytes(b) for b in self._kit_model(dtype)]
        rng = random.Random(1)
        return {
            "every builder truncated to half": [b[: len(b) // 2] for b in good],
            "the first builder cut to 16 bytes": [good[0][:16], *good[1:]],
            "random bytes of the same lengths": [bytes(rng.getrandbits(8) for _ in b) for b in good],
            "empty builders": [b"" for _ in good],
        }

    def live_objects(self) -> int | None:
        """(Optional) How many graphs/contexts/sessions the backend holds right now; the kit checks
        that it returns to where it was. ``None``: not counted."""
        return None

    # -- parametrisation and fixtures ----------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "dtype" in metafunc.fixturenames:
            types = list(dict.fromkeys(self.tensor_types))
            metafunc.parametrize("dtype", types, ids=[t.value for t in types])
        if "target" in metafunc.fixturenames:
            targets = [t for t in dict.fromkeys(self.targets) if t in ALL_TARGETS]  # not AUTO: no device
            metafunc.parametrize("target", targets, ids=[t.value for t in targets])
        if "unclaimed_target" in metafunc.fixturenames:
            others = [t for t in ALL_TARGETS if t not in self.targets]
            metafunc.parametrize("unclaimed_target", others, ids=[t.value for t in others])

    @pytest.fixture
    def kit(self) -> Iterator[KitHarness]:
        if not self.backend:
            pytest.fail(f"{type(self).__name__}: set `backend = \"<entry-point name>\"`")
        with KitHarness(self.backend, hardware=self.hardware) as harness:
            yield harness

    # -- helpers (not tests) ---------------------------------------------------------------------------
    _kit_models: ClassVar[dict[tuple[type, TensorType, tuple[int, ...]], list[bytes]]] = {}

    def _kit_model(self, dtype: TensorType) -> list[bytes]:
        key = (type(self), dtype, tuple(self.shape))
        if key not in ConformanceBase._kit_models:
            builders = [bytes(b) for b in self.make_model(dtype, tuple(self.shape))]
            assert builders, "make_model returned no graph builders"
            ConformanceBase._kit_models[key] = builders
        return ConformanceBase._kit_models[key]

    @property
    def _kit_primary(self) -> TensorType:
        """The tensor type single-type tests use: f32 if claimed, else the first a witx guest can send."""
        claimed = list(self.tensor_types)
        assert claimed, "tensor_types is empty: claim at least one tensor type"
        if TensorType.F32 in claimed:
            return TensorType.F32
        return next((t for t in claimed if abi_for(t) == "witx"), claimed[0])

    def _kit_encoding(self) -> GraphEncoding | None:
        return GraphEncoding(self.encoding) if self.encoding else None

    def _kit_describe(self, kit: KitHarness, builders: Sequence[bytes],
                      target: ExecutionTarget = ExecutionTarget.CPU) -> ModelDescription:
        try:
            return kit.host.describe_model(builders, encoding=self._kit_encoding(), target=target)
        except WasiNnError as exc:
            pytest.fail(f"wasinn cannot take make_model's bytes with encoding {self.encoding or 'autodetect'}: {exc}")

    def _kit_live(self) -> int | None:
        if type(self).live_objects is ConformanceBase.live_objects:
            return None  # not counted: skip the collection
        gc.collect()
        return self.live_objects()

    def _kit_check_live(self, before: int | None, when: str) -> None:
        if before is None:
            return
        now = self._kit_live()
        assert now == before, f"{when}: live_objects() is {now}, it was {before} before: the backend leaks"

    def _kit_nbytes(self, dtype: TensorType) -> int:
        return math.prod(self.shape) * dtype.itemsize

    def _kit_check_output(self, driver: Driver, context: int, dtype: TensorType, raw: np.ndarray,
                          what: str) -> None:
        nbytes = self._kit_nbytes(dtype)
        outcome, data = driver.get_output(context, 0, nbytes * 2 + 64)
        expect_ok(outcome, what)
        assert outcome.value == nbytes, (f"get_output ({what}): wrote {outcome.value} bytes, expected {nbytes} "
                                         f"for {dtype.value}{list(self.shape)}")
        want = np.asarray(self.expected(logical(dtype, raw)))
        if dtype is not TensorType.BF16:
            want = want.astype(dtype.numpy_dtype)
        check_values(decode(dtype, data, self.shape), want, *self.tolerance(dtype), f"output 0 ({what})")

    def _kit_run(self, driver: Driver, context: int, dtype: TensorType, seed: int, what: str) -> None:
        raw = sample_input(dtype, self.shape, seed)
        expect_ok(driver.set_input(context, 0, raw, dtype), f"{what}: input 0 {dtype.value}{list(self.shape)}")
        expect_ok(driver.compute(context), what)
        self._kit_check_output(driver, context, dtype, raw, what)

    def _kit_load(self, driver: Driver, dtype: TensorType, target: ExecutionTarget = ExecutionTarget.CPU) -> int:
        return expect_ok(driver.load(self._kit_model(dtype), self.encoding, target),
                         f"{dtype.value}{list(self.shape)} model, encoding {self.encoding or 'autodetect'}, "
                         f"target {target.value}")

    def _kit_ready_context(self, kit: KitHarness) -> tuple[GuestDriver, int, int]:
        driver = kit.guest()
        graph = self._kit_load(driver, self._kit_primary)
        return driver, graph, expect_ok(driver.init_execution_context(graph))
