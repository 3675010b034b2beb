"""Every wasi_ephemeral_nn import, through a real wasm guest, with every error code the issue names."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest
import wasmtime

import wasinn
from wasinn.abi.ephemeral import FUNCTIONS
from wasinn.testing.guest import ERRNO, TrampolineGuest, trampoline_wat
from wasinn_test_backends import affine_model

F32 = 1


@pytest.mark.parametrize(("dtype", "number"), [("<f2", 0), ("<f4", 1), ("<f8", 2), ("u1", 3), ("<i4", 4), ("<i8", 5)])
def test_round_trip_every_tensor_type(guest: TrampolineGuest, dtype: str, number: int) -> None:
    name = {"<f2": "f16", "<f4": "f32", "<f8": "f64", "u1": "u8", "<i4": "i32", "<i8": "i64"}[dtype]
    graph = guest.load([affine_model(name, (2, 3))])
    assert graph.ok
    x = np.arange(6).reshape(2, 3).astype(dtype)
    ctx = guest.init_execution_context(graph.value).value  # type: ignore[arg-type]
    assert guest.set_input(ctx, 0, x, number).ok  # type: ignore[arg-type]
    assert guest.compute(ctx).ok  # type: ignore[arg-type]
    call, out = guest.get_output(ctx, 0, dtype, (2, 3))  # type: ignore[arg-type]
    assert call.ok and call.value == x.nbytes
    np.testing.assert_array_equal(out, (x * 2 + 1).astype(dtype))


def test_handles_start_at_zero_and_are_never_reused(guest: TrampolineGuest) -> None:
    model = affine_model()
    first = guest.load([model]).value
    second = guest.load([model]).value
    assert (first, second) == (0, 1)
    assert guest.unload(first).ok  # type: ignore[arg-type]
    assert guest.load([model]).value == 2
    contexts = [guest.init_execution_context(second).value for _ in range(3)]  # type: ignore[arg-type]
    assert contexts == [0, 1, 2]
    assert guest.finalize_execution_context(1).ok
    assert guest.init_execution_context(second).value == 3  # type: ignore[arg-type]
    assert guest.finalize_execution_context(1).errno == ERRNO["invalid_argument"]  # already gone


def test_several_contexts_on_one_graph_are_independent(guest: TrampolineGuest) -> None:
    graph = guest.load([affine_model()]).value
    a = guest.init_execution_context(graph).value  # type: ignore[arg-type]
    b = guest.init_execution_context(graph).value  # type: ignore[arg-type]
    guest.set_input(a, 0, np.full((1, 4), 1, np.float32))  # type: ignore[arg-type]
    guest.set_input(b, 0, np.full((1, 4), 10, np.float32))  # type: ignore[arg-type]
    guest.compute(a)  # type: ignore[arg-type]
    guest.compute(b)  # type: ignore[arg-type]
    assert guest.get_output(a, 0, "<f4")[1].tolist() == [3, 3, 3, 3]  # type: ignore[arg-type, union-attr]
    assert guest.get_output(b, 0, "<f4")[1].tolist() == [21, 21, 21, 21]  # type: ignore[arg-type, union-attr]


def test_input_data_is_copied_at_set_input(guest: TrampolineGuest) -> None:
    """A guest may reuse its buffer after set_input: the backend must have taken the data."""
    graph = guest.load([affine_model()]).value
    ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
    record = guest.tensor_record(np.ones((1, 4), np.float32).tobytes(), (1, 4), F32)
    assert guest.call("set_input", ctx, 0, record) == 0  # type: ignore[arg-type]
    data_ptr = guest.u32(record + 12)
    guest.memory.write(guest.store, np.full((1, 4), 100, np.float32).tobytes(), data_ptr)
    guest.compute(ctx)  # type: ignore[arg-type]
    assert guest.get_output(ctx, 0, "<f4")[1].tolist() == [3, 3, 3, 3]  # type: ignore[arg-type, union-attr]


def test_nonzero_padding_in_the_tensor_record_is_ignored(guest: TrampolineGuest) -> None:
    graph = guest.load([affine_model()]).value
    ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
    record = guest.tensor_record(np.ones((1, 4), np.float32).tobytes(), (1, 4), F32, padding=b"\xaa\xbb\xcc")
    assert guest.call("set_input", ctx, 0, record) == 0  # type: ignore[arg-type]


class TestErrorCodes:
    def test_bad_pointers_are_invalid_argument(self, guest: TrampolineGuest) -> None:
        graph = guest.load([affine_model()]).value
        ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
        size = guest.memory_size
        assert guest.call("set_input", ctx, 0, size - 4) == ERRNO["invalid_argument"]  # type: ignore[arg-type]
        assert guest.call("set_input", ctx, 0, 0xFFFFFFFF) == ERRNO["invalid_argument"]  # type: ignore[arg-type]
        assert guest.call("init_execution_context", graph, size) == ERRNO["invalid_argument"]  # type: ignore[arg-type]
        assert guest.call("load", size - 4, 1, 5, 0, 0) == ERRNO["invalid_argument"]
        assert guest.call("load_by_name", size - 1, 100, 0) == ERRNO["invalid_argument"]
        # tensor data pointing past the end of memory
        record = guest.tensor_record(b"", (1, 4), F32, data_len=16)
        struct_bytes = bytearray(guest.read(record, 20))
        struct_bytes[12:16] = struct.pack("<I", size - 8)
        guest.memory.write(guest.store, bytes(struct_bytes), record)
        assert guest.call("set_input", ctx, 0, record) == ERRNO["invalid_argument"]  # type: ignore[arg-type]

    def test_unknown_handles_are_invalid_argument(self, guest: TrampolineGuest) -> None:
        out = guest.alloc(4)
        assert guest.call("init_execution_context", 7, out) == ERRNO["invalid_argument"]
        assert guest.call("compute", 3) == ERRNO["invalid_argument"]
        assert guest.call("unload", 0xFFFFFFFF) == ERRNO["invalid_argument"]
        assert guest.call("finalize_execution_context", 42) == ERRNO["invalid_argument"]
        assert guest.get_output_bytes(9, 0)[0].errno == ERRNO["invalid_argument"]

    def test_dims_that_do_not_match_the_data_are_invalid_argument(self, guest: TrampolineGuest,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
        graph = guest.load([affine_model()]).value
        ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
        data = np.ones((1, 4), np.float32).tobytes()
        for dims in [(1, 5), (4,), (1, 2, 3), (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), ()]:
            record = guest.tensor_record(data, dims, F32)
            assert guest.call("set_input", ctx, 0, record) == ERRNO["invalid_argument"], dims  # type: ignore[arg-type]
        assert "needs" in caplog.text  # the log says what the dims need
        # right length, wrong shape for the model: the backend names the expected shape
        assert guest.set_input(ctx, 0, np.ones((2, 2), np.float32)).errno == ERRNO["invalid_argument"]  # type: ignore[arg-type]
        assert "expects f32[1,4]" in caplog.text

    def test_bad_index_and_type_are_invalid_argument(self, guest: TrampolineGuest) -> None:
        graph = guest.load([affine_model()]).value
        ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
        x = np.ones((1, 4), np.float32)
        assert guest.set_input(ctx, 1, x).errno == ERRNO["invalid_argument"]  # type: ignore[arg-type]
        assert guest.set_input(ctx, 0, x, type_number=77).errno == ERRNO["invalid_argument"]  # type: ignore[arg-type]
        assert guest.set_input(ctx, 0, x.astype(np.int32)).errno == ERRNO["invalid_argument"]  # type: ignore[arg-type]
        guest.set_input(ctx, 0, x)  # type: ignore[arg-type]
        guest.compute(ctx)  # type: ignore[arg-type]
        assert guest.get_output_bytes(ctx, 5)[0].errno == ERRNO["invalid_argument"]  # type: ignore[arg-type]

    def test_encodings(self, guest: TrampolineGuest) -> None:
        assert guest.load([b"not a model"]).errno == ERRNO["invalid_encoding"]  # autodetect finds nothing
        assert guest.load([affine_model()], "onnx").errno == ERRNO["invalid_encoding"]  # contradicts the bytes
        assert guest.load([b"not a model"], "onnx").errno == ERRNO["invalid_argument"]  # not a valid ONNX model
        assert guest.load([affine_model()], 99).errno == ERRNO["invalid_encoding"]
        assert guest.load([affine_model()], "autodetect", 9).errno == ERRNO["invalid_argument"]  # bad target
        assert guest.load([]).errno == ERRNO["invalid_argument"]
        tflite = (__import__("core_paths").REPO / "demo" / "models" / "digits.tflite").read_bytes()
        assert guest.load([tflite], "tensorflowlite").errno == ERRNO["invalid_encoding"]  # no TFLite backend here

    def test_unknown_name_is_not_found(self, guest: TrampolineGuest) -> None:
        assert guest.load_by_name("nope").errno == ERRNO["not_found"]
        assert guest.load_by_name(b"\xff\xfe").errno == ERRNO["invalid_argument"]

    def test_small_output_buffer_is_too_large_with_the_required_size(self, guest: TrampolineGuest) -> None:
        graph = guest.load([affine_model("f64", (3, 5))]).value
        ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
        guest.set_input(ctx, 0, np.zeros((3, 5)))  # type: ignore[arg-type]
        guest.compute(ctx)  # type: ignore[arg-type]
        call, _ = guest.get_output_bytes(ctx, 0, max_bytes=119)  # type: ignore[arg-type]
        assert call.errno == ERRNO["too_large"] and call.value == 120
        call, _ = guest.get_output_bytes(ctx, 0, max_bytes=120)  # type: ignore[arg-type]
        assert call.ok and call.value == 120

    @pytest.mark.parametrize("hook", ["load", "init", "set_input", "compute", "get_output"])
    def test_backend_failure_is_runtime_error_and_logged(self, guest: TrampolineGuest, hook: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
        graph = guest.load([affine_model(fail=hook)])
        if hook == "load":
            assert graph.errno == ERRNO["runtime_error"]
        else:
            ctx = guest.init_execution_context(graph.value)  # type: ignore[arg-type]
            if hook == "init":
                assert ctx.errno == ERRNO["runtime_error"]
            else:
                errnos = [guest.set_input(ctx.value, 0, np.ones((1, 4), np.float32)).errno,  # type: ignore[arg-type]
                          guest.compute(ctx.value).errno,  # type: ignore[arg-type]
                          guest.get_output_bytes(ctx.value, 0)[0].errno]  # type: ignore[arg-type]
                assert ERRNO["runtime_error"] in errnos
        assert f"{hook} failed on purpose" in caplog.text
        # the store still works afterwards
        assert guest.load([affine_model()]).ok

    def test_streaming_calls_are_unsupported_operation(self, host: wasinn.WasiNnHost) -> None:
        # The fake backend does not stream (tests/test_streaming.py covers one that does).
        g = TrampolineGuest(host, functions={name: arity for name, (arity, _) in FUNCTIONS.items()})
        ctx = g.init_execution_context(g.load([affine_model()]).value)  # type: ignore[arg-type]
        assert ctx.ok
        assert g.call("compute_single", ctx.value) == 6  # type: ignore[arg-type]
        assert g.call("get_output_single", ctx.value, 0, 0, 0, 0) == 6  # type: ignore[arg-type]
        assert g.call("fini_single", ctx.value) == 6  # type: ignore[arg-type]

    def test_missing_memory(self, host: wasinn.WasiNnHost) -> None:
        engine = wasmtime.Engine()
        linker = wasmtime.Linker(engine)
        host.add_to_linker(linker)
        store = host.new_store(engine)
        wat = trampoline_wat(functions={"compute": 1}).replace('(memory (export "memory") 17)', "")
        instance = host.instantiate(store, linker, wasmtime.Module(engine, wat))
        compute = instance.exports(store)["nn_compute"]
        assert isinstance(compute, wasmtime.Func)
        out_ptr_call = compute(store, 0)
        assert out_ptr_call == ERRNO["invalid_argument"]  # compute needs no memory: unknown context
        wat = trampoline_wat(functions={"init_execution_context": 2}).replace('(memory (export "memory") 17)', "")
        instance = host.instantiate(store, linker, wasmtime.Module(engine, wat))
        init = instance.exports(store)["nn_init_execution_context"]
        assert isinstance(init, wasmtime.Func)
        assert init(store, 0, 0) == ERRNO["missing_memory"]


def test_busy_when_a_store_holds_too_many_graphs() -> None:
    host = wasinn.WasiNnHost(limits=wasinn.Limits(max_graphs_per_store=2, max_contexts_per_store=1))
    g = TrampolineGuest(host)
    assert g.load([affine_model()]).ok and g.load([affine_model()]).ok
    assert g.load([affine_model()]).errno == ERRNO["busy"]
    assert g.init_execution_context(0).ok
    assert g.init_execution_context(0).errno == ERRNO["busy"]


def test_a_store_not_made_by_the_host_traps_with_a_clear_error(host: wasinn.WasiNnHost) -> None:
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    host.add_to_linker(linker)
    store = wasmtime.Store(engine)  # embedder forgot host.new_store()
    instance = linker.instantiate(store, wasmtime.Module(engine, trampoline_wat(functions={"compute": 1})))
    compute = instance.exports(store)["nn_compute"]
    assert isinstance(compute, wasmtime.Func)
    with pytest.raises(wasinn.ConfigurationError, match="new_store"):
        compute(store, 0)


def test_errors_are_logged_once_with_the_reason(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wasinn")
    guest.load_by_name("missing-model")
    assert "load_by_name -> not_found (errno 8): no model named 'missing-model' is registered" in caplog.text
