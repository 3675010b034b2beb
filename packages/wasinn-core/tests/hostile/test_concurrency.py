"""Concurrency: threads with a store each, sharing one named graph; every output must be right.

Backends say whether contexts of one graph may run at once (``BackendInfo.concurrent_contexts``).
The backends here, registered in code, measure how many of a graph's hook calls overlap, so the
tests see both that wasinn lets contexts overlap where allowed and serialises them where not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import wasmtime
from hostile_abi import CPU_ONLY, FastGuest, fake_host, make_linker, quiet_wasinn

from wasinn import BackendInfo, Context, Graph, ModelFormat, Tensor, WasiNnHost, hookimpl
from wasinn_test_backends import FORMAT, make_model
from wasinn_test_backends.fake import FakeBackend

THREADS = 4
CI_INFERENCES = 300  # per thread


def run_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def target(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:  # report it in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_threads_share_a_named_graph_and_every_output_is_right() -> None:
    host = fake_host()
    engine = wasmtime.Engine()
    wrong: list[tuple[int, int]] = []

    def work(thread: int) -> None:
        guest = FastGuest(host, engine, make_linker(host, engine))
        graph = guest.load_by_name("m").value
        assert graph is not None
        reused = guest.init_execution_context(graph).value
        assert reused is not None
        for i in range(CI_INFERENCES):
            fresh = i % 3 == 0  # a third on a new context, the rest on one reused context
            context = guest.init_execution_context(graph).value if fresh else reused
            assert context is not None
            x = np.full((1, 4), thread * 1000 + i, np.float32)
            assert guest.set_input(context, 0, x).ok
            assert guest.compute(context).ok
            call, y = guest.get_output(context, 0, np.float32, (1, 4))
            assert call.ok
            if not np.array_equal(y, x * 2 + 1):
                wrong.append((thread, i))
            if fresh:
                assert guest.finalize_execution_context(context).ok
            guest.reset_heap()
        assert (guest.state.graph_count, guest.state.context_count) == (1, 1)
        guest.close()

    with quiet_wasinn() as errors:
        run_threads(THREADS, work)
    assert not errors.records
    assert not wrong, f"{len(wrong)} wrong outputs, first {wrong[:5]}"
    assert len(host.named.loaded) == 1  # one graph, loaded once, shared by all four stores
    host.close()


class OverlapMeter(FakeBackend):
    """The fake backend, slowed down, counting how many calls on one graph run at the same time."""

    name = "meter"
    concurrent = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[int, int] = {}
        self.max_overlap = 0

    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(runtime="numpy", runtime_version=np.__version__, formats=(ModelFormat(FORMAT),),
                           concurrent_contexts=self.concurrent)

    def enter(self, graph: Graph) -> None:
        with self.lock:
            self.active[id(graph)] = self.active.get(id(graph), 0) + 1
            self.max_overlap = max(self.max_overlap, self.active[id(graph)])

    def leave(self, graph: Graph) -> None:
        with self.lock:
            self.active[id(graph)] -= 1

    def metered(self, context: Context, call: Callable[[], Any]) -> Any:
        self.enter(context.graph)
        try:
            time.sleep(0.0005)  # a runtime busy outside the GIL
            return call()
        finally:
            self.leave(context.graph)

    @hookimpl
    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        self.metered(context, lambda: FakeBackend.set_input(self, context, index, tensor))

    @hookimpl
    def compute(self, context: Context) -> None:
        self.metered(context, lambda: FakeBackend.compute(self, context))

    @hookimpl
    def get_output(self, context: Context, index: int) -> np.ndarray:
        return self.metered(context, lambda: FakeBackend.get_output(self, context, index))  # type: ignore[no-any-return]


class SerialMeter(OverlapMeter):
    name = "serial-meter"
    concurrent = False


def hammer(backend: OverlapMeter, inferences: int) -> list[tuple[int, int]]:
    host = WasiNnHost(backends={backend.name: backend}, entry_points=False, allow=[backend.name], hardware=CPU_ONLY)
    host.register_model("m", make_model({"inputs": [{"name": "x", "dtype": "f32", "shape": [1, 4]}],
                                         "outputs": [{"name": "y", "dtype": "f32", "shape": [1, 4]}],
                                         "scale": 2, "bias": 1}))
    engine = wasmtime.Engine()
    wrong: list[tuple[int, int]] = []

    def work(thread: int) -> None:
        guest = FastGuest(host, engine, make_linker(host, engine))
        loaded = guest.load_by_name("m")
        assert loaded.ok and loaded.value is not None, loaded
        made = guest.init_execution_context(loaded.value)
        assert made.ok and made.value is not None, made
        context = made.value
        for i in range(inferences):
            x = np.full((1, 4), thread * 1000 + i, np.float32)
            assert guest.set_input(context, 0, x).ok
            assert guest.compute(context).ok
            call, y = guest.get_output(context, 0, np.float32, (1, 4))
            if not call.ok or not np.array_equal(y, x * 2 + 1):
                wrong.append((thread, i))
            guest.reset_heap()
        guest.close()

    with quiet_wasinn():
        run_threads(THREADS, work)
    host.close()
    return wrong


def test_contexts_of_one_graph_overlap_where_the_backend_allows_it() -> None:
    meter = OverlapMeter()
    wrong = hammer(meter, 60)
    assert not wrong
    assert meter.max_overlap > 1, "contexts of a concurrent backend never ran at the same time"


def test_contexts_of_one_graph_are_serialised_where_the_backend_asks() -> None:
    meter = SerialMeter()
    wrong = hammer(meter, 60)
    assert not wrong
    assert meter.max_overlap == 1, f"{meter.max_overlap} calls ran at once on a concurrent_contexts=False graph"


# ---- a runtime with one buffer per graph ---------------------------------------------------------------------
ELEMENTS = 1 << 20  # 4 MiB of f32: copying it takes long enough for another thread to get in


class SharedBufferBackend(FakeBackend):
    """Like a TFLite interpreter shared by a graph's contexts: one output buffer per graph, so
    ``concurrent_contexts=False``. ``get_output`` returns a view of that buffer (which the hookspec
    allows), recomputing first if another context ran since."""

    name = "shared-buffer"

    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(runtime="numpy", runtime_version=np.__version__, formats=(ModelFormat(FORMAT),),
                           concurrent_contexts=False)

    @hookimpl
    def load(self, model: Any, hw: Any) -> Graph:
        graph = FakeBackend.load(self, model, hw)
        graph.state = {**graph.state, "buffer": np.zeros(ELEMENTS, np.float32), "owner": None}
        return graph

    @hookimpl
    def compute(self, context: Context) -> None:
        shared = context.graph.state
        shared["buffer"][:] = context.state["inputs"][0].reshape(-1)[0] * 2 + 1
        shared["owner"] = id(context)

    @hookimpl
    def get_output(self, context: Context, index: int) -> np.ndarray:
        shared = context.graph.state
        if shared["owner"] != id(context):
            self.compute(context)
        return shared["buffer"]  # type: ignore[no-any-return]


def test_serialised_outputs_are_copied_before_another_context_can_overwrite_them() -> None:
    """With concurrent_contexts=False wasinn holds the graph's lock during get_output; the copy into
    the guest must happen under it too, or another thread's compute overwrites the buffer mid-copy."""
    host = WasiNnHost(backends={"shared-buffer": SharedBufferBackend()}, entry_points=False, allow=["shared-buffer"],
                      hardware=CPU_ONLY)
    host.register_model("m", make_model({"inputs": [{"name": "x", "dtype": "f32", "shape": [ELEMENTS]}],
                                         "outputs": [{"name": "y", "dtype": "f32", "shape": [ELEMENTS]}]}))
    engine = wasmtime.Engine()
    wrong: list[tuple[int, int, list[float]]] = []

    def work(thread: int) -> None:
        guest = FastGuest(host, engine, make_linker(host, engine))
        graph = guest.load_by_name("m").value
        assert graph is not None
        context = guest.init_execution_context(graph).value
        assert context is not None
        for i in range(25):
            value = float(thread * 100 + i)
            assert guest.set_input(context, 0, np.full(ELEMENTS, value, np.float32)).ok
            assert guest.compute(context).ok
            call, y = guest.get_output(context, 0, np.float32, max_bytes=4 * ELEMENTS)
            assert call.ok and y is not None
            if not np.all(y == value * 2 + 1):
                wrong.append((thread, i, sorted(set(np.unique(y).tolist()))[:4]))
            guest.reset_heap()
        guest.close()

    with quiet_wasinn():
        run_threads(THREADS, work)
    host.close()
    assert not wrong, f"{len(wrong)} of {THREADS * 25} outputs were another context's or torn: {wrong[:3]}"
