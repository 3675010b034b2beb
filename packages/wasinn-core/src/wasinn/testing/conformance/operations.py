"""Conformance checks of inference: the five operations on every claimed tensor type, the graph's
description of the model, autodetection, ``load_by_name``, several contexts and graphs, a reused
context, an input copied during ``set_input``, and a context that outlives its unloaded graph."""

from __future__ import annotations

import pytest

from wasinn.enums import ErrorCode, ModelFormat, TensorType
from wasinn.testing.conformance.base import ConformanceBase, _names
from wasinn.testing.drivers import abi_for
from wasinn.testing.harness import KitHarness
from wasinn.testing.values import expect_error, expect_ok, sample_input

__all__ = ["OperationChecks"]


class OperationChecks(ConformanceBase):
    """The five operations and the tensors through them, on graphs, contexts and named models."""

    def test_five_operations(self, kit: KitHarness, dtype: TensorType) -> None:
        driver = kit.driver(dtype)
        graph = self._kit_load(driver, dtype)
        context = expect_ok(driver.init_execution_context(graph), f"{dtype.value} graph")
        self._kit_run(driver, context, dtype, 0, f"{dtype.value} model")
        expect_ok(driver.finalize_execution_context(context))
        expect_ok(driver.unload(graph))

    def test_graph_describes_the_model(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver = kit.guest()
        graph = driver.guest.state.graph(self._kit_load(driver, dtype)).graph
        assert len(graph.inputs) == 1 and len(graph.outputs) == 1, (
            f"load returned a Graph with {len(graph.inputs)} input(s) and {len(graph.outputs)} output(s); "
            f"the model has one of each (Graph.inputs/outputs list them in index order)")
        for kind, spec in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
            assert spec.dtype in (None, dtype), \
                f"Graph {kind} {spec.name!r} says {spec.describe()}, the model is {dtype.value}"
            assert spec.accepts_shape(self.shape), (f"Graph {kind} {spec.name!r} says {spec.describe()}, the model "
                                                    f"is {list(self.shape)}")
        assert isinstance(graph.device, str) and graph.device, "Graph.device must name what runs the graph"

    def test_autodetect(self, kit: KitHarness) -> None:
        builders = self._kit_model(self._kit_primary)
        detected = kit.host.detect_format(builders)
        if detected == ModelFormat.UNKNOWN:
            if self.encoding == "tensorflow":
                pytest.skip("TensorFlow SavedModels have no signature to detect")
            pytest.fail("wasinn cannot detect the format of make_model's bytes: a backend with a format of its "
                        "own must implement detect_format")
        info = kit.backend.info
        assert info is not None
        assert detected in info.formats, (f"make_model's bytes are detected as {detected.value}, which "
                                          f"BackendInfo.formats ({_names(info.formats)}) does not list")
        driver = kit.guest()
        graph = expect_ok(driver.load(builders, None), "encoding autodetect")
        self._kit_run(driver, expect_ok(driver.init_execution_context(graph)), self._kit_primary, 2, "autodetect")

    def test_load_by_name(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        kit.host.register_model("kit-model", self._kit_model(dtype), encoding=self.encoding)
        for config in (None, "{}"):
            driver = kit.guest()
            graph = expect_ok(driver.load_by_name("kit-model", config), "a model registered as 'kit-model'")
            context = expect_ok(driver.init_execution_context(graph), "named graph")
            self._kit_run(driver, context, dtype, 3, f"named model, config {config or 'none'}")
        expect_error(kit.guest().load_by_name("kit-no-such-model"), ErrorCode.NOT_FOUND, "an unregistered name")

    def test_several_contexts_on_one_graph(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver = kit.guest()
        graph = self._kit_load(driver, dtype)
        contexts = [expect_ok(driver.init_execution_context(graph), f"context #{i}") for i in range(3)]
        raws = [sample_input(dtype, self.shape, seed) for seed in (4, 5, 6)]
        for i in (0, 1, 2):
            expect_ok(driver.set_input(contexts[i], 0, raws[i], dtype), f"context #{i}")
        for i in (2, 0, 1):
            expect_ok(driver.compute(contexts[i]), f"context #{i}")
        for i in (1, 2, 0):
            self._kit_check_output(driver, contexts[i], dtype, raws[i],
                                   f"context #{i} of 3 on one graph, inputs set before any compute")

    def test_context_is_reusable(self, kit: KitHarness) -> None:
        driver, _, context = self._kit_ready_context(kit)
        for round_ in range(3):
            self._kit_run(driver, context, self._kit_primary, 7 + round_, f"round {round_ + 1} on one context")
        raw = sample_input(self._kit_primary, self.shape, 9)
        self._kit_check_output(driver, context, self._kit_primary, raw, "get_output called a second time")

    def test_input_is_copied_during_set_input(self, kit: KitHarness) -> None:
        dtype = self._kit_primary
        driver, _, context = self._kit_ready_context(kit)
        raw, scribble = sample_input(dtype, self.shape, 10), sample_input(dtype, self.shape, 11)
        record, data_ptr = driver.put_tensor(raw, dtype)
        assert driver.guest.call("set_input", context, 0, record) == 0, "set_input failed"
        driver.guest.memory.write(driver.store, scribble.tobytes(), data_ptr)  # the guest reuses its buffer
        expect_ok(driver.compute(context))
        try:
            self._kit_check_output(driver, context, dtype, raw, "guest overwrote its input buffer after set_input")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nThe backend read the input after set_input returned: tensor.data is a "
                                 f"view of guest memory valid only during the call; copy it") from None

    def test_several_graphs_in_one_store(self, kit: KitHarness) -> None:
        types = [t for t in dict.fromkeys(self.tensor_types) if abi_for(t) == "witx"][:3]
        types = types if len(types) > 1 else [self._kit_primary] * 2
        driver = kit.guest()
        graphs = [(self._kit_load(driver, t), t) for t in types]
        contexts = [(expect_ok(driver.init_execution_context(g)), t) for g, t in graphs]
        for i, (context, dtype) in enumerate(contexts):
            self._kit_run(driver, context, dtype, 12 + i, f"graph #{i} ({dtype.value}) of {len(graphs)} in one store")
        expect_ok(driver.unload(graphs[0][0]))
        self._kit_run(driver, contexts[-1][0], contexts[-1][1], 15, "the last graph after the first was unloaded")

    def test_context_outlives_unloaded_graph(self, kit: KitHarness) -> None:
        driver, graph, context = self._kit_ready_context(kit)
        expect_ok(driver.unload(graph))
        self._kit_run(driver, context, self._kit_primary, 16, "a context whose graph handle was unloaded")
        expect_ok(driver.finalize_execution_context(context))
        kit.spy_of(kit.host).check_released("after unload, then finalize_execution_context of its last context")
