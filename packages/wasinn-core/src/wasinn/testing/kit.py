"""The backend conformance kit: one base class that proves a wasinn backend keeps the contract.

A backend's test suite enables it with a subclass (see docs/backend-authors.md)::

    # tests/test_conformance.py
    from wasinn import ExecutionTarget, TensorType
    from wasinn.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mybackend"                  # the entry-point name
        tensor_types = (TensorType.F32,)       # what it claims to run
        targets = (ExecutionTarget.CPU,)       # where it claims to run
        encoding = "onnx"                      # what a guest passes to load (None: autodetect)

        def make_model(self, dtype, shape):    # one input, one output: y = x + 1
            return [build_my_add_one_model(dtype, shape)]

Every test drives the backend the way guests do: through a real wasm guest (the trampoline of
:mod:`wasinn.testing.guest`), against a host that knows only this backend, found through its
entry point. What is checked: discovery and a cheap, light import; scoring (its own model on
every claimed target; declining unclaimed targets and other formats); the five operations on
every claimed tensor type; several contexts, graphs and stores; ``load_by_name``; every error
path; release of every graph and context (and, if the author counts them, of the backend's own
objects); concurrent use from several threads.

To opt out of one check, override the test in the subclass (``def test_x(self): pytest.skip(why)``).
"""

from __future__ import annotations

import gc
import importlib.metadata
import math
import random
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import pytest

from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, ModelFormat, TensorType
from wasinn.errors import WasiNnError
from wasinn.formats import detect_format as builtin_format
from wasinn.hardware import Device, Hardware
from wasinn.hookspecs import BackendInfo
from wasinn.model import ModelDescription
from wasinn.plugins import ENTRY_POINT_GROUP
from wasinn.testing.harness import (
    ALL_TARGETS,
    FOREIGN_SAMPLES,
    JUNK_BUILDERS,
    GuestDriver,
    KitHarness,
    StateDriver,
    abi_for,
    check_values,
    decode,
    expect_error,
    expect_ok,
    import_report,
    logical,
    sample_input,
)

__all__ = ["BackendConformance", "ModelFactory"]

BUILTIN_FORMATS = frozenset({ModelFormat.ONNX, ModelFormat.OPENVINO_IR, ModelFormat.TFLITE, ModelFormat.TORCHSCRIPT,
                             ModelFormat.TORCH_EXPORT, ModelFormat.GGUF, ModelFormat.TENSORFLOW})
WITX_TYPES = (TensorType.F32, TensorType.F16, TensorType.F64, TensorType.U8, TensorType.I32, TensorType.I64)

Driver = GuestDriver | StateDriver


class ModelFactory(Protocol):
    """Makes the graph builders of a one-input, one-output model of ``dtype`` and ``shape`` that
    computes ``expected(x)`` elementwise (by default ``y = x + 1``)."""

    def __call__(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]: ...


def _names(items: Sequence[Any]) -> str:
    return ", ".join(getattr(i, "value", str(i)) for i in items) or "none"


class BackendConformance:
    """Subclass as ``Test<Something>`` and set :attr:`backend`; see the module docstring.

    Everything below the "what the author provides" line may be overridden.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.wasinn_conformance]

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
        if key not in BackendConformance._kit_models:
            builders = [bytes(b) for b in self.make_model(dtype, tuple(self.shape))]
            assert builders, "make_model returned no graph builders"
            BackendConformance._kit_models[key] = builders
        return BackendConformance._kit_models[key]

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
        if type(self).live_objects is BackendConformance.live_objects:
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

    # =========================================================================================
    # discovery and metadata
    # =========================================================================================
    def test_entry_point_discovery(self, kit: KitHarness) -> None:
        points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        assert any(ep.name == self.backend for ep in points), (
            f"no entry point named {self.backend!r} in group {ENTRY_POINT_GROUP!r} (found: "
            f"{_names(sorted({ep.name for ep in points}))}); declare it in pyproject.toml under "
            f'[project.entry-points."{ENTRY_POINT_GROUP}"] and reinstall the package')
        backend = kit.backend  # asserts it registered and is available
        assert backend.distribution, f"backend {self.backend!r} was not found through an installed distribution"

    def test_backend_info_matches_claims(self, kit: KitHarness) -> None:
        info = kit.backend.info
        assert isinstance(info, BackendInfo)
        assert isinstance(info.runtime, str) and info.runtime, "BackendInfo.runtime is empty"
        assert info.formats, ("BackendInfo.formats is empty: list every format you read, so that wasinn "
                              "never asks you about the others")
        if info.tensor_types:
            unlisted = [t for t in self.tensor_types if t not in info.tensor_types]
            assert not unlisted, (f"the test claims tensor types {_names(unlisted)} that BackendInfo.tensor_types "
                                  f"({_names(info.tensor_types)}) does not list")
        unlisted_targets = [t for t in self.targets if t not in info.targets]
        assert not unlisted_targets, (f"the test claims targets {_names(unlisted_targets)} that "
                                      f"BackendInfo.targets ({_names(info.targets)}) does not list")
        again = kit.backend.hooks["backend_info"]()
        assert again == info, f"backend_info is not stable: {info!r} then {again!r}"

    def test_import_is_light(self) -> None:
        report = import_report(self.backend, self.heavy_modules)
        assert report["found"], (f"a fresh interpreter does not discover backend {self.backend!r} through the "
                                 f"{ENTRY_POINT_GROUP!r} entry points")
        assert report["unavailable"] is None, \
            f"in a fresh interpreter the backend is unavailable: {report['unavailable']}"
        assert not report["heavy"], (f"discovering the backend and calling backend_info imported "
                                     f"{', '.join(report['heavy'])}: import the runtime lazily, inside the hooks "
                                     f"that need it (load, devices)")
        spent = report.get("backend_info_s", 0.0)
        assert spent <= self.backend_info_budget_s, (f"backend_info took {spent * 1000:.1f} ms (budget "
                                                     f"{self.backend_info_budget_s * 1000:.0f} ms): it must be cheap")

    def test_detect_format_is_safe(self, kit: KitHarness) -> None:
        backend = kit.backend
        assert backend.info is not None
        custom = [f for f in backend.info.formats if f not in BUILTIN_FORMATS]
        hook = backend.hook("detect_format")
        if hook is None:
            assert not custom, (f"BackendInfo.formats lists {_names(custom)}, which wasinn cannot detect by itself: "
                                f"implement detect_format")
            pytest.skip("no detect_format hook (only built-in formats)")
        problems = []
        cases: list[tuple[str, tuple[bytes, ...], ModelFormat | None]] = [
            (f"junk #{i}", builders, None) for i, builders in enumerate(JUNK_BUILDERS)]
        cases += [(f"a {fmt.value} model", builders, fmt) for fmt, builders in FOREIGN_SAMPLES.items()]
        for label, builders, fmt in cases:
            try:
                answer = hook(builders=builders)
            except Exception as exc:
                problems.append(f"detect_format raised {type(exc).__name__} on {label}: {exc} (it must never raise)")
                continue
            if answer is not None and not isinstance(answer, str):
                problems.append(f"detect_format returned {answer!r} on {label}: a str or None")
            elif answer is not None and answer != fmt:
                problems.append(f"detect_format claimed {label} as {answer!r}")
        own = tuple(self._kit_model(self._kit_primary))
        if custom and builtin_format(own) == ModelFormat.UNKNOWN:  # make_model speaks the custom format
            answer = hook(builders=own)
            if answer not in custom:
                problems.append(f"detect_format returned {answer!r} for make_model's bytes, expected one of "
                                f"{_names(custom)}")
        assert not problems, "\n".join(problems)

    def test_devices_hook(self, kit: KitHarness) -> None:
        hook = kit.backend.hook("devices")
        if hook is None:
            pytest.skip("no devices hook (optional)")
        devices = list(hook())
        wrong = [d for d in devices if not isinstance(d, Device)]
        assert not wrong, f"devices returned {wrong!r}: a sequence of wasinn.Device"

    # =========================================================================================
    # scoring
    # =========================================================================================
    def test_scores_its_own_model(self, kit: KitHarness, target: ExecutionTarget) -> None:
        dtype = self._kit_primary
        model = self._kit_describe(kit, self._kit_model(dtype), target)
        before = self._kit_live()
        candidate = kit.host.rank(model).candidates[0]
        after = self._kit_live()
        assert before == after, (f"live_objects() went from {before} to {after} while can_handle ran: "
                                 f"scoring must not load the model")
        if not candidate.eligible:
            if target is not ExecutionTarget.CPU and not kit.host.hardware.has(target):
                pytest.skip(f"no {target.value} on this machine ({candidate.reason})")
            pytest.fail(f"can_handle did not score its own {model.describe()} for the claimed target "
                        f"{target.value}: {candidate.reason}")
        score = candidate.score
        assert score is not None and 0 < score <= 100, f"can_handle scored {score}: use 0 < score <= 100"
        assert candidate.reason.strip(), "Score.reason is empty: `wasinn explain` shows it to users"
        driver = kit.guest()
        graph = self._kit_load(driver, dtype, target)
        context = expect_ok(driver.init_execution_context(graph), f"target {target.value}")
        self._kit_run(driver, context, dtype, 1, f"target {target.value}")

    def test_declines_unclaimed_target(self, kit: KitHarness, unclaimed_target: ExecutionTarget) -> None:
        target = unclaimed_target
        builders = self._kit_model(self._kit_primary)
        model = self._kit_describe(kit, builders, target)
        candidate = kit.host.rank(model).candidates[0]
        problems = []
        if candidate.eligible:
            problems.append(f"can_handle scored {candidate.score:g} ({candidate.reason}) for target {target.value}, "
                            f"which the test does not claim (targets: {_names(self.targets)}): return "
                            f"Decline(reason, ErrorCode.UNSUPPORTED_OPERATION), or claim it")
        for label, host in (("load", kit.host), ("load with the backend forced", kit.new_host(forced=True))):
            outcome = kit.guest(host=host).load(builders, self.encoding, target)
            if outcome.code is not ErrorCode.UNSUPPORTED_OPERATION:
                problems.append(f"{label} for target {target.value}: expected unsupported_operation, got "
                                f"{outcome.describe()}{outcome.said()}")
        assert not problems, "\n".join(problems)

    def test_does_not_score_other_formats(self, kit: KitHarness) -> None:
        info = kit.backend.info
        assert info is not None
        foreign = {fmt: b for fmt, b in FOREIGN_SAMPLES.items() if fmt not in info.formats}
        if not foreign:
            pytest.skip("the backend reads every format the kit has samples of")
        problems = []
        for fmt, builders in foreign.items():
            candidate = kit.host.rank(ModelDescription(format=fmt, builders=builders)).candidates[0]
            if candidate.eligible:
                problems.append(f"can_handle scored a {fmt.value} model {candidate.score:g} ({candidate.reason})")
        forced = kit.guest(host=kit.new_host(forced=True))
        for fmt, builders in foreign.items():
            outcome = forced.load(builders, None)
            if outcome.ok:
                problems.append(f"load of a {fmt.value} model with the backend forced succeeded")
        assert not problems, "\n".join(problems)

    # =========================================================================================
    # the five operations
    # =========================================================================================
    def test_five_operations(self, kit: KitHarness, dtype: TensorType) -> None:
        driver = kit.driver(dtype)
        graph = self._kit_load(driver, dtype)
        context = expect_ok(driver.init_execution_context(graph), f"{dtype.value} graph")
        self._kit_run(driver, context, dtype, 0, f"{dtype.value} model")
        expect_ok(driver.finalize_execution_context(context))
        expect_ok(driver.unload(graph))

    def test_graph_describes_the_model(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver = kit.guest()
        graph = driver.guest.state.graph(self._kit_load(driver, dtype)).graph
        assert len(graph.inputs) == 1 and len(graph.outputs) == 1, (
            f"load returned a Graph with {len(graph.inputs)} input(s) and {len(graph.outputs)} output(s); "
            f"the model has one of each (Graph.inputs/outputs list them in index order)")
        for kind, spec in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
            assert spec.dtype in (None, dtype), \
                f"Graph {kind} {spec.name!r} says {spec.describe()}, the model is {dtype.value}"
            assert spec.accepts_shape(self.shape), (f"Graph {kind} {spec.name!r} says {spec.describe()}, the model "
                                                    f"is {list(self.shape)}")
        assert isinstance(graph.device, str) and graph.device, "Graph.device must name what runs the graph"

    def test_autodetect(self, kit: KitHarness) -> None:
        builders = self._kit_model(self._kit_primary)
        detected = kit.host.detect_format(builders)
        if detected == ModelFormat.UNKNOWN:
            if self.encoding == "tensorflow":
                pytest.skip("TensorFlow SavedModels have no signature to detect")
            pytest.fail("wasinn cannot detect the format of make_model's bytes: a backend with a format of its "
                        "own must implement detect_format")
        info = kit.backend.info
        assert info is not None
        assert detected in info.formats, (f"make_model's bytes are detected as {detected.value}, which "
                                          f"BackendInfo.formats ({_names(info.formats)}) does not list")
        driver = kit.guest()
        graph = expect_ok(driver.load(builders, None), "encoding autodetect")
        self._kit_run(driver, expect_ok(driver.init_execution_context(graph)), self._kit_primary, 2, "autodetect")

    def test_load_by_name(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        kit.host.register_model("kit-model", self._kit_model(dtype), encoding=self.encoding)
        for config in (None, "{}"):
            driver = kit.guest()
            graph = expect_ok(driver.load_by_name("kit-model", config), "a model registered as 'kit-model'")
            context = expect_ok(driver.init_execution_context(graph), "named graph")
            self._kit_run(driver, context, dtype, 3, f"named model, config {config or 'none'}")
        expect_error(kit.guest().load_by_name("kit-no-such-model"), ErrorCode.NOT_FOUND, "an unregistered name")

    def test_several_contexts_on_one_graph(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver = kit.guest()
        graph = self._kit_load(driver, dtype)
        contexts = [expect_ok(driver.init_execution_context(graph), f"context #{i}") for i in range(3)]
        raws = [sample_input(dtype, self.shape, seed) for seed in (4, 5, 6)]
        for i in (0, 1, 2):
            expect_ok(driver.set_input(contexts[i], 0, raws[i], dtype), f"context #{i}")
        for i in (2, 0, 1):
            expect_ok(driver.compute(contexts[i]), f"context #{i}")
        for i in (1, 2, 0):
            self._kit_check_output(driver, contexts[i], dtype, raws[i],
                                   f"context #{i} of 3 on one graph, inputs set before any compute")

    def test_context_is_reusable(self, kit: KitHarness) -> None:
        driver, _, context = self._kit_ready_context(kit)
        for round_ in range(3):
            self._kit_run(driver, context, self._kit_primary, 7 + round_, f"round {round_ + 1} on one context")
        raw = sample_input(self._kit_primary, self.shape, 9)
        self._kit_check_output(driver, context, self._kit_primary, raw, "get_output called a second time")

    def test_input_is_copied_during_set_input(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        raw, scribble = sample_input(dtype, self.shape, 10), sample_input(dtype, self.shape, 11)
        record, data_ptr = driver.put_tensor(raw, dtype)
        assert driver.guest.call("set_input", context, 0, record) == 0, "set_input failed"
        driver.guest.memory.write(driver.store, scribble.tobytes(), data_ptr)  # the guest reuses its buffer
        expect_ok(driver.compute(context))
        try:
            self._kit_check_output(driver, context, dtype, raw, "guest overwrote its input buffer after set_input")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nThe backend read the input after set_input returned: tensor.data is a "
                                 f"view of guest memory valid only during the call; copy it") from None

    def test_several_graphs_in_one_store(self, kit: KitHarness) -> None:
        types = [t for t in dict.fromkeys(self.tensor_types) if abi_for(t) == "witx"][:3]
        types = types if len(types) > 1 else [self._kit_primary] * 2
        driver = kit.guest()
        graphs = [(self._kit_load(driver, t), t) for t in types]
        contexts = [(expect_ok(driver.init_execution_context(g)), t) for g, t in graphs]
        for i, (context, dtype) in enumerate(contexts):
            self._kit_run(driver, context, dtype, 12 + i, f"graph #{i} ({dtype.value}) of {len(graphs)} in one store")
        expect_ok(driver.unload(graphs[0][0]))
        self._kit_run(driver, contexts[-1][0], contexts[-1][1], 15, "the last graph after the first was unloaded")

    def test_context_outlives_unloaded_graph(self, kit: KitHarness) -> None:
        driver, graph, context = self._kit_ready_context(kit)
        expect_ok(driver.unload(graph))
        self._kit_run(driver, context, self._kit_primary, 16, "a context whose graph handle was unloaded")
        expect_ok(driver.finalize_execution_context(context))
        kit.spy_of(kit.host).check_released("after unload, then finalize_execution_context of its last context")

    def test_streaming_hooks(self, kit: KitHarness) -> None:
        # WasmEdge's compute_single / get_output_single / fini_single: all three hooks or none; none
        # means unsupported_operation; a stream ends, stays ended until fini_single, and repeats.
        from wasinn.testing.streaming import check_streaming_hooks

        driver, _, context = self._kit_ready_context(kit)
        expect_ok(driver.set_input(context, 0, sample_input(self._kit_primary, self.shape, 23), self._kit_primary))
        check_streaming_hooks(driver.guest.state, context)
        self._kit_run(driver, context, self._kit_primary, 24, "the same context after the streaming calls")

    # =========================================================================================
    # errors
    # =========================================================================================
    def test_wrong_input_type(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        others = [t for t in WITX_TYPES if t is not dtype]
        other = next((t for t in others if t.itemsize == dtype.itemsize), others[0])
        outcome = driver.set_input(context, 0, sample_input(other, self.shape), other)
        expect_error(outcome, ErrorCode.INVALID_ARGUMENT,
                     f"a {other.value}{list(self.shape)} tensor for a {dtype.value} input: check tensor.dtype in "
                     f"set_input")
        self._kit_run(driver, context, dtype, 17, "the same context after the refused input")

    def test_wrong_input_shape(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        problems = []
        for shape in self.wrong_shapes(self.shape):
            outcome = driver.set_input(context, 0, sample_input(dtype, shape), dtype)
            if outcome.code is not ErrorCode.INVALID_ARGUMENT:
                problems.append(f"set_input of {dtype.value}{list(shape)} for a {dtype.value}{list(self.shape)} "
                                f"input: expected invalid_argument, got {outcome.describe()}{outcome.said()}")
        assert not problems, "\n".join(problems) + "\n(check tensor.shape in set_input)"
        self._kit_run(driver, context, dtype, 18, "the same context after the refused inputs")

    def test_wrong_index(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        raw = sample_input(dtype, self.shape)
        for index in (1, 0xFFFFFFFF):
            expect_error(driver.set_input(context, index, raw, dtype), ErrorCode.INVALID_ARGUMENT,
                         f"input index {index} of a one-input model")
        self._kit_run(driver, context, dtype, 19, "before asking for a bad output index")
        for index in (1, 0xFFFFFFFF):
            expect_error(driver.get_output(context, index, 1 << 16)[0], ErrorCode.INVALID_ARGUMENT,
                         f"output index {index} of a one-output model")

    def test_unknown_handles(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, graph, context = self._kit_ready_context(kit)
        bad = 4242
        raw = sample_input(dtype, self.shape)
        expect_error(driver.init_execution_context(bad), ErrorCode.INVALID_ARGUMENT, f"graph {bad}")
        expect_error(driver.set_input(bad, 0, raw, dtype), ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_error(driver.compute(bad), ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_error(driver.get_output(bad, 0, 1 << 16)[0], ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_error(driver.unload(bad), ErrorCode.INVALID_ARGUMENT, f"graph {bad}")
        expect_error(driver.finalize_execution_context(bad), ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_ok(driver.finalize_execution_context(context))
        expect_error(driver.finalize_execution_context(context), ErrorCode.INVALID_ARGUMENT, "a finalized context")
        expect_ok(driver.unload(graph))
        expect_error(driver.init_execution_context(graph), ErrorCode.INVALID_ARGUMENT, "an unloaded graph")

    def test_small_output_buffer(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        self._kit_run(driver, context, dtype, 20, "before reading into a small buffer")
        nbytes = self._kit_nbytes(dtype)
        outcome, _ = driver.get_output(context, 0, nbytes - 1)
        expect_error(outcome, ErrorCode.TOO_LARGE, f"a {nbytes - 1}-byte buffer for a {nbytes}-byte output")
        assert outcome.value == nbytes, (f"get_output into a small buffer reported {outcome.value} bytes needed, "
                                         f"expected {nbytes}")
        outcome, _ = driver.get_output(context, 0, nbytes)
        assert expect_ok(outcome, f"a buffer of exactly {nbytes} bytes") == nbytes

    def test_compute_without_inputs_fails(self, kit: KitHarness) -> None:
        driver, _, context = self._kit_ready_context(kit)
        expect_error(driver.compute(context), None, "compute before set_input: report the missing input(s)")
        self._kit_run(driver, context, self._kit_primary, 21, "the same context after the failed compute")

    def test_get_output_before_compute_fails(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        expect_error(driver.get_output(context, 0, 1 << 16)[0], None, "get_output before any compute")
        expect_ok(driver.set_input(context, 0, sample_input(dtype, self.shape), dtype))
        expect_error(driver.get_output(context, 0, 1 << 16)[0], None,
                     "get_output after set_input but before compute (must not return stale or uninitialised data)")

    def test_bad_model_bytes(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver = kit.guest()
        problems = []
        for label, builders in self.bad_models(dtype, tuple(self.shape)).items():
            for encoding in dict.fromkeys((self.encoding, None)):
                outcome = driver.load(builders, encoding)
                if outcome.ok:
                    problems.append(f"load of a corrupt model ({label}), encoding {encoding or 'autodetect'}: "
                                    f"expected an error code, got success (graph {outcome.value})")
        assert not problems, "\n".join(problems)
        assert driver.guest.state.graph_count == 0
        kit.spy_of(kit.host).check_released("after failed loads")
        self._kit_check_live(before, "after failed loads")
        self._kit_run(driver, expect_ok(driver.init_execution_context(self._kit_load(driver, dtype))), dtype, 22,
                      "a good model after the corrupt ones")

    # =========================================================================================
    # lifecycle
    # =========================================================================================
    def test_store_close_releases_everything(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver = kit.guest()
        graphs = [self._kit_load(driver, dtype) for _ in range(2)]
        contexts = [expect_ok(driver.init_execution_context(g)) for g in (graphs[0], graphs[0], graphs[1])]
        self._kit_run(driver, contexts[0], dtype, 23, "before closing the store")
        tables = driver.guest.state.tables
        driver.close()
        kit.forget(driver)
        assert tables.closed and not tables.graphs and not tables.contexts, "the store's tables were not emptied"
        kit.spy_of(kit.host).check_released("after the store closed")
        self._kit_check_live(before, "after the store closed")

    def test_store_close_after_unloading_a_graph_in_use(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver, graph, _ = self._kit_ready_context(kit)
        expect_ok(driver.unload(graph))  # the context keeps the graph alive until the store closes
        driver.close()
        kit.forget(driver)
        kit.spy_of(kit.host).check_released("after the store closed")
        self._kit_check_live(before, f"after the store closed ({dtype.value} graph unloaded while in use)")

    def test_collected_store_releases_everything(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver = kit.guest(track=False)
        context = expect_ok(driver.init_execution_context(self._kit_load(driver, dtype)))
        self._kit_run(driver, context, dtype, 24, "before dropping the store")
        tables = driver.guest.state.tables
        del driver
        gc.collect()
        assert tables.closed, ("the store was garbage-collected but its wasi-nn state was not released: something "
                               "still references the store")
        kit.spy_of(kit.host).check_released("after the store was garbage-collected")
        self._kit_check_live(before, "after the store was garbage-collected")

    def test_unload_and_finalize_release(self, kit: KitHarness) -> None:
        before = self._kit_live()
        driver, graph, context = self._kit_ready_context(kit)
        self._kit_run(driver, context, self._kit_primary, 25, "before releasing")
        expect_ok(driver.finalize_execution_context(context))
        expect_ok(driver.unload(graph))
        kit.spy_of(kit.host).check_released("after finalize_execution_context and unload")
        self._kit_check_live(before, "after finalize_execution_context and unload")

    def test_host_close_releases_named_graphs(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        host = kit.new_host()
        host.register_model("kit-model", self._kit_model(dtype), encoding=self.encoding)
        for _ in range(2):
            driver = kit.guest(host=host)
            context = expect_ok(driver.init_execution_context(expect_ok(driver.load_by_name("kit-model"))))
            self._kit_run(driver, context, dtype, 26, "a named model")
            driver.close()
            kit.forget(driver)
        spy = kit.spy_of(host)
        assert spy.loads == 1, f"the named model was loaded {spy.loads} times by two stores; expected once"
        host.close()
        spy.check_released("after host.close()")
        self._kit_check_live(before, "after host.close()")

    # =========================================================================================
    # threads
    # =========================================================================================
    def _kit_threads(self, kit: KitHarness, *, named: bool) -> None:
        dtype = self._kit_primary
        host = kit.host  # made here, not raced for by the threads
        if named:
            host.register_model("kit-threads", self._kit_model(dtype), encoding=self.encoding)
        count = max(2, self.threads)
        barrier = threading.Barrier(count)
        errors: list[str] = []

        def worker(index: int) -> None:
            try:
                driver = kit.guest(host=host)  # its own engine and store
                barrier.wait(timeout=120)
                graph = expect_ok(driver.load_by_name("kit-threads"), f"thread {index}") if named \
                    else self._kit_load(driver, dtype)
                context = expect_ok(driver.init_execution_context(graph), f"thread {index}")
                for it in range(self.iterations):
                    what = f"thread {index} of {count}, inference {it + 1}"
                    raw = sample_input(dtype, self.shape, 100 + index * self.iterations + it)
                    expect_ok(driver.set_input(context, 0, raw, dtype), what)
                    barrier.wait(timeout=120)  # every thread has set its input before any computes
                    expect_ok(driver.compute(context), what)
                    self._kit_check_output(driver, context, dtype, raw, what)
                    barrier.wait(timeout=120)
            except threading.BrokenBarrierError:
                pass  # another thread failed first; its error is the one to report
            except BaseException as exc:
                errors.append(f"thread {index}: {exc}")
                barrier.abort()

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)  # switch threads often, so that unsafe shared state shows
        try:
            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=300)
        finally:
            sys.setswitchinterval(interval)
        stuck = sum(thread.is_alive() for thread in threads)
        assert not stuck, f"{stuck} of {count} threads did not finish in 300 s (a deadlock?)"
        assert not errors, "\n".join(errors)

    def test_threads_share_a_named_graph(self, kit: KitHarness) -> None:
        self._kit_threads(kit, named=True)

    def test_threads_with_their_own_graphs(self, kit: KitHarness) -> None:
        self._kit_threads(kit, named=False)
