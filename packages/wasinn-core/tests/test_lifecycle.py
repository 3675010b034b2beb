"""Graphs and contexts belong to their store and are released on unload/finalize, close and GC;
named models are loaded once and shared by every store of the host."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import pytest

import wasinn
from wasinn.testing.guest import TrampolineGuest
from wasinn_test_backends import affine_model, fake


@pytest.fixture
def host() -> Iterator[wasinn.WasiNnHost]:
    # In-process: these tests count the fake backend's live graphs and contexts in this process.
    with wasinn.WasiNnHost(limits=wasinn.Limits(guest_models="in-process")) as h:
        yield h


@pytest.fixture(autouse=True)
def _no_leftovers() -> None:
    gc.collect()
    fake.LIVE_GRAPHS.clear()
    fake.LIVE_CONTEXTS.clear()


def test_unload_and_finalize_release_backend_objects(guest: TrampolineGuest) -> None:
    graph = guest.load([affine_model()]).value
    ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
    assert len(fake.LIVE_GRAPHS) == 1 and len(fake.LIVE_CONTEXTS) == 1
    assert guest.unload(graph).ok  # type: ignore[arg-type]
    assert len(fake.LIVE_GRAPHS) == 1, "a graph with a live context stays until that context goes"
    guest.set_input(ctx, 0, np.ones((1, 4), np.float32))  # type: ignore[arg-type]
    assert guest.compute(ctx).ok  # type: ignore[arg-type]
    assert guest.finalize_execution_context(ctx).ok  # type: ignore[arg-type]
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS
    assert guest.state.graph_count == 0 and guest.state.context_count == 0


def test_store_close_releases_everything(host: wasinn.WasiNnHost) -> None:
    guest = TrampolineGuest(host)
    for _ in range(3):
        graph = guest.load([affine_model()]).value
        guest.init_execution_context(graph)  # type: ignore[arg-type]
    tables = guest.state.tables  # keep only the tables: holding the state itself would keep it alive
    assert len(fake.LIVE_GRAPHS) == 3 and len(fake.LIVE_CONTEXTS) == 3
    guest.close()
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS
    assert tables.closed and not tables.graphs and not tables.contexts


def test_garbage_collected_store_releases_everything(host: wasinn.WasiNnHost) -> None:
    guest = TrampolineGuest(host)
    guest.init_execution_context(guest.load([affine_model()]).value)  # type: ignore[arg-type]
    assert fake.LIVE_GRAPHS
    del guest
    gc.collect()
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS


def test_trap_mid_way_then_close_releases(host: wasinn.WasiNnHost) -> None:
    guest = TrampolineGuest(host)
    guest.init_execution_context(guest.load([affine_model()]).value)  # type: ignore[arg-type]
    with pytest.raises(Exception, match=r"unreachable|wasm trap"):
        guest.trap()
    guest.close()
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS


def test_named_model_is_loaded_once_and_shared_by_stores(host: wasinn.WasiNnHost) -> None:
    host.register_model("affine", affine_model())
    guests = [TrampolineGuest(host) for _ in range(3)]
    handles = [g.load_by_name("affine") for g in guests]
    assert all(h.ok for h in handles)
    assert len(fake.LIVE_GRAPHS) == 1, "one compiled graph for every store"
    second = guests[0].load_by_name("affine")
    assert second.ok and second.value != handles[0].value, "each load_by_name gets a new handle"
    for g in guests:
        out = g.infer(0, [np.arange(4, dtype=np.float32).reshape(1, 4)], [("<f4", (1, 4))])
        assert out[0].tolist() == [[1, 3, 5, 7]]
    for g in guests:
        assert g.unload(0).ok
        g.close()
    assert len(fake.LIVE_GRAPHS) == 1 and not fake.LIVE_CONTEXTS, "the host, not a store, owns a named graph"
    host.close()
    assert not fake.LIVE_GRAPHS


def test_named_model_config_makes_a_separate_graph(host: wasinn.WasiNnHost, tmp_path: object) -> None:
    host.register_model("affine", affine_model(), config={"threads": 1})
    guest = TrampolineGuest(host)
    assert guest.load_by_name("affine").ok
    assert guest.load_by_name("affine", '{"threads": 1}').ok  # same merged config: cached
    assert len(fake.LIVE_GRAPHS) == 1
    assert guest.load_by_name("affine", '{"threads": 2}').ok
    assert len(fake.LIVE_GRAPHS) == 2
    assert guest.load_by_name("affine", "[1, 2]").errno == 1  # config must be an object
    assert guest.load_by_name("affine", "{bad json").errno == 1


def test_named_model_from_files(host: wasinn.WasiNnHost, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "m.wtst"
    path.write_bytes(affine_model())
    named = host.register_model("file-model", path)
    assert named.paths == (path.resolve(),)
    assert TrampolineGuest(host).load_by_name("file-model").ok
    with pytest.raises(wasinn.ConfigurationError, match="is not a file"):
        host.register_model("missing", Path(str(tmp_path)) / "nope.onnx")


def test_closed_host_refuses_new_named_loads(host: wasinn.WasiNnHost) -> None:
    host.register_model("affine", affine_model())
    guest = TrampolineGuest(host)
    host.close()
    assert guest.load_by_name("affine").errno == 5


def test_embedder_can_drive_a_state_without_wasm(host: wasinn.WasiNnHost) -> None:
    state = host.new_state()
    graph = state.load([affine_model()], wasinn.GraphEncoding.AUTODETECT, wasinn.ExecutionTarget.CPU)
    ctx = state.init_execution_context(graph)
    state.set_input(ctx, 0, wasinn.Tensor.from_numpy(np.ones((1, 4), np.float32)))
    state.compute(ctx)
    assert state.get_output(ctx, 0).tolist() == [[3, 3, 3, 3]]
    state.close()
    assert not fake.LIVE_GRAPHS


def test_registering_a_name_again_serves_the_new_model(host: wasinn.WasiNnHost) -> None:
    host.register_model("m", affine_model())
    guest = TrampolineGuest(host)
    old = guest.load_by_name("m").value
    host.register_model("m", affine_model(scale=10, bias=0))
    new = guest.load_by_name("m").value
    x = [np.ones((1, 4), np.float32)]
    assert guest.infer(old, x, [("<f4", (1, 4))])[0].tolist() == [[3, 3, 3, 3]]  # type: ignore[arg-type]
    assert guest.infer(new, x, [("<f4", (1, 4))])[0].tolist() == [[10, 10, 10, 10]]  # type: ignore[arg-type]
    guest.close()
    host.close()
    assert not fake.LIVE_GRAPHS


def test_store_close_releases_a_graph_unloaded_while_its_context_lived(host: wasinn.WasiNnHost) -> None:
    guest = TrampolineGuest(host)
    graph = guest.load([affine_model()]).value
    guest.init_execution_context(graph)  # type: ignore[arg-type]
    assert guest.unload(graph).ok  # type: ignore[arg-type]
    guest.close()
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS


def test_backends_see_which_config_keys_came_from_the_guest(host: wasinn.WasiNnHost) -> None:
    host.register_model("m", affine_model(), config={"threads": 1, "cache_dir": "/embedder/choice"})
    loaded = host.load_named("m", {"threads": 2})
    assert loaded.graph.state is not None
    model = host.describe_model([affine_model()], config={"a": 1}, guest_config={"b": 2})
    assert model.guest_config == {"b": 2} and model.config == {"a": 1}
