"""The embedder's limits (:class:`wasinn.Limits`): exceeding a size is ``too_large``, a count ``busy``;
freeing (unload, finalize) makes room again; every store has its own budget."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import wasmtime
from hostile_abi import (
    BUSY,
    CANONICAL_MODELS,
    SUCCESS,
    TOO_LARGE,
    AbiHarness,
    Compute,
    Finalize,
    GetOutput,
    Handle,
    Init,
    Len,
    LiveObjects,
    Load,
    LoadByName,
    SetInput,
    Unload,
    fake_host,
    make_linker,
    quiet_wasinn,
)

from wasinn import Limits, WasiNnHost
from wasinn_test_backends import affine_model, make_model

ENGINE = wasmtime.Engine()
F32 = CANONICAL_MODELS["f32"]


class Hosts:
    def __init__(self) -> None:
        self.made: list[tuple[WasiNnHost, AbiHarness]] = []

    def __call__(self, limits: Limits, host: WasiNnHost | None = None) -> AbiHarness:
        host = host or fake_host(limits)
        harness = AbiHarness(host, ENGINE, make_linker(host, ENGINE))
        self.made.append((host, harness))
        return harness


@pytest.fixture
def make() -> Iterator[Hosts]:
    live = LiveObjects()
    hosts = Hosts()
    with quiet_wasinn() as errors:
        yield hosts
        assert not errors.records, errors.records[0].getMessage()
        for host, harness in hosts.made:
            harness.close(check=False)
            host.close()
    assert live.new() == (0, 0), "a graph or context outlived its store"


def test_the_documented_defaults() -> None:
    limits = Limits()
    assert (limits.max_model_bytes, limits.max_tensor_bytes, limits.max_graphs_per_store,
            limits.max_contexts_per_store, limits.max_store_bytes) == (2 << 30, 1 << 30, 64, 256, 4 << 30)


# ---- sizes: too_large ------------------------------------------------------------------------------------
def test_max_model_bytes(make: Hosts) -> None:
    h = make(Limits(max_model_bytes=len(F32)))
    assert h.step(Load((F32,))) == SUCCESS  # exactly the limit
    bigger = affine_model("f32", (1, 4), padding="x" * 10)
    assert h.step(Load((bigger,))) == TOO_LARGE
    assert h.step(Load((F32, F32))) == TOO_LARGE  # the sum of the builders counts
    assert h.step(LoadByName(b"m")) == SUCCESS  # named models are the embedder's: not counted


def test_max_tensor_bytes_for_inputs(make: Hosts) -> None:
    model = make_model({"inputs": [{"name": "x", "dtype": "u8", "shape": [None]}],
                        "outputs": [{"name": "y", "dtype": "u8", "shape": [None]}]})
    h = make(Limits(max_tensor_bytes=100))
    assert h.step(Load((model,))) == SUCCESS
    assert h.step(Init()) == SUCCESS
    assert h.step(SetInput(dims=(100,), type_number=3)) == SUCCESS
    assert h.step(SetInput(dims=(101,), type_number=3)) == TOO_LARGE
    assert h.step(SetInput(dims=(26,), type_number=4)) == TOO_LARGE  # 26 x i32 = 104 bytes
    assert h.step(SetInput(dims=(50,), type_number=3)) == SUCCESS  # and the context still works
    assert h.step(Compute()) == SUCCESS
    assert h.step(GetOutput(out_max=Len("raw", 1000))) == SUCCESS


def test_max_tensor_bytes_for_outputs(make: Hosts) -> None:
    model = make_model({"inputs": [{"name": "x", "dtype": "u8", "shape": [1, 16]}],
                        "outputs": [{"name": "y", "dtype": "f64", "shape": [1, 16]}], "scale": 2, "bias": 1})
    h = make(Limits(max_tensor_bytes=100))
    assert h.step(Load((model,))) == SUCCESS
    assert h.step(Init()) == SUCCESS
    assert h.step(SetInput(dims=(1, 16), type_number=3)) == SUCCESS  # 16 bytes in
    assert h.step(Compute()) == SUCCESS
    assert h.step(GetOutput(out_max=Len("raw", 4096))) == TOO_LARGE  # 128 bytes out


def test_max_store_bytes(make: Hosts) -> None:
    h = make(Limits(max_store_bytes=2 * len(F32) + len(F32) // 2))
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Load((F32,))) == TOO_LARGE
    assert h.step(LoadByName(b"m")) == SUCCESS  # named models are not the store's bytes
    assert h.step(Unload(Handle("raw", 0))) == SUCCESS
    assert h.step(Load((F32,))) == SUCCESS  # freed bytes can be used again
    assert h.step(Load((F32,))) == TOO_LARGE


def test_max_store_bytes_counts_graphs_kept_alive_by_their_contexts(make: Hosts) -> None:
    """A graph unloaded while a context still uses it is still in memory: it must still count.

    Otherwise load, init_execution_context, unload, repeat pins any number of models while the store
    claims to hold none (up to max_contexts_per_store x max_model_bytes = 512 GiB by default).
    """
    h = make(Limits(max_store_bytes=2 * len(F32) + len(F32) // 2))
    results = []
    for _ in range(4):
        results.append(h.step(Load((F32,))))
        if results[-1] == SUCCESS:
            assert h.step(Init()) == SUCCESS
            assert h.step(Unload()) == SUCCESS
    assert results == [SUCCESS, SUCCESS, TOO_LARGE, TOO_LARGE]
    assert h.step(Finalize()) == SUCCESS  # the last context goes: its graph is released
    assert h.step(Load((F32,))) == SUCCESS


# ---- counts: busy ----------------------------------------------------------------------------------------
def test_max_graphs_per_store(make: Hosts) -> None:
    h = make(Limits(max_graphs_per_store=3))
    assert [h.step(Load((F32,))) for _ in range(3)] == [SUCCESS] * 3
    assert h.step(Load((F32,))) == BUSY
    assert h.step(LoadByName(b"m")) == BUSY
    assert h.step(LoadByName(b"m", b'{"a": 1}')) == BUSY
    assert h.step(Unload(Handle("raw", 1))) == SUCCESS
    assert h.step(LoadByName(b"m")) == SUCCESS  # room again
    assert h.step(Load((F32,))) == BUSY
    other = make(Limits(), host=h.host)  # another store of the same host has its own count
    assert [other.step(Load((F32,))) for _ in range(3)] == [SUCCESS] * 3


def test_max_contexts_per_store(make: Hosts) -> None:
    h = make(Limits(max_contexts_per_store=2))
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Init()) == SUCCESS
    assert h.step(Init()) == SUCCESS
    assert h.step(Init()) == BUSY
    assert h.step(Unload()) == SUCCESS  # unloading the graph does not free its contexts
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Init()) == BUSY
    assert h.step(Finalize(Handle("raw", 0))) == SUCCESS
    assert h.step(Init()) == SUCCESS  # room again, and the new context works
    assert h.step(SetInput()) == SUCCESS


def test_many_cycles_within_the_counts(make: Hosts) -> None:
    # Freeing really frees: 200 load/init/finalize/unload rounds in a store that holds 1 of each.
    h = make(Limits(max_graphs_per_store=1, max_contexts_per_store=1))
    for _ in range(200):
        assert h.step(Load((F32,))) == SUCCESS
        assert h.step(Init()) == SUCCESS
        assert h.step(Finalize()) == SUCCESS
        assert h.step(Unload()) == SUCCESS


def test_store_close_releases_graphs_unloaded_while_a_context_lived(make: Hosts) -> None:
    """load, init_execution_context, unload, then the store closes: the backend must see the graph go."""
    h = make(Limits())
    assert h.step(Load((F32,))) == SUCCESS
    assert h.step(Init()) == SUCCESS
    assert h.step(Unload()) == SUCCESS
    h.guest.close()
    assert h.live.new(h.host) == (0, 0), "the unloaded graph of a live context leaked"


def test_guest_configs_do_not_pile_up_graphs_in_the_host(make: Hosts) -> None:
    """Each distinct config of load_by_name_with_config loads a graph; the host must not keep one per
    config forever (a guest can invent millions). Unloaded, they must be gone (or capped)."""
    h = make(Limits())
    live = LiveObjects()
    for i in range(40):
        assert h.step(LoadByName(b"m", f'{{"variant": {i}}}'.encode())) == SUCCESS
        assert h.step(Unload()) == SUCCESS
    graphs = live.new()[0]  # counting the host's named graphs too
    assert graphs <= 2, f"{graphs} graphs held after 40 configs were loaded and unloaded"
