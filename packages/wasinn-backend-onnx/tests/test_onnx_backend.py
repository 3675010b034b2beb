"""The backend through wasinn's embedder API (``StoreState``): the same calls a guest makes, with
tensors built in Python, for what nn-run cannot express (i8, bool, threads) and for internals."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
from onnx import TensorProto, helper
from onnx_test_models import DIGITS_MODEL, affine_model, model, multi_io_model, unary_model, value

import wasinn
import wasinn_backend_onnx
from wasinn import (
    Cpu,
    Decline,
    Device,
    ErrorCode,
    ExecutionTarget,
    Hardware,
    ModelDescription,
    ModelFormat,
    Score,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
)
from wasinn.host.state import StoreState
from wasinn_backend_onnx import backend as backend_module
from wasinn_backend_onnx.providers import GPU_PROVIDERS

CPU_HW = Hardware(cpu=Cpu("x86_64", "intel", "test cpu", 3, frozenset()))


def load(host: wasinn.WasiNnHost, data: bytes, config: dict[str, Any] | None = None) -> tuple[StoreState, int]:
    """A new store holding ``data`` as a named model (a fresh name: the host caches named graphs)."""
    name = f"m{len(list(host.named.names()))}"
    host.register_model(name, data, config=config)
    state = host.new_state()
    return state, state.load_by_name(name)


def run(state: StoreState, graph: int, *inputs: Tensor) -> list[np.ndarray]:
    context = state.init_execution_context(graph)
    for index, tensor in enumerate(inputs):
        state.set_input(context, index, tensor)
    state.compute(context)
    count = state.context(context).output_count
    return [state.get_output(context, i).copy() for i in range(count)]


def f32(*shape: int) -> Tensor:
    return Tensor.from_numpy(np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape))


def test_importing_the_package_does_not_import_onnxruntime() -> None:
    code = ("import sys, wasinn_backend_onnx as b; info = b.backend_info(); "
            "assert 'onnxruntime' not in sys.modules, 'imported'; print(info.runtime_version)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ort.__version__


def test_backend_info() -> None:
    info = wasinn_backend_onnx.backend_info()
    assert info.runtime == "onnxruntime"
    assert info.unavailable is None
    assert ModelFormat.ONNX in info.formats
    assert info.concurrent_contexts
    assert {TensorType.F16, TensorType.F32, TensorType.F64, TensorType.U8, TensorType.I8, TensorType.I32,
            TensorType.I64} <= set(info.tensor_types)


def test_graph_specs_follow_the_model(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, multi_io_model())
    loaded = state.graph(graph).graph
    f32_2x3 = (TensorType.F32, (2, 3))
    assert list(loaded.inputs) == [TensorSpec("zeta", *f32_2x3), TensorSpec("alpha", TensorType.I64, (3,))]
    assert list(loaded.outputs) == [TensorSpec("double", *f32_2x3), TensorSpec("neg", TensorType.I64, (3,)),
                                    TensorSpec("wide", TensorType.F64, (2, 3))]
    assert loaded.device == "CPUExecutionProvider"


def test_symbolic_and_unknown_dimensions_are_none(host: wasinn.WasiNnHost) -> None:
    data = unary_model("f32", ("batch", None, 4))
    state, graph = load(host, data)
    assert state.graph(graph).graph.inputs[0] == TensorSpec("x", TensorType.F32, (None, None, 4))


@pytest.mark.parametrize("dtype", ["i8", "u8"])
def test_eight_bit_tensors(dtype: str, host: wasinn.WasiNnHost) -> None:
    kind = TensorType.I8 if dtype == "i8" else TensorType.U8
    x = np.array([[-128, -1, 0, 127]], dtype=np.int8).view(np.uint8 if dtype == "u8" else np.int8)
    state, graph = load(host, unary_model(dtype))
    (out,) = run(state, graph, Tensor.from_numpy(x, kind))
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(out, x)


def test_bool_tensors_travel_as_u8(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, unary_model("bool"))
    assert state.graph(graph).graph.inputs[0].dtype is TensorType.U8
    (out,) = run(state, graph, Tensor.from_numpy(np.array([[0, 1, 7, 0]], dtype=np.uint8)))
    assert out.tobytes() == bytes([1, 0, 0, 1])  # not x, any non-zero byte being true


def test_each_context_keeps_its_own_inputs_and_outputs(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, affine_model())
    first, second = state.init_execution_context(graph), state.init_execution_context(graph)
    state.set_input(first, 0, Tensor.from_numpy(np.zeros((1, 4), np.float32)))
    state.set_input(second, 0, Tensor.from_numpy(np.ones((1, 4), np.float32)))
    state.compute(second)
    state.compute(first)
    assert state.get_output(first, 0).tolist() == [[1, 1, 1, 1]]
    assert state.get_output(second, 0).tolist() == [[3, 3, 3, 3]]
    # Contexts share the graph's one session: making one never compiles anything.
    sessions = {id(state.context(c).context.state.session) for c in (first, second)}
    assert sessions == {id(state.graph(graph).graph.state.session)}


def test_inputs_stay_set_between_computes(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, multi_io_model())
    context = state.init_execution_context(graph)
    state.set_input(context, 0, f32(2, 3))
    state.set_input(context, 1, Tensor.from_numpy(np.array([1, 2, 3], np.int64)))
    state.compute(context)
    state.set_input(context, 1, Tensor.from_numpy(np.array([4, 5, 6], np.int64)))
    state.compute(context)
    assert state.get_output(context, 1).tolist() == [-4, -5, -6]
    assert state.get_output(context, 0).tolist() == [[0, 2, 4], [6, 8, 10]]


def test_concurrent_contexts_on_threads(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, (DIGITS_MODEL).read_bytes())
    rng = np.random.default_rng(7)
    images = rng.random((8, 1, 64), dtype=np.float32)
    session = ort.InferenceSession(DIGITS_MODEL.read_bytes(), providers=["CPUExecutionProvider"])
    expected = [session.run(None, {"pixels": image})[0] for image in images]
    contexts = [state.init_execution_context(graph) for _ in range(4)]
    failures: list[str] = []

    def work(worker: int) -> None:
        for step in range(40):
            index = (worker + step) % len(images)
            state.set_input(contexts[worker], 0, Tensor.from_numpy(images[index]))
            state.compute(contexts[worker])
            got = state.get_output(contexts[worker], 0)
            if not np.allclose(got, expected[index], rtol=1e-5, atol=1e-6):
                failures.append(f"worker {worker} step {step}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(len(contexts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_dynamic_input_shapes_reallocate(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, unary_model("f32", ("n", 4)))
    context = state.init_execution_context(graph)
    for rows in (3, 1, 5):
        state.set_input(context, 0, f32(rows, 4))
        state.compute(context)
        assert state.get_output(context, 0).shape == (rows, 4)
    with pytest.raises(WasiNnError) as error:
        state.set_input(context, 0, f32(3, 5))
    assert error.value.code is ErrorCode.INVALID_ARGUMENT
    assert "expects f32[?,4], got f32[3,5]" in error.value.message


def test_outputs_whose_declared_shape_is_wrong(host: wasinn.WasiNnHost) -> None:
    # The output is declared [1,4] but follows the dynamic input: ORT refuses the preallocated
    # [1,4] buffer for a [3,4] result, and the context falls back to ORT-allocated outputs.
    data = model([helper.make_node("Add", ["x", "x"], ["y"])], [value("x", "f32", ["n", 4])],
                 [value("y", "f32", [1, 4])])
    state, graph = load(host, data)
    context = state.init_execution_context(graph)
    state.set_input(context, 0, f32(1, 4))
    state.compute(context)
    assert state.get_output(context, 0).tolist() == [[0, 2, 4, 6]]
    state.set_input(context, 0, f32(3, 4))
    state.compute(context)
    np.testing.assert_array_equal(state.get_output(context, 0), np.arange(12, dtype=np.float32).reshape(3, 4) * 2)


def test_tensors_wasi_nn_cannot_carry(host: wasinn.WasiNnHost) -> None:
    strings = model([helper.make_node("Identity", ["s"], ["t"])], [value("s", "string", [2])],
                    [value("t", "string", [2])])
    state, graph = load(host, strings)
    assert state.graph(graph).graph.inputs[0].dtype is None
    context = state.init_execution_context(graph)
    with pytest.raises(WasiNnError) as error:
        state.set_input(context, 0, Tensor.from_numpy(np.zeros(2, np.uint8)))
    assert error.value.code is ErrorCode.UNSUPPORTED_OPERATION
    assert "tensor(string)" in error.value.message

    sequence = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    data = model([helper.make_node("SequenceConstruct", ["x", "x"], ["s"])], [value("x", "f32", [1, 4])], [sequence])
    state, graph = load(host, data)
    context = state.init_execution_context(graph)
    state.set_input(context, 0, f32(1, 4))
    state.compute(context)
    with pytest.raises(WasiNnError) as error:
        state.get_output(context, 0)
    assert error.value.code is ErrorCode.UNSUPPORTED_OPERATION
    assert "is a list" in error.value.message


def test_get_output_before_compute(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, affine_model())
    context = state.init_execution_context(graph)
    with pytest.raises(WasiNnError) as error:
        state.get_output(context, 0)
    assert error.value.code is ErrorCode.INVALID_ARGUMENT


def test_runtime_failure_is_reported(host: wasinn.WasiNnHost) -> None:
    # Shapes that pass the spec ([n] and [m]) but cannot broadcast: ONNX Runtime fails at run time.
    data = model([helper.make_node("Add", ["a", "b"], ["c"])], [value("a", "f32", ["n"]), value("b", "f32", ["m"])],
                 [value("c", "f32", [None])])
    state, graph = load(host, data)
    context = state.init_execution_context(graph)
    state.set_input(context, 0, f32(3))
    state.set_input(context, 1, f32(2))
    with pytest.raises(WasiNnError) as error:
        state.compute(context)
    assert error.value.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.RUNTIME_ERROR)
    assert "ONNX Runtime failed to run" in error.value.message


def test_unloaded_graph_serves_its_live_contexts(host: wasinn.WasiNnHost) -> None:
    state = host.new_state()
    graph = state.load([affine_model()], wasinn.GraphEncoding.ONNX, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    state.unload(graph)
    state.set_input(context, 0, f32(1, 4))
    state.compute(context)
    assert state.get_output(context, 0).tolist() == [[1, 3, 5, 7]]
    state.finalize_execution_context(context)
    state.close()


def test_config_reaches_the_session(host: wasinn.WasiNnHost) -> None:
    config = {"intra_op_num_threads": 1, "inter_op_num_threads": 2, "execution_mode": "parallel",
              "graph_optimization_level": "basic", "allow_spinning": True}
    state, graph = load(host, affine_model(), config)
    options = state.graph(graph).graph.state.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_default_config(host: wasinn.WasiNnHost) -> None:
    state, graph = load(host, affine_model())
    options = state.graph(graph).graph.state.session.get_session_options()
    assert options.intra_op_num_threads == host.hardware.cpu.cores
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_bad_config_claims_the_model_then_fails_at_load(host: wasinn.WasiNnHost) -> None:
    description = ModelDescription(ModelFormat.ONNX, (affine_model(),), config={"thread": 1})
    answer = wasinn_backend_onnx.can_handle(description, CPU_HW)
    assert isinstance(answer, Score) and "load will fail" in answer.reason
    with pytest.raises(WasiNnError) as error:
        wasinn_backend_onnx.load(description, CPU_HW)
    assert error.value.code is ErrorCode.INVALID_ARGUMENT
    assert "accepted keys" in error.value.message


def test_load_checks_the_builders() -> None:
    two = ModelDescription(ModelFormat.ONNX, (affine_model(), b"weights"))
    with pytest.raises(WasiNnError) as error:
        wasinn_backend_onnx.load(two, CPU_HW)
    assert error.value.code is ErrorCode.INVALID_ARGUMENT
    garbage = ModelDescription(ModelFormat.ONNX, (b"\x00" * 40,))
    with pytest.raises(WasiNnError) as error:
        wasinn_backend_onnx.load(garbage, CPU_HW)
    assert error.value.code is ErrorCode.INVALID_ARGUMENT


def test_detect_format() -> None:
    assert wasinn_backend_onnx.detect_format([b"\x18\x00\x00\x00ORTM" + bytes(16)]) == "ort"
    assert wasinn_backend_onnx.detect_format([affine_model()]) is None
    assert wasinn_backend_onnx.detect_format([b"ORTM"]) is None


# -- accelerators, simulated ------------------------------------------------------------------------


class _PretendBuild(ModuleType):
    """onnxruntime as a build that also lists ``extra`` providers (which it cannot really start)."""

    def __init__(self, extra: str) -> None:
        super().__init__("onnxruntime")
        self._extra = extra

    def get_available_providers(self) -> list[str]:
        return [self._extra, *ort.get_available_providers()]

    def __getattr__(self, name: str) -> Any:
        return getattr(ort, name)


@pytest.fixture
def pretend_gpu(monkeypatch: pytest.MonkeyPatch) -> str:
    """A GPU provider ONNX Runtime knows but this build lacks, reported as available."""
    provider = next(p.name for p in GPU_PROVIDERS
                    if p.name in ort.get_all_providers() and p.name not in ort.get_available_providers()
                    and p.vendors == frozenset({"nvidia"}))
    monkeypatch.setattr(backend_module, "_onnxruntime", lambda: _PretendBuild(provider))
    return provider


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")  # onnxruntime's own warning
def test_silent_cpu_fallback_is_refused(pretend_gpu: str, caplog: pytest.LogCaptureFixture) -> None:
    nvidia = Hardware(cpu=CPU_HW.cpu, accelerators=(Device(ExecutionTarget.GPU, "Pretend GPU", "nvidia"),))
    description = ModelDescription(ModelFormat.ONNX, (affine_model(),), target=ExecutionTarget.GPU)
    answer = wasinn_backend_onnx.can_handle(description, nvidia)
    assert answer == Score(95, f"ONNX Runtime on Pretend GPU through {pretend_gpu}", device=pretend_gpu)
    # ONNX Runtime would create the session on the CPU alone; the backend must not accept that.
    with caplog.at_level(logging.ERROR, logger="wasinn.onnx"), pytest.raises(WasiNnError) as error:
        wasinn_backend_onnx.load(description, nvidia)
    assert error.value.code is ErrorCode.UNSUPPORTED_OPERATION
    assert f"could not enable {pretend_gpu}" in error.value.message
    assert any("refusing to fall back" in record.getMessage() for record in caplog.records)


def test_gpu_provider_without_a_gpu_declines(pretend_gpu: str) -> None:
    description = ModelDescription(ModelFormat.ONNX, (affine_model(),), target=ExecutionTarget.GPU)
    answer = wasinn_backend_onnx.can_handle(description, CPU_HW)
    assert isinstance(answer, Decline)
    assert answer.code is ErrorCode.UNSUPPORTED_OPERATION
    assert "NVIDIA GPU" in answer.reason
    auto = ModelDescription(ModelFormat.ONNX, (affine_model(),), target=ExecutionTarget.AUTO)
    assert wasinn_backend_onnx.can_handle(auto, CPU_HW) == Score(90, "ONNX Runtime on the CPU (CPUExecutionProvider)",
                                                                  device="CPUExecutionProvider")


def test_devices_lists_providers_with_hardware(pretend_gpu: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wasinn_backend_onnx.devices() == []  # the fixture's snapshot has no GPU
    monkeypatch.setenv(wasinn.hardware.HARDWARE_ENV, '{"accelerators": [{"kind": "gpu", "vendor": "nvidia"}]}')
    wasinn.hardware.probe.cache_clear()
    assert wasinn_backend_onnx.devices() == [Device(ExecutionTarget.GPU, pretend_gpu, "nvidia", "onnx")]


def test_one_session_per_graph(host: wasinn.WasiNnHost, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[object] = []

    class Counting(ModuleType):
        def InferenceSession(self, *args: Any, **kwargs: Any) -> Any:
            session = ort.InferenceSession(*args, **kwargs)
            created.append(session)
            return session

        def __getattr__(self, name: str) -> Any:
            return getattr(ort, name)

    monkeypatch.setattr(backend_module, "_onnxruntime", lambda: Counting("onnxruntime"))
    state, graph = load(host, DIGITS_MODEL.read_bytes())
    tensor = Tensor.from_numpy(np.zeros((1, 64), np.float32))
    for _ in range(3):
        context = state.init_execution_context(graph)
        for _ in range(5):
            state.set_input(context, 0, tensor)
            state.compute(context)
            state.get_output(context, 0)
        state.finalize_execution_context(context)
    assert len(created) == 1
