"""Store-lifecycle soak: a fresh store per cycle, ended in every way a store's life can end.

Shared by test_leaks.py (1,000 cycles in CI) and ``fuzz/soak.py`` (the by-hand
10,000-cycle run whose figures are in docs/security.md).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable

import numpy as np
import wasmtime
from hostile_abi import CANONICAL_MODELS, FastGuest, LiveObjects, fake_host, make_linker

from wasinn import WasiNnHost
from wasinn.testing.guest import TrampolineGuest
from wasinn_test_backends import make_model

PAGE_SIZE = 4096
MODEL = CANONICAL_MODELS["f32"]
DYNAMIC = make_model({"inputs": [{"name": "x", "dtype": "f32", "shape": [None]}],
                      "outputs": [{"name": "y", "dtype": "f32", "shape": [None]}], "scale": 2, "bias": 1})


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def infer(guest: TrampolineGuest, graph: int, shape: tuple[int, ...] = (1, 4), *, finalize: bool) -> None:
    size = math.prod(shape)
    ctx = guest.init_execution_context(graph)
    assert ctx.ok and ctx.value is not None, ctx
    x = np.arange(size, dtype=np.float32).reshape(shape)
    assert guest.set_input(ctx.value, 0, x).ok
    assert guest.compute(ctx.value).ok
    call, y = guest.get_output(ctx.value, 0, np.float32, shape)
    assert call.ok and y is not None and np.array_equal(y, x * 2 + 1)
    if finalize:
        assert guest.finalize_execution_context(ctx.value).ok
    guest.reset_heap()


class Soak:
    """One host, one engine and linker, and a fresh store per cycle (as an embedder serving requests)."""

    def __init__(self) -> None:
        self.host: WasiNnHost = fake_host()
        self.engine = wasmtime.Engine()
        self.linker = make_linker(self.host, self.engine)
        self.live = LiveObjects()

    def guest(self) -> FastGuest:
        return FastGuest(self.host, self.engine, self.linker)

    def check_released(self) -> None:
        graphs, contexts = self.live.new(self.host)
        assert (graphs, contexts) == (0, 0), f"backend holds {graphs} store graphs and {contexts} contexts"

    # -- the ways a store's life can end ---------------------------------------------------------------
    def explicit(self, i: int) -> None:
        g = self.guest()
        graph = g.load([MODEL]).value
        assert graph is not None
        infer(g, graph, finalize=True)
        assert g.unload(graph).ok
        assert (g.state.graph_count, g.state.context_count) == (0, 0)
        g.close()

    def close_with_everything_live(self, i: int) -> None:
        g = self.guest()
        graph = g.load([MODEL]).value
        assert graph is not None
        infer(g, graph, finalize=False)
        infer(g, graph, finalize=False)
        assert (g.state.graph_count, g.state.context_count) == (1, 2)
        g.close()

    def garbage_collected(self, i: int) -> None:
        g = self.guest()
        graph = g.load([MODEL]).value
        assert graph is not None
        infer(g, graph, finalize=False)
        del g  # no close(): wasmtime drops the store's data when the store is collected
        if i % 50 == 0:
            gc.collect()

    def trap_midway(self, i: int) -> None:
        g = self.guest()
        graph = g.load([MODEL]).value
        assert graph is not None
        ctx = g.init_execution_context(graph).value
        assert ctx is not None and g.set_input(ctx, 0, np.ones((1, 4), np.float32)).ok
        try:
            g.trap()
        except wasmtime.Trap:
            pass
        g.close()

    def named(self, i: int) -> None:
        g = self.guest()
        graph = g.load_by_name("m").value
        assert graph is not None
        infer(g, graph, finalize=i % 2 == 0)
        g.close()

    def new_tensor_size_each_time(self, i: int) -> None:
        g = self.guest()
        graph = g.load([DYNAMIC]).value
        assert graph is not None
        infer(g, graph, (1 + i % 4000,), finalize=True)
        g.close()

    def unloaded_while_in_use(self, i: int) -> None:
        g = self.guest()
        graph = g.load([MODEL]).value
        assert graph is not None
        infer(g, graph, finalize=False)
        assert g.unload(graph).ok  # its context keeps it alive until the store closes
        g.close()

    MODES: tuple[str, ...] = ("explicit", "close_with_everything_live", "garbage_collected", "trap_midway", "named",
                              "new_tensor_size_each_time", "unloaded_while_in_use")

    def run(self, cycles: int) -> dict[str, float]:
        modes: list[Callable[[int], None]] = [getattr(self, name) for name in self.MODES]
        warmup = max(cycles // 10, len(modes) * 10)
        started = time.perf_counter()
        rss_start = 0
        for i in range(cycles + warmup):
            if i == warmup:
                gc.collect()
                self.check_released()
                rss_start = rss_bytes()
            mode = modes[i % len(modes)]
            mode(i)
            if mode is not self.garbage_collected:
                self.check_released()
        gc.collect()
        self.check_released()
        rss_end = rss_bytes()
        self.host.close()
        assert self.live.new() == (0, 0)
        return {"cycles": cycles, "seconds": round(time.perf_counter() - started, 1),
                "rss_start_mb": round(rss_start / 1e6, 1), "rss_end_mb": round(rss_end / 1e6, 1),
                "rss_drift_mb": round((rss_end - rss_start) / 1e6, 2)}
