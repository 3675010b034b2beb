"""Conformance checks of error paths: a wrong input type, shape or index, unknown and released
handles, a small output buffer, ``compute`` before ``set_input``, ``get_output`` before ``compute``
and corrupt model bytes each give the right error code, and the context works afterwards."""

from __future__ import annotations

from wasinn.enums import ErrorCode, TensorType
from wasinn.testing.conformance.base import ConformanceBase
from wasinn.testing.harness import KitHarness
from wasinn.testing.values import expect_error, expect_ok, sample_input

__all__ = ["WITX_TYPES", "ErrorChecks"]

WITX_TYPES = (TensorType.F32, TensorType.F16, TensorType.F64, TensorType.U8, TensorType.I32, TensorType.I64)


class ErrorChecks(ConformanceBase):
    """Error paths: each wrong call gets its error code and leaves the context usable."""

    def test_wrong_input_type(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        others = [t for t in WITX_TYPES if t is not dtype]
        other = next((t for t in others if t.itemsize == dtype.itemsize), others[0])
        outcome = driver.set_input(context, 0, sample_input(other, self.shape), other)
        expect_error(outcome, ErrorCode.INVALID_ARGUMENT,
                     f"a {other.value}{list(self.shape)} tensor for a {dtype.value} input: check tensor.dtype in "
                     f"set_input")
        self._kit_run(driver, context, dtype, 17, "the same context after the refused input")

    def test_wrong_input_shape(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        problems = []
        for shape in self.wrong_shapes(self.shape):
            outcome = driver.set_input(context, 0, sample_input(dtype, shape), dtype)
            if outcome.code is not ErrorCode.INVALID_ARGUMENT:
                problems.append(f"set_input of {dtype.value}{list(shape)} for a {dtype.value}{list(self.shape)} "
                                f"input: expected invalid_argument, got {outcome.describe()}{outcome.said()}")
        assert not problems, "\n".join(problems) + "\n(check tensor.shape in set_input)"
        self._kit_run(driver, context, dtype, 18, "the same context after the refused inputs")

    def test_wrong_index(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        raw = sample_input(dtype, self.shape)
        for index in (1, 0xFFFFFFFF):
            expect_error(driver.set_input(context, index, raw, dtype), ErrorCode.INVALID_ARGUMENT,
                         f"input index {index} of a one-input model")
        self._kit_run(driver, context, dtype, 19, "before asking for a bad output index")
        for index in (1, 0xFFFFFFFF):
            expect_error(driver.get_output(context, index, 1 << 16)[0], ErrorCode.INVALID_ARGUMENT,
                         f"output index {index} of a one-output model")

    def test_unknown_handles(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, graph, context = self._kit_ready_context(kit)
        bad = 4242
        raw = sample_input(dtype, self.shape)
        expect_error(driver.init_execution_context(bad), ErrorCode.INVALID_ARGUMENT, f"graph {bad}")
        expect_error(driver.set_input(bad, 0, raw, dtype), ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_error(driver.compute(bad), ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_error(driver.get_output(bad, 0, 1 << 16)[0], ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_error(driver.unload(bad), ErrorCode.INVALID_ARGUMENT, f"graph {bad}")
        expect_error(driver.finalize_execution_context(bad), ErrorCode.INVALID_ARGUMENT, f"context {bad}")
        expect_ok(driver.finalize_execution_context(context))
        expect_error(driver.finalize_execution_context(context), ErrorCode.INVALID_ARGUMENT, "a finalized context")
        expect_ok(driver.unload(graph))
        expect_error(driver.init_execution_context(graph), ErrorCode.INVALID_ARGUMENT, "an unloaded graph")

    def test_small_output_buffer(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        self._kit_run(driver, context, dtype, 20, "before reading into a small buffer")
        nbytes = self._kit_nbytes(dtype)
        outcome, _ = driver.get_output(context, 0, nbytes - 1)
        expect_error(outcome, ErrorCode.TOO_LARGE, f"a {nbytes - 1}-byte buffer for a {nbytes}-byte output")
        assert outcome.value == nbytes, (f"get_output into a small buffer reported {outcome.value} bytes needed, "
                                         f"expected {nbytes}")
        outcome, _ = driver.get_output(context, 0, nbytes)
        assert expect_ok(outcome, f"a buffer of exactly {nbytes} bytes") == nbytes

    def test_compute_without_inputs_fails(self, kit: KitHarness) -> None:
        driver, _, context = self._kit_ready_context(kit)
        expect_error(driver.compute(context), None, "compute before set_input: report the missing input(s)")
        self._kit_run(driver, context, self._kit_primary, 21, "the same context after the failed compute")

    def test_get_output_before_compute_fails(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        expect_error(driver.get_output(context, 0, 1 << 16)[0], None, "get_output before any compute")
        expect_ok(driver.set_input(context, 0, sample_input(dtype, self.shape), dtype))
        expect_error(driver.get_output(context, 0, 1 << 16)[0], None,
                     "get_output after set_input but before compute (must not return stale or uninitialised data)")

    def test_bad_model_bytes(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        before = self._kit_live()
        driver = kit.guest()
        problems = []
        for label, builders in self.bad_models(dtype, tuple(self.shape)).items():
            for encoding in dict.fromkeys((self.encoding, None)):
                outcome = driver.load(builders, encoding)
                if outcome.ok:
                    problems.append(f"load of a corrupt model ({label}), encoding {encoding or 'autodetect'}: "
                                    f"expected an error code, got success (graph {outcome.value})")
        assert not problems, "\n".join(problems)
        assert driver.guest.state.graph_count == 0
        kit.spy_of(kit.host).check_released("after failed loads")
        self._kit_check_live(before, "after failed loads")
        self._kit_run(driver, expect_ok(driver.init_execution_context(self._kit_load(driver, dtype))), dtype, 22,
                      "a good model after the corrupt ones")
