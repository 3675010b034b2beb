"""Conformance checks of release: closing or dropping a store, ``unload`` and
``finalize_execution_context``, and closing a host release every graph and context the backend made
(and, where the author counts them, the backend's own objects)."""

from __future__ import annotations

import gc

from wasinn.testing.conformance.base import ConformanceBase
from wasinn.testing.harness import KitHarness
from wasinn.testing.values import expect_ok

__all__ = ["LifecycleChecks"]


class LifecycleChecks(ConformanceBase):
    """Lifecycle: everything the backend made is released, whichever way the store or host ends."""

    def test_store_close_releases_everything(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver = kit.guest()
        graphs = [self._kit_load(driver, dtype) for _ in range(2)]
        contexts = [expect_ok(driver.init_execution_context(g)) for g in (graphs[0], graphs[0], graphs[1])]
        self._kit_run(driver, contexts[0], dtype, 23, "before closing the store")
        tables = driver.guest.state.tables
        driver.close()
        kit.forget(driver)
        assert tables.closed and not tables.graphs and not tables.contexts, "the store's tables were not emptied"
        kit.spy_of(kit.host).check_released("after the store closed")
        self._kit_check_live(before, "after the store closed")

    def test_store_close_after_unloading_a_graph_in_use(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver, graph, _ = self._kit_ready_context(kit)
        expect_ok(driver.unload(graph))  # the context keeps the graph alive until the store closes
        driver.close()
        kit.forget(driver)
        kit.spy_of(kit.host).check_released("after the store closed")
        self._kit_check_live(before, f"after the store closed ({dtype.value} graph unloaded while in use)")

    def test_collected_store_releases_everything(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver = kit.guest(track=False)
        context = expect_ok(driver.init_execution_context(self._kit_load(driver, dtype)))
        self._kit_run(driver, context, dtype, 24, "before dropping the store")
        tables = driver.guest.state.tables
        del driver
        gc.collect()
        assert tables.closed, ("the store was garbage-collected but its wasi-nn state was not released: something "
                               "still references the store")
        kit.spy_of(kit.host).check_released("after the store was garbage-collected")
        self._kit_check_live(before, "after the store was garbage-collected")

    def test_unload_and_finalize_release(self, kit: KitHarness) -> None:
        before = self._kit_live()
        driver, graph, context = self._kit_ready_context(kit)
        self._kit_run(driver, context, self._kit_primary, 25, "before releasing")
        expect_ok(driver.finalize_execution_context(context))
        expect_ok(driver.unload(graph))
        kit.spy_of(kit.host).check_released("after finalize_execution_context and unload")
        self._kit_check_live(before, "after finalize_execution_context and unload")

    def test_host_close_releases_named_graphs(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        host = kit.new_host()
        host.register_model("kit-model", self._kit_model(dtype), encoding=self.encoding)
        for _ in range(2):
            driver = kit.guest(host=host)
            context = expect_ok(driver.init_execution_context(expect_ok(driver.load_by_name("kit-model"))))
            self._kit_run(driver, context, dtype, 26, "a named model")
            driver.close()
            kit.forget(driver)
        spy = kit.spy_of(host)
        assert spy.loads == 1, f"the named model was loaded {spy.loads} times by two stores; expected once"
        host.close()
        spy.check_released("after host.close()")
        self._kit_check_live(before, "after host.close()")
