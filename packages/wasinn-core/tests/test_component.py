"""wasi:nn for components (wasinn.component) on the test backends, with the committed probe guest.

The probe (guests/component/probe, C with the canonical ABI by hand) runs one scenario per call;
these tests check what it sees (results, error codes and data) and what the host holds afterwards.
Runs in the core env (wasmtime>=51 has wasmtime.component).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import wasmtime
from core_paths import REPO
from wasmtime.component import Component, Linker

import wasinn
from wasinn.cli.main import main
from wasinn.component import VERSION, is_component, is_component_bytes, state
from wasinn.component.interface import define_interfaces
from wasinn.component.state import ComponentState
from wasinn.errors import ConfigurationError
from wasinn.host.limits import Limits
from wasinn_test_backends import affine_model, fake, make_model

PROBE = REPO / "guests" / "component" / "probe" / "probe.wasm"
DIGITS = REPO / "guests" / "component" / "digits" / "digits.wasm"
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"
MODES = ("fast", "portable")


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return wasmtime.Engine()


@pytest.fixture(scope="module")
def probe_component(engine: wasmtime.Engine) -> Component:
    return Component.from_file(engine, str(PROBE))


class Probe:
    """One instance of the probe in its own component store."""

    def __init__(self, host: wasinn.WasiNnHost, engine: wasmtime.Engine, component: Component,
                 mode: str = "fast") -> None:
        self.linker = Linker(engine)
        define_interfaces(self.linker, mode=mode)
        self.store = host.new_component_store(engine)
        self.instance = host.instantiate_component(self.store, self.linker, component)
        func = self.instance.get_func(self.store, "probe")
        assert func is not None
        self.func = func

    @property
    def state(self) -> ComponentState:
        data = self.store.data()
        assert isinstance(data, ComponentState)
        return data

    def __call__(self, scenario: str, model: bytes = b"") -> str:
        answer = self.func(self.store, scenario, model)
        self.func.post_return(self.store)
        assert isinstance(answer, str)
        return answer

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def host() -> Iterator[wasinn.WasiNnHost]:
    # In-process: these tests count the fake backend's live graphs and contexts in this process
    # (a component guest's models in workers: tests/test_worker.py drives the same core operations).
    with wasinn.WasiNnHost(limits=Limits(guest_models="in-process")) as h:
        yield h


@pytest.fixture(params=MODES)
def probe(request: pytest.FixtureRequest, host: wasinn.WasiNnHost, engine: wasmtime.Engine,
          probe_component: Component) -> Iterator[Probe]:
    p = Probe(host, engine, probe_component, request.param)
    yield p
    p.close()


def f32_hex(values: list[float]) -> str:
    return struct.pack(f"<{len(values)}f", *values).hex()


AFFINE_OUT = f32_hex([3.0, 5.0, 7.0, 9.0])  # input 1,2,3,4 * 2 + 1


# ---- detection --------------------------------------------------------------------------------------
def test_detects_components_and_core_modules(tmp_path: Path) -> None:
    assert is_component(PROBE) and is_component(DIGITS)
    assert not is_component(NN_RUN)
    assert is_component_bytes(b"\0asm\x0d\0\x01\0") and not is_component_bytes(b"\0asm\x01\0\0\0")
    assert is_component_bytes(b";; hi\n(component)") and not is_component_bytes(b"(module)")
    assert not is_component_bytes(b"") and not is_component_bytes(b"\0asm")
    (tmp_path / "c.wat").write_text("(;x;) (component)")
    assert is_component(tmp_path / "c.wat")


# ---- inference --------------------------------------------------------------------------------------
def test_infer_named_tensor(probe: Probe) -> None:
    assert probe("infer", affine_model()) == f"ok y0:1x4:1:{AFFINE_OUT}"  # tensor-type 1 = FP32
    assert (probe.state.graph_count, probe.state.context_count, len(probe.state.tensors)) == (0, 0, 0)
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS  # dropping released them in the backend


def test_infer_by_decimal_index_and_twice(probe: Probe) -> None:
    assert probe("infer-by-index", affine_model()) == f"ok y0:1x4:1:{AFFINE_OUT}"
    assert probe("infer-twice", affine_model()) == f"ok y0:1x4:1:{AFFINE_OUT} | ok y0:1x4:1:{AFFINE_OUT}"


def test_outputs_are_named_and_all_returned(probe: Probe) -> None:
    answer = probe("infer", affine_model(outputs=2))
    assert answer == f"ok y0:1x4:1:{AFFINE_OUT} y1:1x4:1:{AFFINE_OUT}"


def test_tensor_resource_roundtrip(probe: Probe) -> None:
    assert probe("tensor-roundtrip") == f"ok 2 4 1 {f32_hex([1.0, 2.0, 3.0, 4.0])}"
    assert not probe.state.tensors


def test_load_by_name(host: wasinn.WasiNnHost, probe: Probe) -> None:
    host.register_model("affine", affine_model())
    assert probe("by-name", b"affine") == f"ok y0:1x4:1:{AFFINE_OUT}"
    assert probe.state.graph_count == 1  # left undropped: the store holds it until closed


def test_context_outlives_its_graph_handle(probe: Probe) -> None:
    assert probe("graph-dropped-first", affine_model()) == f"ok y0:1x4:1:{AFFINE_OUT}"
    assert not fake.LIVE_GRAPHS and probe.state.graph_count == 0


def test_bulk_u8_lists_cross_intact(probe: Probe) -> None:
    n = 100_000
    spec = {"name": "x", "dtype": "u8", "shape": [n]}
    model = make_model({"inputs": [spec], "outputs": [{**spec, "name": "y"}], "scale": 1, "bias": 0})
    assert probe(f"bulk {n}", model) == f"ok {n}"
    assert probe(f"bulk {n} 3", model) == f"ok {n}"  # three inferences on one context
    assert not probe.state.tensors and probe.state.context_count == 0


def test_fast_and_portable_give_the_same_bytes(host: wasinn.WasiNnHost, engine: wasmtime.Engine,
                                               probe_component: Component) -> None:
    model = make_model({"inputs": [{"name": "x", "dtype": "f32", "shape": [1, 4]}],
                        "outputs": [{"name": "y", "dtype": "f64", "shape": [1, 4]}], "scale": -0.5, "bias": 3})
    answers = []
    for mode in MODES:
        p = Probe(host, engine, probe_component, mode)
        answers.append(p("infer", model))
        p.close()
    assert answers[0] == answers[1] == "ok y:1x4:2:" + struct.pack("<4d", 2.5, 2.0, 1.5, 1.0).hex()


# ---- errors: error resources with code and data ------------------------------------------------------
@pytest.mark.parametrize(("scenario", "code", "words"), [
    ("unknown-name", "not-found", "load_by_name: not_found: no model named 'nope' is registered"),
    ("bad-input-name", "invalid-argument", "compute: invalid_argument: no input named 'nope'"),
    ("wrong-size", "invalid-argument", "tensor of 3 bytes of data but f32[1x4] needs 16"),
    ("wrong-type-tensor", "invalid-argument", "input 0 (x) expects f32[1,4], got i32"),
])
def test_errors_carry_code_and_the_logged_message(probe: Probe, caplog: pytest.LogCaptureFixture, scenario: str,
                                                  code: str, words: str) -> None:
    with caplog.at_level(logging.WARNING, logger="wasinn.component"):
        answer = probe(scenario, affine_model())
    assert answer.startswith(f"err {code} ") and words in answer, answer
    logged = [r.getMessage() for r in caplog.records if r.name == "wasinn.component"]
    assert len(logged) == 1
    operation, _, message = answer[len(f"err {code} "):].partition(": ")
    assert logged[0].startswith(f"{operation} -> ") and logged[0].endswith(message.partition(": ")[2])
    assert not probe.state.errors  # the probe dropped the error resource: released


def test_load_errors(probe: Probe) -> None:
    assert probe("load", b"not a model").startswith("err invalid-encoding load: ")
    assert probe("load", affine_model(fail="load")).startswith("err runtime-error load: runtime_error: backend fake")
    assert probe("load", affine_model()) == "ok"


def test_busy_limits_are_runtime_errors_that_say_busy(host: wasinn.WasiNnHost, engine: wasmtime.Engine,
                                                      probe_component: Component) -> None:
    with wasinn.WasiNnHost(limits=Limits(max_contexts_per_store=0)) as limited:
        p = Probe(limited, engine, probe_component)
        assert p("infer", affine_model()).startswith("err runtime-error init_execution_context: busy: ")
        p.close()


def test_too_large_output(engine: wasmtime.Engine, probe_component: Component) -> None:
    model = make_model({"inputs": [{"name": "x", "dtype": "f32", "shape": [1, 4]}],
                        "outputs": [{"name": "y", "dtype": "f64", "shape": [1, 4]}]})
    with wasinn.WasiNnHost(limits=Limits(max_tensor_bytes=16)) as limited:
        p = Probe(limited, engine, probe_component)
        assert p("infer", model).startswith("err too-large compute: too_large: output 0 of 32 bytes")
        p.close()


# ---- bad handles, use after drop, leaks: traps and releases, never a crash ------------------------
@pytest.mark.parametrize(("scenario", "trap"), [
    ("bad-handle", "unknown handle index 12345"),
    ("use-after-drop", "unknown handle index"),
    ("double-drop", "unknown handle index"),
    ("wrong-type", "used with the wrong type"),
    ("tensor-used-after-compute", "unknown handle index"),
    ("context-after-drop", "handle index"),
])
def test_handle_misuse_traps_and_the_host_goes_on(host: wasinn.WasiNnHost, engine: wasmtime.Engine,
                                                  probe_component: Component, scenario: str, trap: str) -> None:
    p = Probe(host, engine, probe_component)
    with pytest.raises(wasmtime.WasmtimeError, match=trap):
        p(scenario, affine_model())
    p.close()
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS  # closing the store released what it held
    again = Probe(host, engine, probe_component)
    assert again("infer", affine_model()) == f"ok y0:1x4:1:{AFFINE_OUT}"
    again.close()


def test_undropped_resources_are_released_with_the_store(probe: Probe) -> None:
    assert probe("infer-keep", affine_model()) == f"ok y0:1x4:1:{AFFINE_OUT}"
    assert (probe.state.graph_count, probe.state.context_count, len(probe.state.tensors)) == (1, 1, 1)
    assert fake.LIVE_GRAPHS and fake.LIVE_CONTEXTS
    assert probe("leak-tensors") == "ok"
    assert len(probe.state.tensors) == 11 and probe.state.tensor_bytes == 11 * 16
    probe.close()
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS


def test_tensor_count_limit_traps(monkeypatch: pytest.MonkeyPatch, host: wasinn.WasiNnHost, engine: wasmtime.Engine,
                                  probe_component: Component, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(state, "MAX_TENSORS_PER_STORE", 5)
    p = Probe(host, engine, probe_component)
    with pytest.raises(wasmtime.WasmtimeError, match="store already holds 5 tensors"):
        p("leak-tensors")
    assert len(p.state.tensors) == 5
    p.close()


def test_error_table_is_bounded(monkeypatch: pytest.MonkeyPatch, host: wasinn.WasiNnHost) -> None:
    monkeypatch.setattr(state, "MAX_ERRORS_PER_STORE", 2)
    s = ComponentState(host)
    reps = [s.add_error(state.ErrorEntry(wasinn.ErrorCode.NOT_FOUND, "load", str(i))) for i in range(3)]
    assert len(s.errors) == 2 and s.error(reps[2]).message == "2"
    assert s.error(reps[0]).code is wasinn.ErrorCode.RUNTIME_ERROR  # forgotten, still answerable


# ---- embedder API and CLI -------------------------------------------------------------------------------
def test_embedder_api_checks(host: wasinn.WasiNnHost, engine: wasmtime.Engine, probe_component: Component) -> None:
    linker = Linker(engine)
    with pytest.raises(ConfigurationError, match="not served"):
        host.add_to_component_linker(linker, versions=["0.1.0"])
    host.add_to_component_linker(linker, versions=[VERSION])
    with pytest.raises(ConfigurationError, match="new_component_store"):
        host.instantiate_component(host.new_store(engine), linker, probe_component)
    store = host.new_component_store(engine, data={"mine": 1})
    assert isinstance(store.data(), ComponentState) and store.data().user_data == {"mine": 1}
    host.instantiate_component(store, linker, probe_component)
    store.close()


def test_a_component_store_is_required(host: wasinn.WasiNnHost, engine: wasmtime.Engine,
                                       probe_component: Component) -> None:
    linker = Linker(engine)
    host.add_to_component_linker(linker)
    store = wasmtime.Store(engine)
    func = linker.instantiate(store, probe_component).get_func(store, "probe")
    assert func is not None
    with pytest.raises(ConfigurationError, match="new_component_store"):  # an embedder mistake: re-raised
        func(store, "tensor-roundtrip", b"")
    store.close()


def test_cli_refuses_a_component_without_wasi_cli_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(PROBE)]) == 2
    assert "does not export wasi:cli/run@0.2.0" in capsys.readouterr().err


def test_cli_refuses_abi_for_a_component(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--abi", "wasmedge", str(PROBE)]) == 2
    assert "numbering profiles are for core modules" in capsys.readouterr().err


def test_cli_runs_a_wat_component_and_reports_its_failure(tmp_path: Path) -> None:
    ok = "(component (core module $m (func (export \"run\") (result i32) i32.const {})) " \
         "(core instance $i (instantiate $m)) (type $r (result)) " \
         "(func $run (result $r) (canon lift (core func $i \"run\"))) " \
         "(instance $e (export \"run\" (func $run))) (export \"wasi:cli/run@0.2.0\" (instance $e)))"
    (tmp_path / "ok.wat").write_text(ok.format(0))
    (tmp_path / "fail.wat").write_text(ok.format(1))
    assert main(["run", str(tmp_path / "ok.wat")]) == 0
    assert main(["run", str(tmp_path / "fail.wat")]) == 1


def test_cli_trap_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wat = ("(component (core module $m (func (export \"run\") (result i32) unreachable)) "
           "(core instance $i (instantiate $m)) (type $r (result)) "
           "(func $run (result $r) (canon lift (core func $i \"run\"))) "
           "(instance $e (export \"run\" (func $run))) (export \"wasi:cli/run@0.2.0\" (instance $e)))")
    (tmp_path / "trap.wat").write_text(wat)
    assert main(["run", str(tmp_path / "trap.wat")]) == 134
    assert "the guest trapped" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--timeout", "0.3"], ["--fuel", "100000"]])
def test_cli_limits_stop_a_spinning_component(tmp_path: Path, flags: list[str]) -> None:
    wat = ("(component (core module $m (func (export \"run\") (result i32) (loop $l (br $l)) i32.const 0)) "
           "(core instance $i (instantiate $m)) (type $r (result)) "
           "(func $run (result $r) (canon lift (core func $i \"run\"))) "
           "(instance $e (export \"run\" (func $run))) (export \"wasi:cli/run@0.2.0\" (instance $e)))")
    (tmp_path / "spin.wat").write_text(wat)
    assert main(["run", *flags, str(tmp_path / "spin.wat")]) == 134


def test_array_dtypes_map_to_wit_tensor_types() -> None:
    from wasinn.component.interface import _NUMPY_TYPES, WIT_TENSOR_TYPES
    assert set(_NUMPY_TYPES.values()) | {wasinn.TensorType.BF16} == set(WIT_TENSOR_TYPES.values())
    assert np.dtype("<f4") in _NUMPY_TYPES


def test_tensor_size_check_does_not_wrap_around() -> None:
    from wasinn.component.interface import new_tensor_entry
    with pytest.raises(wasinn.WasiNnError, match="needs 18446744073709551616"):
        new_tensor_entry([65536] * 4, wasinn.TensorType.U8, b"")  # 2**64 elements: 0 in uint64
    assert new_tensor_entry([], wasinn.TensorType.F32, bytes(4)).dims == ()
