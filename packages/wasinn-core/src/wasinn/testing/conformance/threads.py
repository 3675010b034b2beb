"""Conformance checks of concurrent use: several threads, each with its own store, infer at once
on one named graph or on graphs of their own, and each gets its own right answers."""

from __future__ import annotations

import sys
import threading

from wasinn.testing.conformance.base import ConformanceBase
from wasinn.testing.harness import KitHarness
from wasinn.testing.values import expect_ok, sample_input

__all__ = ["ThreadChecks"]


class ThreadChecks(ConformanceBase):
    """Threads: concurrent inferences on a shared named graph and on graphs of their own."""

    def _kit_threads(self, kit: KitHarness, *, named: bool) -> None:
        dtype = self._kit_primary
        host = kit.host  # made here, not raced for by the threads
        if named:
            host.register_model("kit-threads", self._kit_model(dtype), encoding=self.encoding)
        count = max(2, self.threads)
        barrier = threading.Barrier(count)
        errors: list[str] = []

        def worker(index: int) -> None:
            try:
                driver = kit.guest(host=host)  # its own engine and store
                barrier.wait(timeout=120)
                graph = expect_ok(driver.load_by_name("kit-threads"), f"thread {index}") if named \
                    else self._kit_load(driver, dtype)
                context = expect_ok(driver.init_execution_context(graph), f"thread {index}")
                for it in range(self.iterations):
                    what = f"thread {index} of {count}, inference {it + 1}"
                    raw = sample_input(dtype, self.shape, 100 + index * self.iterations + it)
                    expect_ok(driver.set_input(context, 0, raw, dtype), what)
                    barrier.wait(timeout=120)  # every thread has set its input before any computes
                    expect_ok(driver.compute(context), what)
                    self._kit_check_output(driver, context, dtype, raw, what)
                    barrier.wait(timeout=120)
            except threading.BrokenBarrierError:
                pass  # another thread failed first; its error is the one to report
            except BaseException as exc:
                errors.append(f"thread {index}: {exc}")
                barrier.abort()

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)  # switch threads often, so that unsafe shared state shows
        try:
            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=300)
        finally:
            sys.setswitchinterval(interval)
        stuck = sum(thread.is_alive() for thread in threads)
        assert not stuck, f"{stuck} of {count} threads did not finish in 300 s (a deadlock?)"
        assert not errors, "\n".join(errors)

    def test_threads_share_a_named_graph(self, kit: KitHarness) -> None:
        self._kit_threads(kit, named=True)

    def test_threads_with_their_own_graphs(self, kit: KitHarness) -> None:
        self._kit_threads(kit, named=False)
