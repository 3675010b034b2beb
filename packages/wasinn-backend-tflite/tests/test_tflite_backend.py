"""The backend through wasinn's embedder API (no wasm): config, dtypes, shapes, contexts, delegates."""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tflite_testlib import DATA, DIGITS_MODEL, WAMR

import wasinn_backend_tflite
from wasinn import (
    Decline,
    ErrorCode,
    ExecutionTarget,
    GraphEncoding,
    Limits,
    Score,
    StoreState,
    Tensor,
    TensorType,
    WasiNnError,
    WasiNnHost,
)
from wasinn.cli.main import main as cli
from wasinn.worker import probe
from wasinn_backend_tflite import _probe, _runtime, backend

TFLITE = GraphEncoding.TENSORFLOWLITE
CPU = ExecutionTarget.CPU


@pytest.fixture
def host() -> Iterator[WasiNnHost]:
    with WasiNnHost(backend="tflite") as h:
        yield h


@pytest.fixture
def state(host: WasiNnHost) -> Iterator[StoreState]:
    s = host.new_state()
    yield s
    s.close()


@pytest.fixture
def in_process_state() -> Iterator[StoreState]:
    """A store whose guest models run in this process (``Limits(guest_models="in-process")``): for
    the tests of what only exists there (the backend's own state, output views, the child probe)."""
    with WasiNnHost(backend="tflite", limits=Limits(guest_models="in-process")) as h:
        s = h.new_state()
        yield s
        s.close()


def run(state: StoreState, context: int, *arrays: np.ndarray, kinds: tuple[TensorType, ...] = ()) -> list[np.ndarray]:
    for index, array in enumerate(arrays):
        kind = kinds[index] if kinds else None
        state.set_input(context, index, Tensor.from_numpy(array, kind))
    state.compute(context)
    graph = state.context(context).loaded.graph
    return [state.get_output(context, i).copy() for i in range(len(graph.outputs))]


def load_file(state: StoreState, path: Path, target: ExecutionTarget = CPU) -> int:
    return state.load([path.read_bytes()], TFLITE, target)


def code_of(excinfo: pytest.ExceptionInfo[WasiNnError]) -> ErrorCode:
    return excinfo.value.code


# -- discovery and description ---------------------------------------------------------------------
def test_backend_info_names_the_interpreter_in_use():
    info = wasinn_backend_tflite.backend_info()
    runtime = _runtime.select()
    assert isinstance(runtime, _runtime.Runtime)
    assert info.runtime == runtime.distribution in ("ai-edge-litert", "tflite-runtime")
    assert info.runtime_version == importlib.metadata.version(runtime.distribution)
    assert info.unavailable is None
    assert info.concurrent_contexts
    assert TensorType.I8 in info.tensor_types and TensorType.BF16 not in info.tensor_types


def test_importing_and_describing_does_not_import_the_runtime():
    code = ("import sys, wasinn_backend_tflite as b; b.backend_info(); "
            "print(sorted(m for m in ('ai_edge_litert', 'tflite_runtime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_wasinn_backends_lists_tflite(capfd: pytest.CaptureFixture[str]):
    assert cli(["backends", "--json"]) == 0
    report = {entry["name"]: entry for entry in json.loads(capfd.readouterr().out)}
    entry = report["tflite"]
    assert entry["available"] and entry["distribution"] == "wasinn-backend-tflite"
    assert entry["runtime"] == wasinn_backend_tflite.backend_info().runtime
    assert entry["formats"] == ["tflite"]


@pytest.mark.parametrize("key", ["litert", "tflite-runtime"])
def test_interpreter_can_be_forced(key: str):
    chosen = _runtime.select({_runtime.INTERPRETER_ENV: key})
    distribution, module = {"litert": ("ai-edge-litert", "ai_edge_litert"),
                            "tflite-runtime": ("tflite-runtime", "tflite_runtime")}[key]
    if importlib.util.find_spec(module) is None:
        assert isinstance(chosen, str) and "not installed" in chosen
    elif key == "tflite-runtime" and int(np.__version__.split(".")[0]) >= 2:
        assert isinstance(chosen, str) and "numpy<2" in chosen
    else:
        assert isinstance(chosen, _runtime.Runtime) and chosen.distribution == distribution


def test_unknown_interpreter_name_makes_the_backend_unavailable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(_runtime.INTERPRETER_ENV, "tensorflow")
    info = wasinn_backend_tflite.backend_info()
    assert info.unavailable is not None and "litert or tflite-runtime" in info.unavailable


def test_explain_scores_tflite_natively(host: WasiNnHost):
    ranking = host.explain([(WAMR / "sum.tflite").read_bytes()])
    winner = ranking.winner
    assert winner is not None and winner.backend == "tflite"
    assert winner.score == backend.SCORE
    assert winner.device is not None and winner.device.startswith("cpu (XNNPACK")


def test_can_handle_declines_other_formats_and_bad_models(host: WasiNnHost):
    hw = host.hardware
    good = host.describe_model([(WAMR / "sum.tflite").read_bytes()])
    assert isinstance(wasinn_backend_tflite.can_handle(model=good, hw=hw), Score)
    broken = bytearray((WAMR / "sum.tflite").read_bytes())
    broken[0:4] = (0xFFFFFF00).to_bytes(4, "little")
    answer = wasinn_backend_tflite.can_handle(model=host.describe_model([bytes(broken)]), hw=hw)
    assert isinstance(answer, Decline) and answer.code is ErrorCode.INVALID_ARGUMENT
    assert "root table" in answer.reason
    custom = wasinn_backend_tflite.can_handle(model=host.describe_model([(DATA / "custom_op.tflite").read_bytes()]),
                                              hw=hw)
    assert isinstance(custom, Decline) and custom.code is ErrorCode.UNSUPPORTED_OPERATION


# -- config ----------------------------------------------------------------------------------------
def test_default_threads_follow_the_cpu(host: WasiNnHost, state: StoreState):
    graph = state.graph(load_file(state, WAMR / "sum.tflite")).graph
    cores = host.hardware.cpu.cores
    assert graph.device == f"cpu (XNNPACK, {cores} thread{'s' if cores != 1 else ''})"


@pytest.mark.parametrize(("config", "device"), [
    ({"num_threads": 1}, "cpu (XNNPACK, 1 thread)"),
    ({"num_threads": 3, "xnnpack": False}, "cpu (builtin kernels, 3 threads)"),
])
def test_config_sets_threads_and_kernels(host: WasiNnHost, state: StoreState, config: dict, device: str):
    host.register_model("sum", WAMR / "sum.tflite", config=config)
    graph = state.load_by_name("sum")
    assert state.graph(graph).graph.device == device
    context = state.init_execution_context(graph)
    (out,) = run(state, context, np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1))
    assert out.ravel().tolist() == [300.0]


@pytest.mark.parametrize("config", [{"threads": 2}, {"num_threads": 0}, {"num_threads": "2"}, {"num_threads": True},
                                    {"xnnpack": "yes"}, {"delegate": 5}, {"delegate_options": [1]}])
def test_bad_config_is_invalid_argument(host: WasiNnHost, state: StoreState, config: dict):
    host.register_model("sum", WAMR / "sum.tflite")
    with pytest.raises(WasiNnError) as excinfo:
        state.load_by_name("sum", config)
    assert code_of(excinfo) is ErrorCode.INVALID_ARGUMENT


# -- tensors -----------------------------------------------------------------------------------------
def test_int8_and_uint8_quantized_inputs_are_taken_as_is(state: StoreState):
    context = state.init_execution_context(load_file(state, DATA / "quant.tflite"))
    q = np.array([[10, 12, 20, 0]], np.uint8)
    s = np.array([[-3, 1, 127, -128]], np.int8)
    real_q, real_s = run(state, context, q, s)
    np.testing.assert_allclose(real_q, (q.astype(np.float32) - 10) * 0.5)
    np.testing.assert_allclose(real_s, (s.astype(np.float32) + 3) * 0.25)


def test_specs_name_types_and_dynamic_dimensions(state: StoreState):
    graph = state.graph(load_file(state, WAMR / "mult_out.tflite")).graph
    assert [s.describe() for s in graph.inputs] == ["f32[?,4,4,1]"]
    assert [s.describe() for s in graph.outputs] == ["f32[?,1,4,1]", "f32[?,1,4,1]"]
    birds = state.graph(load_file(state, DATA / "quant.tflite")).graph
    assert [s.dtype for s in birds.inputs] == [TensorType.U8, TensorType.I8]


def test_dynamic_inputs_keep_each_others_data_across_a_resize(state: StoreState):
    context = state.init_execution_context(load_file(state, DATA / "dyn_add.tflite"))
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 10, np.float32)
    # a is set (and resized to batch 2) first; resizing b must not lose a.
    (out,) = run(state, context, a, b)
    np.testing.assert_array_equal(out, a + b)
    # Back to batch 1, one input at a time: the first resize happens while b is still [2,3].
    (out,) = run(state, context, a[:1], b[:1])
    np.testing.assert_array_equal(out, a[:1] + b[:1])


def test_resize_that_the_model_cannot_take_is_invalid_argument(state: StoreState):
    # affine's MUL/ADD take any batch, but a zero-size batch of a [-1,4] input is refused cleanly
    # or computed; either way the context must stay usable afterwards.
    context = state.init_execution_context(load_file(state, DATA / "affine.tflite"))
    try:
        run(state, context, np.zeros((0, 4), np.float32))
    except WasiNnError as exc:
        assert exc.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.RUNTIME_ERROR)
    (out,) = run(state, context, np.array([[1, 2, 3, 4]], np.float32))
    assert out.tolist() == [[3.0, 5.0, 7.0, 9.0]]


def test_get_output_before_compute_is_invalid_argument(state: StoreState):
    context = state.init_execution_context(load_file(state, WAMR / "sum.tflite"))
    with pytest.raises(WasiNnError) as excinfo:
        state.get_output(context, 0)
    assert code_of(excinfo) is ErrorCode.INVALID_ARGUMENT


def test_a_held_output_view_blocks_compute_instead_of_crashing(in_process_state: StoreState):
    state = in_process_state  # the backend's own output views and interpreters
    context = state.init_execution_context(load_file(state, DATA / "affine.tflite"))
    x = np.ones((5000, 4), np.float32)  # an 80 kB output: returned as a view, not copied
    state.set_input(context, 0, Tensor.from_numpy(x))
    state.compute(context)
    held = state.get_output(context, 0)
    assert not held.flags.owndata
    for blocked in (lambda: state.compute(context),
                    lambda: state.set_input(context, 0, Tensor.from_numpy(x[:10]))):  # a resize
        with pytest.raises(WasiNnError) as excinfo:
            blocked()
        assert code_of(excinfo) is ErrorCode.BUSY
    assert held[0].tolist() == [3.0, 3.0, 3.0, 3.0]
    del held
    state.compute(context)


def test_small_outputs_are_copied(state: StoreState):
    context = state.init_execution_context(load_file(state, DIGITS_MODEL))
    state.set_input(context, 0, Tensor.from_numpy(np.zeros((1, 64), np.float32)))
    state.compute(context)
    held = state.get_output(context, 0)
    state.compute(context)  # nothing pins the interpreter
    assert held.shape == (1, 10) and abs(float(held.sum()) - 1.0) < 1e-5


# -- contexts ----------------------------------------------------------------------------------------
def _slot(state: StoreState, context: int) -> backend.Slot | None:
    slot: backend.Slot | None = state.context(context).context.state.slot
    return slot


def _graph_state(state: StoreState, graph: int) -> backend.GraphState:
    graph_state: backend.GraphState = state.graph(graph).graph.state
    return graph_state


def test_contexts_lease_interpreters_lazily_and_finalized_ones_are_reused(in_process_state: StoreState):
    state = in_process_state  # the backend's own output views and interpreters
    graph = load_file(state, WAMR / "sum.tflite")
    first = state.init_execution_context(graph)
    second = state.init_execution_context(graph)
    assert _slot(state, first) is None and _slot(state, second) is None  # an idle context holds nothing
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    assert run(state, first, x)[0].ravel().tolist() == [300.0]
    assert run(state, second, x * 2)[0].ravel().tolist() == [600.0]
    one, two = _slot(state, first), _slot(state, second)
    assert one is not None and two is not None and one.interpreter is not two.interpreter
    assert _graph_state(state, graph).interpreters == 2  # the default limit is the CPU count (>= 2 here)
    state.set_input(first, 0, Tensor.from_numpy(np.concatenate([x, x])))  # batch 2: reallocated
    state.finalize_execution_context(first)
    third = state.init_execution_context(graph)
    assert run(state, third, x)[0].ravel().tolist() == [300.0]
    slot = _slot(state, third)
    assert slot is not None and slot.interpreter is one.interpreter  # reused, back at batch 1
    assert _graph_state(state, graph).interpreters == 2


def test_contexts_share_interpreters_beyond_the_limit_without_mixing_data(host: WasiNnHost):
    host.register_model("sum", WAMR / "sum.tflite", config={"max_interpreters": 1})
    state = host.new_state()
    graph = state.load_by_name("sum")
    a, b, c = (state.init_execution_context(graph) for _ in range(3))
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    state.set_input(a, 0, Tensor.from_numpy(x))
    state.set_input(b, 0, Tensor.from_numpy(np.concatenate([x, x]) * 2))  # takes a's interpreter, batch 2
    assert _slot(state, a) is None and _slot(state, b) is not None
    state.compute(a)  # takes it back: a's saved input is put back, at a's batch size
    state.compute(b)  # and again; a's output is saved first
    state.set_input(c, 0, Tensor.from_numpy(x * 3))
    state.compute(c)
    assert state.get_output(a, 0).ravel().tolist() == [300.0]
    assert state.get_output(b, 0).ravel().tolist() == [600.0, 600.0]
    assert state.get_output(c, 0).ravel().tolist() == [900.0]
    state.compute(a)  # computing again without setting inputs uses a's own input
    assert state.get_output(a, 0).ravel().tolist() == [300.0]
    assert _graph_state(state, graph).interpreters == 1
    for context in (a, b, c):
        state.finalize_execution_context(context)
    assert _graph_state(state, graph).interpreters == 1 and len(_graph_state(state, graph).idle) == 1
    state.close()


def test_a_context_with_a_live_output_view_keeps_its_interpreter(host: WasiNnHost):
    host.register_model("affine", DATA / "affine.tflite", config={"max_interpreters": 1})
    state = host.new_state()
    graph = state.load_by_name("affine")
    a, b = state.init_execution_context(graph), state.init_execution_context(graph)
    x = np.ones((3, 4), np.float32)
    state.set_input(a, 0, Tensor.from_numpy(x))
    state.compute(a)
    interpreter = _slot(state, a).interpreter  # type: ignore[union-attr]
    view = interpreter.tensor(_graph_state(state, graph).outputs[0].tensor)()  # pins a's buffers
    state.set_input(b, 0, Tensor.from_numpy(x * 2))  # cannot take a's interpreter: builds another
    assert _slot(state, a).interpreter is interpreter  # type: ignore[union-attr]
    assert _graph_state(state, graph).interpreters == 2
    state.compute(b)
    assert view.ravel().tolist() == [3.0] * 12
    del view
    state.finalize_execution_context(a)
    state.finalize_execution_context(b)
    assert _graph_state(state, graph).interpreters == 1  # the one built beyond the limit is not kept
    state.close()


def test_max_interpreters_is_checked(host: WasiNnHost):
    for bad in (0, -1, True, "2", 2000):
        host.register_model("sum", WAMR / "sum.tflite", config={"max_interpreters": bad})
        with pytest.raises(WasiNnError) as excinfo:
            host.new_state().load_by_name("sum")
        assert code_of(excinfo) in (ErrorCode.INVALID_ARGUMENT, ErrorCode.UNSUPPORTED_OPERATION), bad


@pytest.mark.parametrize("max_interpreters", [4, 1])  # 1: the threads' contexts keep taking each other's
def test_contexts_run_concurrently_from_threads(host: WasiNnHost, max_interpreters: int):
    host.register_model("affine", DATA / "affine.tflite", config={"max_interpreters": max_interpreters})
    state = host.new_state()
    graph = state.load_by_name("affine")
    contexts = [state.init_execution_context(graph) for _ in range(4)]
    failures: list[str] = []

    def work(n: int, context: int) -> None:
        rng = np.random.default_rng(n)
        for _ in range(50):
            x = rng.standard_normal((3, 4)).astype(np.float32)
            (out,) = run(state, context, x)
            if not np.allclose(out, x * 2 + 1):
                failures.append(f"thread {n}")

    threads = [threading.Thread(target=work, args=(n, c)) for n, c in enumerate(contexts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert _graph_state(state, graph).interpreters <= 4
    state.close()


def test_contexts_outlive_an_unloaded_graph(state: StoreState):
    graph = load_file(state, WAMR / "max.tflite")
    context = state.init_execution_context(graph)
    state.unload(graph)
    (out,) = run(state, context, np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1))
    assert out.ravel().tolist() == [24.0]


# -- delegates and targets -------------------------------------------------------------------------
@pytest.fixture
def no_allowed_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_runtime, "_allowed", {})
    monkeypatch.delenv(_runtime.DELEGATES_ENV, raising=False)
    monkeypatch.setattr(_runtime, "_edgetpu", lambda: None)


@pytest.mark.usefixtures("no_allowed_delegates")
def test_gpu_without_a_delegate_declines_with_unsupported_operation(host: WasiNnHost, state: StoreState):
    model = host.describe_model([(WAMR / "sum.tflite").read_bytes()], target=ExecutionTarget.GPU)
    answer = wasinn_backend_tflite.can_handle(model=model, hw=host.hardware)
    assert isinstance(answer, Decline) and answer.code is ErrorCode.UNSUPPORTED_OPERATION
    with pytest.raises(WasiNnError) as excinfo:
        wasinn_backend_tflite.load(model=model, hw=host.hardware)
    assert code_of(excinfo) is ErrorCode.UNSUPPORTED_OPERATION


@pytest.mark.usefixtures("no_allowed_delegates")
def test_delegates_come_only_from_the_host(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(_runtime.DELEGATES_ENV, "gpu=/opt/gpu_delegate.so:tpu=libedgetpu.so.1:bogus")
    found = [(d.kind, d.library) for d in _runtime.allowed_delegates()]
    assert found == [("gpu", "/opt/gpu_delegate.so"), ("tpu", "libedgetpu.so.1"), ("gpu", "bogus")]
    assert _runtime.find_delegate("gpu_delegate.so") == _runtime.Delegate("/opt/gpu_delegate.so", "gpu")
    assert _runtime.find_delegate("/tmp/guest-written.so") is None


@pytest.mark.usefixtures("no_allowed_delegates")
def test_an_allowed_library_that_is_no_delegate_fails_to_load_cleanly(host: WasiNnHost):
    libc = ctypes.util.find_library("c")
    assert libc
    wasinn_backend_tflite.allow_delegate(libc, "gpu")
    model = host.describe_model([(WAMR / "sum.tflite").read_bytes()], target=ExecutionTarget.GPU)
    answer = wasinn_backend_tflite.can_handle(model=model, hw=host.hardware)
    assert isinstance(answer, Score) and answer.device == f"gpu ({Path(libc).name})"
    with pytest.raises(WasiNnError) as excinfo:
        wasinn_backend_tflite.load(model=model, hw=host.hardware)
    assert code_of(excinfo) is ErrorCode.UNSUPPORTED_OPERATION
    assert "cannot load TFLite delegate" in excinfo.value.message


# -- the probe ---------------------------------------------------------------------------------------
def test_probe_policy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(_probe.PROBE_ENV, raising=False)
    assert _probe.wanted(trusted=False) and not _probe.wanted(trusted=True)
    monkeypatch.setenv(_probe.PROBE_ENV, "always")
    assert _probe.wanted(trusted=True)
    monkeypatch.setenv(_probe.PROBE_ENV, "never")
    assert not _probe.wanted(trusted=False)


def test_probe_turns_a_crash_into_invalid_argument(monkeypatch: pytest.MonkeyPatch, in_process_state: StoreState):
    state = in_process_state  # the probe is how a host that loads a guest's model itself survives it
    monkeypatch.setenv(_probe.PROBE_ENV, "always")
    with pytest.raises(WasiNnError) as excinfo:  # both runtimes segfault in invoke on this model
        load_file(state, DATA / "crash_depthwise_no_bias.tflite")
    assert code_of(excinfo) is ErrorCode.INVALID_ARGUMENT
    assert "crashes the interpreter (SIGSEGV" in excinfo.value.message


def test_a_crash_in_an_isolated_worker_is_the_guests_error_and_the_host_goes_on(state: StoreState):
    # The default host runs the guest's model in a worker, where no probe runs (the worker is the
    # throwaway process): the interpreter's crash kills the worker, and the guest gets runtime_error
    # naming the signal (the probe of an in-process host says invalid_argument, at load).
    graph = load_file(state, DATA / "crash_depthwise_no_bias.tflite")
    context = state.init_execution_context(graph)
    inputs = state.graph(graph).graph.inputs
    with pytest.raises(WasiNnError) as excinfo:
        for index, spec in enumerate(inputs):
            shape = tuple(d or 1 for d in spec.shape or (1,))
            state.set_input(context, index, Tensor.from_numpy(np.zeros(shape, spec.dtype.numpy_dtype)))
        state.compute(context)
    assert code_of(excinfo) is ErrorCode.RUNTIME_ERROR
    assert "SIGSEGV" in excinfo.value.message
    with pytest.raises(WasiNnError) as excinfo:  # the graph's worker is gone: later calls say so
        state.compute(context)
    assert code_of(excinfo) is ErrorCode.RUNTIME_ERROR
    context = state.init_execution_context(load_file(state, WAMR / "sum.tflite"))  # the store goes on
    assert run(state, context, np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1))[0].ravel().tolist() == [300.0]


@pytest.mark.parametrize("name", ["no_split_options.tflite", "one_input_batch_matmul.tflite",
                                  "degenerate_call_once_cycle.tflite"])
def test_known_crashers_are_refused_before_any_interpreter(monkeypatch: pytest.MonkeyPatch, state: StoreState,
                                                            name: str):
    monkeypatch.setenv(_probe.PROBE_ENV, "never")
    with pytest.raises(WasiNnError) as excinfo:
        load_file(state, DATA / name)
    assert code_of(excinfo) is ErrorCode.INVALID_ARGUMENT
    assert "malformed TFLite model" in excinfo.value.message


def test_probe_runs_once_per_model(monkeypatch: pytest.MonkeyPatch, in_process_state: StoreState):
    state = in_process_state  # the probe is how a host that loads a guest's model itself survives it
    calls = []
    real = probe.run_probe
    monkeypatch.setattr(probe, "run_probe", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(_probe.CHILD, "passed", type(_probe.CHILD.passed)())
    data = (DATA / "affine.tflite").read_bytes()
    for _ in range(3):
        state.load([data], TFLITE, CPU)  # guest bytes: untrusted, probed
    assert len(calls) == 1


def test_verification_is_shared_by_can_handle_and_load_and_then_released(host: WasiNnHost,
                                                                         monkeypatch: pytest.MonkeyPatch):
    from wasinn_backend_tflite import _verify
    calls = []
    real = _verify.verify
    monkeypatch.setattr(_verify, "verify", lambda data: calls.append(len(data)) or real(data))
    model = host.describe_model([(WAMR / "sum.tflite").read_bytes()])
    assert isinstance(wasinn_backend_tflite.can_handle(model=model, hw=host.hardware), Score)
    graph = wasinn_backend_tflite.load(model=model, hw=host.hardware)
    assert len(calls) == 1
    assert all(held is not model.builders[0] for held, _ in backend._verified.entries)
    wasinn_backend_tflite.unload(graph=graph)
