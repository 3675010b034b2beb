"""Leaks: create store -> load -> infer -> drop, over and over; nothing may accumulate.

CI runs 1,000 cycles; ``WASINN_SOAK=1`` runs the 10,000 of the by-hand soak (figures in
docs/security.md; ``fuzz/soak.py`` prints them). Each cycle picks one way of ending a store (explicit
release, ``store.close()`` with everything still live, plain garbage collection, a trap in the middle,
a shared named graph, a new tensor size every time, a graph unloaded while its context lives), and
after every cycle no graph or context of the store may be left, neither in wasinn's tables nor in
the backend.
"""

from __future__ import annotations

import gc

from hostile_abi import quiet_wasinn
from hostile_settings import soak_cycles
from hostile_soak import MODEL, Soak, infer, rss_bytes

from wasinn import WasiNnHost


def test_store_cycles_leak_nothing() -> None:
    cycles = soak_cycles(1000)
    with quiet_wasinn() as errors:
        result = Soak().run(cycles)
    assert not errors.records
    print(f"soak: {result}")
    assert result["rss_drift_mb"] < 10, f"RSS grew by {result['rss_drift_mb']:.1f} MB over {cycles} cycles"


def test_unloading_a_graph_with_a_live_context_then_closing_leaks_nothing() -> None:
    soak = Soak()
    with quiet_wasinn():
        for _ in range(50):
            g = soak.guest()
            graph = g.load([MODEL]).value
            assert graph is not None
            assert g.init_execution_context(graph).ok
            assert g.unload(graph).ok  # the context keeps the graph alive...
            g.close()  # ...until the store closes
        soak.check_released()
    soak.host.close()


def test_a_long_lived_store_does_not_grow() -> None:
    """One store, many inferences (and failed calls): the tables stay empty, memory stays flat."""
    soak = Soak()
    with quiet_wasinn():
        g = soak.guest()
        graph = g.load([MODEL]).value
        assert graph is not None
        for _ in range(200):
            infer(g, graph, finalize=True)
        gc.collect()
        start = rss_bytes()
        for i in range(2000):
            infer(g, graph, finalize=True)
            assert g.init_execution_context(1000 + i).errno == 1  # failures cost nothing either
        gc.collect()
        drift = (rss_bytes() - start) / 1e6
        assert (g.state.graph_count, g.state.context_count) == (1, 0)
        g.close()
        soak.check_released()
    soak.host.close()
    assert drift < 5, f"RSS grew by {drift:.1f} MB over 2000 inferences in one store"


def test_state_close_releases_whatever_else_holds_the_state() -> None:
    """docs/embedding.md: ``store.close()`` releases by dropping the store's data, so a reference an
    embedder keeps (``state = host.state(store)``) keeps the graphs; ``state.close()`` releases them
    anyway, idempotently."""
    soak = Soak()
    with quiet_wasinn():
        g = soak.guest()
        state = WasiNnHost.state(g.store)
        graph = g.load([MODEL]).value
        assert graph is not None
        infer(g, graph, finalize=False)
        state.close()
        soak.check_released()
        assert (state.graph_count, state.context_count) == (0, 0)
        assert g.init_execution_context(graph).errno == 5  # runtime_error "closed", not a crash
        state.close()
        g.close()
        soak.check_released()
    soak.host.close()
