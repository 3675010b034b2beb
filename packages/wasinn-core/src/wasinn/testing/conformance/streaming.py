"""Conformance check of WasmEdge's streaming calls (``compute_single`` / ``get_output_single`` /
``fini_single``), through :func:`wasinn.testing.streaming.check_streaming_hooks`."""

from __future__ import annotations

from wasinn.testing.conformance.base import ConformanceBase
from wasinn.testing.harness import KitHarness
from wasinn.testing.values import expect_ok, sample_input

__all__ = ["StreamingChecks"]


class StreamingChecks(ConformanceBase):
    """Streaming: all three hooks or none, and the context still works afterwards."""

    def test_streaming_hooks(self, kit: KitHarness) -> None:
        # WasmEdge's compute_single / get_output_single / fini_single: all three hooks or none; none
        # means unsupported_operation; a stream ends, stays ended until fini_single, and repeats.
        from wasinn.testing.streaming import check_streaming_hooks

        driver, _, context = self._kit_ready_context(kit)
        expect_ok(driver.set_input(context, 0, sample_input(self._kit_primary, self.shape, 23), self._kit_primary))
        check_streaming_hooks(driver.guest.state, context)
        self._kit_run(driver, context, self._kit_primary, 24, "the same context after the streaming calls")
