"""The hostile arguments the peer hosts get wrong, one by one, with the exact errno each must get.

Every call goes through :class:`hostile_abi.AbiHarness`, so besides the errno each test also checks
that wasinn wrote no guest byte outside the call's out-pointers and that the handle tables match
what the calls should have made.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import wasmtime
from hostile_abi import (
    BUSY,
    CANONICAL_MODELS,
    GUEST_PAGES,
    INVALID_ARGUMENT,
    INVALID_ENCODING,
    MISSING_MEMORY,
    NOT_FOUND,
    RUNTIME_ERROR,
    SUCCESS,
    TOO_LARGE,
    U32,
    AbiHarness,
    Compute,
    FastGuest,
    Finalize,
    GetOutput,
    Handle,
    Init,
    Len,
    LiveObjects,
    Load,
    LoadByName,
    Ptr,
    SetInput,
    Unload,
    fake_host,
    make_linker,
    quiet_wasinn,
)

from wasinn import ConfigurationError, Limits, WasiNnHost
from wasinn.abi.linking import define_imports
from wasinn.testing.guest import PAGE
from wasinn_test_backends import affine_model, fake

ENGINE = wasmtime.Engine()
F32 = CANONICAL_MODELS["f32"]  # f32[1,4] -> f32[1,4]
MEMORY = GUEST_PAGES * PAGE  # a FastGuest's memory until something grows it

MakeHarness = Callable[..., AbiHarness]


@pytest.fixture
def make() -> Iterator[MakeHarness]:
    made: list[tuple[WasiNnHost, AbiHarness]] = []

    def factory(*, legacy: bool = False, limits: Limits | None = None) -> AbiHarness:
        host = fake_host(limits)
        harness = AbiHarness(host, ENGINE, make_linker(host, ENGINE), legacy=legacy)
        made.append((host, harness))
        return harness

    live = LiveObjects()
    with quiet_wasinn() as errors:
        yield factory
        for _, harness in made:
            harness.finish(errors)  # correct calls still work afterwards
        for host, harness in made:
            harness.close(check=len(made) == 1)
            host.close()
    # Every store closed and every host closed: the backend holds nothing any of them made.
    assert live.new() == (0, 0)


def ready(h: AbiHarness) -> int:
    """Load the f32 model and make a context; returns the context handle."""
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Init()) == SUCCESS
    return max(h.contexts)


def computed(h: AbiHarness) -> int:
    context = ready(h)
    assert h.step(SetInput()) == SUCCESS
    assert h.step(Compute()) == SUCCESS
    return context


# ---- pointers ---------------------------------------------------------------------------------------
BAD_POINTERS = [Ptr("end", 0), Ptr("end", 3), Ptr("end", -4), Ptr("raw", U32), Ptr("raw", 0xFFFFFFFC),
                Ptr("raw", 0x80000000), Ptr("raw", -1), Ptr("delta", 1 << 31)]
POINTER_IDS = ["at-end", "3-before-end", "past-end", "u32-max", "wraps-2^32", "2^31", "i32--1", "+2^31"]


@pytest.mark.parametrize("legacy", [False, True], ids=["ephemeral", "legacy"])
@pytest.mark.parametrize("ptr", BAD_POINTERS, ids=POINTER_IDS)
def test_out_pointer_outside_memory_is_invalid_argument_and_creates_nothing(make: MakeHarness, ptr: Ptr,
                                                                            legacy: bool) -> None:
    h = make(legacy=legacy)
    assert h.step(Load((F32,), out=ptr)) == INVALID_ARGUMENT
    assert h.step(LoadByName(b"m", out=ptr)) == INVALID_ARGUMENT
    assert h.guest.state.graph_count == 0  # no graph was made and then lost
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Init(out=ptr)) == INVALID_ARGUMENT
    assert h.guest.state.context_count == 0


@pytest.mark.parametrize("legacy", [False, True], ids=["ephemeral", "legacy"])
@pytest.mark.parametrize("ptr", BAD_POINTERS, ids=POINTER_IDS)
def test_input_pointers_outside_memory_are_invalid_argument(make: MakeHarness, ptr: Ptr, legacy: bool) -> None:
    h = make(legacy=legacy)
    assert h.step(Load((F32,), array=ptr)) == INVALID_ARGUMENT
    assert h.step(Load((F32,), pointers=(ptr,))) == INVALID_ARGUMENT
    # A 1-byte name 3 bytes before the end is in bounds: garbage, so not found.
    assert h.step(LoadByName(b"m", name_ptr=ptr)) == (NOT_FOUND if ptr == Ptr("end", 3) else INVALID_ARGUMENT)
    ready(h)
    for op in (SetInput(record=ptr), SetInput(dims_ptr=ptr), SetInput(data_ptr=ptr)):
        assert h.step(op) == INVALID_ARGUMENT, op
    assert h.step(SetInput()) == SUCCESS
    assert h.step(Compute()) == SUCCESS
    assert h.step(GetOutput(out=ptr)) == INVALID_ARGUMENT
    assert h.step(GetOutput(written=ptr)) == INVALID_ARGUMENT
    assert h.step(GetOutput()) == SUCCESS


def test_config_pointer_outside_memory_is_invalid_argument(make: MakeHarness) -> None:
    h = make()
    for ptr in BAD_POINTERS:
        assert h.step(LoadByName(b"m", b"{}", config_ptr=ptr)) == INVALID_ARGUMENT


# ---- lengths and counts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 17, 0xFFFF, U32, 0x80000000])
def test_builder_count_out_of_range_is_invalid_argument(make: MakeHarness, count: int) -> None:
    h = make()
    assert h.step(Load((F32,), count=Len("raw", count))) == INVALID_ARGUMENT


def test_builder_lengths_beyond_memory_are_invalid_argument(make: MakeHarness) -> None:
    h = make()
    assert h.step(Load((F32,), lengths=(Len("delta", 1 << 20),))) == INVALID_ARGUMENT
    assert h.step(Load((F32,), lengths=(Len("raw", MEMORY),))) == INVALID_ARGUMENT


def test_builder_lengths_over_the_limit_are_too_large_before_any_read(make: MakeHarness) -> None:
    # 2 x 1.5 GiB claimed at an invalid address: refused on the claimed size, never read.
    h = make()
    lengths = (Len("raw", 3 << 29),)
    assert h.step(Load((F32, F32), pointers=(Ptr("raw", U32),), lengths=lengths)) == TOO_LARGE


def test_builder_lengths_that_wrap_in_u32_do_not_sneak_under_the_limit(make: MakeHarness) -> None:
    # 0xFFFFFFFF + 2 wraps to 1 in u32 arithmetic: a C host would read 1 byte, then 4 GiB.
    h = make(limits=Limits(max_model_bytes=1 << 16))
    assert h.step(Load((F32, F32), lengths=(Len("raw", U32), Len("raw", 2)))) == TOO_LARGE


@pytest.mark.parametrize("delta", [-1, 1, -4, 4, 1 << 31])
def test_data_length_that_disagrees_with_the_dims_is_invalid_argument(make: MakeHarness, delta: int) -> None:
    h = make()
    ready(h)
    assert h.step(SetInput(data_len=Len("delta", delta))) == INVALID_ARGUMENT


@pytest.mark.parametrize("rank", [65, 1000, U32, 0x80000000])
def test_rank_over_64_is_invalid_argument(make: MakeHarness, rank: int) -> None:
    for legacy in (False, True):
        h = make(legacy=legacy)
        ready(h)
        assert h.step(SetInput(rank=Len("raw", rank))) == INVALID_ARGUMENT


# Products that wrap to a small number in 32- or 64-bit arithmetic; data_len is what the wrapped
# product says (the overrun of the peer hosts: they then copy product * size bytes, or index with it).
OVERFLOWING_DIMS = {
    "2^16*2^16 u8 (u32 wraps to 0)": ((1 << 16, 1 << 16), 3, 0),
    "2^16*2^16+1 u8 (u32 wraps to 2^16)": ((1 << 16, (1 << 16) + 1), 3, 1 << 16),
    "2^31*2 u8": ((1 << 31, 2), 3, 0),
    "2^30*4 f32 (bytes wrap to 0)": ((1 << 30,), 1, 0),
    "4 x 2^16 f32 (u64 wraps to 0)": ((1 << 16,) * 4, 1, 0),
    "2^32-1 squared": ((U32, U32), 3, 1),
    "64 x (2^32-1)": ((U32,) * 64, 3, U32),
    "0 x (2^32-1) (product 0, 1 byte)": ((0, U32), 3, 1),
}


@pytest.mark.parametrize("dims, type_number, data_len", OVERFLOWING_DIMS.values(), ids=OVERFLOWING_DIMS.keys())
def test_overflowing_products_of_dims_are_refused(make: MakeHarness, dims: tuple[int, ...], type_number: int,
                                                  data_len: int) -> None:
    h = make()
    ready(h)
    errno = h.step(SetInput(dims=dims, type_number=type_number, data_len=Len("raw", data_len)))
    assert errno == INVALID_ARGUMENT


@pytest.mark.parametrize("dims", [(1 << 16, 1 << 16), (1 << 31, 2), (U32, U32), (U32,) * 64, (1 << 16,) * 4])
def test_legacy_overflowing_products_of_dims_are_refused(make: MakeHarness, dims: tuple[int, ...]) -> None:
    # The legacy record has no length: wasinn computes product * size itself, so it must not wrap.
    h = make(legacy=True)
    ready(h)
    assert h.step(SetInput(dims=dims, type_number=1)) in (INVALID_ARGUMENT, TOO_LARGE)


def test_zero_sized_dims_reach_the_backend_as_an_empty_tensor(make: MakeHarness) -> None:
    h = make()
    ready(h)
    # f32[0,4] with 0 bytes is a consistent tensor; the f32[1,4] model refuses its shape.
    assert h.step(SetInput(dims=(0, 4), data_len=Len("raw", 0))) == INVALID_ARGUMENT


# ---- output buffers -----------------------------------------------------------------------------------
def test_output_buffer_one_byte_short_is_too_large_and_says_how_much(make: MakeHarness) -> None:
    h = make()
    computed(h)
    guest = h.guest
    buffer, written = guest.alloc(16), guest.alloc(4)
    guest.memory.write(guest.store, b"\xaa" * 16, buffer)
    errno = h.call("get_output", [max(h.contexts), 0, buffer, 15, written], [(written, 4)])
    assert errno == TOO_LARGE
    assert guest.u32(written) == 16  # the size it needs
    assert guest.read(buffer, 16) == b"\xaa" * 16  # not a byte of the buffer written


@pytest.mark.parametrize("out_max", [0, 1, 15])
def test_small_output_buffers_are_never_written(make: MakeHarness, out_max: int) -> None:
    h = make()
    computed(h)
    assert h.step(GetOutput(out_max=Len("raw", out_max))) == TOO_LARGE


def test_output_that_ends_exactly_at_the_end_of_memory_is_written(make: MakeHarness) -> None:
    h = make()
    computed(h)
    assert h.step(GetOutput(out=Ptr("end", 16))) == SUCCESS
    assert h.step(GetOutput(out=Ptr("end", 15))) == INVALID_ARGUMENT  # one byte past the end: nothing written


def test_a_generous_buffer_that_runs_past_memory_is_fine_if_the_output_fits(make: MakeHarness) -> None:
    # The guest claims 1 MiB at 32 bytes before the end; only 16 bytes are written, all in bounds.
    h = make()
    computed(h)
    assert h.step(GetOutput(out=Ptr("end", 32), out_max=Len("raw", 1 << 20))) == SUCCESS


def test_legacy_output_capacity_counts_elements(make: MakeHarness) -> None:
    h = make(legacy=True)
    computed(h)
    guest = h.guest
    buffer, size = guest.alloc(64), guest.alloc(4)
    for capacity, want in ((3, TOO_LARGE), (0, TOO_LARGE), (4, SUCCESS)):
        guest.memory.write(guest.store, struct.pack("<I", capacity), size)
        errno = h.call("get_output", [max(h.contexts), 0, buffer, size], [(buffer, capacity * 4), (size, 4)])
        assert errno == want
        assert guest.u32(size) == 4  # elements it has (or needs)
    assert np.array_equal(np.frombuffer(guest.read(buffer, 16), np.float32), np.full(4, 1.0, np.float32))


def test_output_larger_than_max_tensor_bytes_is_too_large(make: MakeHarness) -> None:
    """Limits.max_tensor_bytes: "Bytes of one input tensor, and of one output the guest asks for"."""
    h = make(limits=Limits(max_tensor_bytes=64))
    model = fake_model_u8_to_f64()
    assert h.step(Load((model,))) == SUCCESS
    assert h.step(Init()) == SUCCESS
    assert h.step(SetInput(dims=(1, 16), type_number=3)) == SUCCESS  # 16 bytes in
    assert h.step(Compute()) == SUCCESS
    assert h.step(GetOutput(out_max=Len("raw", 1024))) == TOO_LARGE  # 128 bytes out > 64


def fake_model_u8_to_f64() -> bytes:
    from wasinn_test_backends import make_model

    return make_model({"inputs": [{"name": "x", "dtype": "u8", "shape": [1, 16]}],
                       "outputs": [{"name": "y", "dtype": "f64", "shape": [1, 16]}], "scale": 2, "bias": 1})


# ---- handles --------------------------------------------------------------------------------------------
RAW_HANDLES = [0, 1, 2, 7, 0xFFFF, 0x7FFFFFFF, 0x80000000, U32, -1]


@pytest.mark.parametrize("value", RAW_HANDLES)
def test_unknown_handles_are_invalid_argument(make: MakeHarness, value: int) -> None:
    h = make()
    raw = Handle("raw", value)
    assert h.step(Init(raw)) == INVALID_ARGUMENT
    for op in (SetInput(raw), Compute(raw), GetOutput(raw), Finalize(raw), Unload(raw)):
        assert h.step(op) == INVALID_ARGUMENT, op


@pytest.mark.parametrize("value", RAW_HANDLES)
def test_legacy_unknown_handles_are_invalid_argument(make: MakeHarness, value: int) -> None:
    h = make(legacy=True)
    raw = Handle("raw", value)
    for op in (Init(raw), SetInput(raw), Compute(raw), GetOutput(raw)):
        assert h.step(op) == INVALID_ARGUMENT, op


def test_released_handles_stay_dead(make: MakeHarness) -> None:
    h = make()
    context = computed(h)
    graph = max(h.graphs)
    assert h.step(Finalize()) == SUCCESS
    dead_context, dead_graph = Handle("raw", context), Handle("raw", graph)
    for op in (SetInput(dead_context), Compute(dead_context), GetOutput(dead_context), Finalize(dead_context)):
        assert h.step(op) == INVALID_ARGUMENT, op
    assert h.step(Unload()) == SUCCESS
    assert h.step(Unload(dead_graph)) == INVALID_ARGUMENT
    assert h.step(Init(dead_graph)) == INVALID_ARGUMENT
    # New handles are never the dead ones.
    assert h.step(Load((F32,))) == SUCCESS
    assert graph not in h.graphs


def test_a_context_handle_is_not_a_graph_handle(make: MakeHarness) -> None:
    h = make()
    h.step(Load((F32,)))  # graph 0
    h.step(Load((F32,)))  # graph 1
    h.step(Unload(Handle("raw", 0)))
    assert h.step(Init(Handle("raw", 1))) == SUCCESS  # context 0
    assert h.step(Init(Handle("raw", 0))) == INVALID_ARGUMENT  # graph 0 is gone, context 0 is not a graph
    assert h.step(Unload(Handle("raw", 0))) == INVALID_ARGUMENT


def test_handles_of_another_store_are_unknown(make: MakeHarness) -> None:
    a, b = make(), make()
    computed(a)
    graph, context = max(a.graphs), max(a.contexts)
    for op in (Init(Handle("raw", graph)), SetInput(Handle("raw", context)), Compute(Handle("raw", context)),
               GetOutput(Handle("raw", context)), Finalize(Handle("raw", context)), Unload(Handle("raw", graph))):
        assert b.step(op) == INVALID_ARGUMENT, op
    assert a.step(GetOutput()) == SUCCESS  # a's handles are untouched


def test_index_out_of_range_is_invalid_argument(make: MakeHarness) -> None:
    h = make()
    computed(h)
    for index in (1, 2, 0x80000000, U32):
        assert h.step(SetInput(index=index)) == INVALID_ARGUMENT
        assert h.step(GetOutput(index=index)) == INVALID_ARGUMENT


def test_output_before_compute_and_compute_before_input(make: MakeHarness) -> None:
    h = make()
    ready(h)
    assert h.step(GetOutput()) == INVALID_ARGUMENT
    assert h.step(Compute()) == INVALID_ARGUMENT


# ---- enum values --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", [7, 8, 255, 256, 0x80000000, U32, -1])
def test_unknown_encodings_are_invalid_encoding(make: MakeHarness, encoding: int) -> None:
    h = make()
    assert h.step(Load((F32,), encoding=encoding)) == INVALID_ENCODING
    legacy = make(legacy=True)
    assert legacy.step(Load((F32,), encoding=encoding)) == INVALID_ENCODING


def test_encoding_6_is_autodetect_for_unforced_witx_guests(make: MakeHarness) -> None:
    # 6 is autodetect in WAMR and GGML in WasmEdge: detection from the bytes serves both.
    h = make()
    assert h.step(Load((F32,), encoding=6)) == SUCCESS


@pytest.mark.parametrize("encoding", [0, 1, 2, 3, 4])
def test_an_encoding_that_contradicts_the_bytes_is_refused(make: MakeHarness, encoding: int) -> None:
    h = make()
    assert h.step(Load((F32,), encoding=encoding)) in (INVALID_ARGUMENT, INVALID_ENCODING)


@pytest.mark.parametrize("target", [3, 4, 255, U32, -1])
def test_unknown_targets_are_invalid_argument(make: MakeHarness, target: int) -> None:
    h = make()
    assert h.step(Load((F32,), target=target)) == INVALID_ARGUMENT
    legacy = make(legacy=True)
    assert legacy.step(Load((F32,), target=target)) == INVALID_ARGUMENT


@pytest.mark.parametrize("type_number", [6, 7, 8, 100, 255])
def test_unknown_tensor_types_are_invalid_argument(make: MakeHarness, type_number: int) -> None:
    h = make()
    ready(h)
    assert h.step(SetInput(type_number=type_number, data_len=Len("raw", 16))) == INVALID_ARGUMENT


@pytest.mark.parametrize("type_number", [4, 5, 255, 0x101, 0x10001, 0x80000001, U32])
def test_legacy_unknown_tensor_types_are_invalid_argument(make: MakeHarness, type_number: int) -> None:
    # The legacy tensor type is a 32-bit C enum: 0x101 is not f32 (1).
    h = make(legacy=True)
    ready(h)
    assert h.step(SetInput(type_number=type_number)) == INVALID_ARGUMENT


def test_witx_record_padding_is_ignored(make: MakeHarness) -> None:
    # The 3 bytes after the u8 type are padding in the witx layout; a guest's garbage there is harmless.
    h = make()
    ready(h)
    assert h.step(SetInput(padding=b"\xff\xff\xff")) == SUCCESS


# ---- memory, backends, embedders -----------------------------------------------------------------------------
NO_MEMORY_WAT = """(module
  (import "wasi_ephemeral_nn" "load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "load_by_name" (func $lbn (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "get_output" (func $out (param i32 i32 i32 i32 i32) (result i32)))
  (func (export "load") (result i32) (call $load (i32.const 0) (i32.const 1) (i32.const 5) (i32.const 0) (i32.const 0)))
  (func (export "load_by_name") (result i32) (call $lbn (i32.const 0) (i32.const 1) (i32.const 0)))
  (func (export "get_output") (result i32)
    (call $out (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 0))))
"""


def test_a_guest_without_memory_gets_missing_memory() -> None:
    host = fake_host()
    linker = make_linker(host, ENGINE)
    store = host.new_store(ENGINE)
    instance = host.instantiate(store, linker, wasmtime.Module(ENGINE, NO_MEMORY_WAT))
    with quiet_wasinn() as errors:
        for name in ("load", "load_by_name", "get_output"):
            func = instance.exports(store)[name]
            assert isinstance(func, wasmtime.Func)
            assert func(store) == MISSING_MEMORY, name
    assert not errors.records
    store.close()
    host.close()


@pytest.mark.parametrize("legacy", [False, True], ids=["ephemeral", "legacy"])
def test_a_guest_with_an_empty_memory_gets_invalid_argument_for_every_pointer(legacy: bool) -> None:
    host = fake_host()
    guest = FastGuest(host, ENGINE, make_linker(host, ENGINE), legacy=legacy, pages=0)
    assert guest.memory_size == 0
    calls = {
        "load": [0, 1, 5, 0, 0] if not legacy else [0, 6, 0, 0],
        "load_by_name": [0, 1, 0],
        "init_execution_context": [0, 0],
        "set_input": [0, 0, 0],
        "get_output": [0, 0, 0, 16, 0] if not legacy else [0, 0, 0, 0],
    }
    if not legacy:
        calls["load_by_name_with_config"] = [0, 1, 0, 2, 0]
    with quiet_wasinn() as errors:
        for name, args in calls.items():
            assert guest.call(name, *args) == INVALID_ARGUMENT, name
            assert guest.call(name, *[U32 for _ in args]) == INVALID_ARGUMENT, name
    assert not errors.records
    assert (guest.state.graph_count, guest.state.context_count) == (0, 0)
    guest.close()
    host.close()


FAILING_HOOKS = ["init", "set_input", "compute", "get_output"]


@pytest.mark.parametrize("hook", FAILING_HOOKS)
def test_a_backend_exception_is_runtime_error_and_the_store_survives(make: MakeHarness, hook: str) -> None:
    h = make()
    assert h.step(Load((affine_model("f32", (1, 4), fail=hook),))) == SUCCESS
    steps = [Init(), SetInput(), Compute(), GetOutput()]
    results = [h.step(op) for op in steps]
    failing = {"init": 0, "set_input": 1, "compute": 2, "get_output": 3}[hook]
    assert results[failing] == RUNTIME_ERROR
    assert all(r == SUCCESS for r in results[:failing])
    assert h.step(Load((F32,))) == SUCCESS  # and a good model still works (finish() infers on it)


def test_a_backend_load_exception_is_runtime_error_and_leaves_no_graph(make: MakeHarness) -> None:
    h = make()
    assert h.step(Load((affine_model("f32", (1, 4), fail="load"),))) == RUNTIME_ERROR
    assert h.guest.state.graph_count == 0


def test_a_store_not_made_by_the_host_is_an_embedder_error_not_a_guest_error() -> None:
    host = fake_host()
    linker = wasmtime.Linker(ENGINE)
    define_imports(host, linker)
    store = wasmtime.Store(ENGINE)  # not host.new_store(): an embedder mistake
    instance = linker.instantiate(store, wasmtime.Module(ENGINE, NO_MEMORY_WAT))
    func = instance.exports(store)["load"]
    assert isinstance(func, wasmtime.Func)
    with pytest.raises(ConfigurationError, match="new_store"):
        func(store)
    with pytest.raises(ConfigurationError):
        WasiNnHost.state(store)
    host.close()


def test_a_trap_between_calls_leaves_the_store_usable(make: MakeHarness) -> None:
    h = make()
    ready(h)
    assert h.step(SetInput()) == SUCCESS
    with pytest.raises(wasmtime.Trap):
        h.guest.trap()
    assert h.step(Compute()) == SUCCESS
    assert h.step(GetOutput()) == SUCCESS


def test_busy_and_not_found_are_reachable(make: MakeHarness) -> None:
    # Sanity for the errno table itself: the fuzzers' ALLOWED sets include codes that really occur.
    h = make(limits=Limits(max_graphs_per_store=1))
    assert h.step(LoadByName(b"nope")) == NOT_FOUND
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Load((F32,))) == BUSY


def test_the_fake_backend_sees_only_copies_of_guest_data(make: MakeHarness) -> None:
    # After set_input the guest may reuse its buffer: the backend must have copied the data.
    h = make()
    ready(h)
    assert h.step(SetInput(fill=0)) == SUCCESS
    h.guest.memory.write(h.guest.store, b"\xff" * (h.memory_size - PAGE), PAGE)  # scribble over the whole heap
    assert h.step(Compute()) == SUCCESS
    context = max(h.contexts)
    entry = h.guest.state.context(context)
    assert np.array_equal(entry.context.state["outputs"][0], np.ones((1, 4), np.float32))
    assert fake.LIVE_CONTEXTS
