"""A guest's ONNX model on OpenVINO: sized by shape inference before OpenVINO allocates, per input shape.

(The gigabyte bombs, in child processes with RSS bounds, are in tests/hostile/test_guest_onnx_models.py;
these check the bounds themselves, and that real models are not caught by them.)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from ov_helpers import DIGITS_MODELS

import wasinn
from wasinn import ErrorCode, ExecutionTarget, GraphEncoding, Limits, Tensor, WasiNnError
from wasinn.host.state import StoreState

KiB = 1 << 10


def _tile_by_64() -> bytes:
    """x f32[n, 4] -> Tile by [64, 1]: the output is 64 times the input the guest sends."""
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Tile", ["x", "repeats"], ["y"])], "tile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[helper.make_tensor("repeats", TensorProto.INT64, [2], [64, 1])]),
        opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    data: bytes = proto.SerializeToString()
    return data


@pytest.fixture
def state() -> Iterator[StoreState]:
    limits = Limits(max_tensor_bytes=256 * KiB, max_runtime_bytes_per_context=1024 * KiB)
    with wasinn.WasiNnHost(backend="openvino", limits=limits) as host:
        store = host.new_state()
        yield store
        store.close()


@pytest.fixture
def in_process_state() -> Iterator[StoreState]:
    """The same limits, the guest's model in this process: for what reads the backend's own state."""
    limits = Limits(max_tensor_bytes=256 * KiB, max_runtime_bytes_per_context=1024 * KiB, guest_models="in-process")
    with wasinn.WasiNnHost(backend="openvino", limits=limits) as host:
        store = host.new_state()
        yield store
        store.close()


def test_dynamic_shapes_are_sized_at_compute_per_input_shape(in_process_state: StoreState) -> None:
    state = in_process_state  # reads the guard's own record: the backend's state, in this process
    graph = state.load([_tile_by_64()], GraphEncoding.ONNX, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    guard = state.context(context).context.state.guard
    for rows in (1, 8, 1, 256):  # the output is 64 x rows x 16 bytes: 1 KiB .. 256 KiB
        state.set_input(context, 0, Tensor.from_numpy(np.ones((rows, 4), np.float32)))
        state.compute(context)
        assert state.get_output(context, 0).shape == (64 * rows, 4)
        assert state.context(context).context.budget.holding("outputs") == 64 * rows * 16
    assert len(guard._checked) == 3  # each set of shapes checked once
    state.set_input(context, 0, Tensor.from_numpy(np.ones((512, 4), np.float32)))  # 512 KiB of output
    with pytest.raises(WasiNnError) as error:
        state.compute(context)
    assert error.value.code is ErrorCode.TOO_LARGE
    assert "max_tensor_bytes" in error.value.message
    with pytest.raises(WasiNnError):
        state.get_output(context, 0)  # nothing of the refused run


def test_dynamic_shapes_are_sized_at_compute_in_an_isolated_worker(state: StoreState) -> None:
    # The default host runs the guest's model in a worker: the same bounds, the worker's holding
    # charged to this store, the same error codes.
    graph = state.load([_tile_by_64()], GraphEncoding.ONNX, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    for rows in (1, 8, 1, 256):
        state.set_input(context, 0, Tensor.from_numpy(np.ones((rows, 4), np.float32)))
        state.compute(context)
        assert state.get_output(context, 0).shape == (64 * rows, 4)
        assert state.context(context).context.budget.holding("isolated worker") == 64 * rows * 16
    state.set_input(context, 0, Tensor.from_numpy(np.ones((512, 4), np.float32)))
    with pytest.raises(WasiNnError) as error:
        state.compute(context)
    assert error.value.code is ErrorCode.TOO_LARGE
    assert "max_tensor_bytes" in error.value.message
    with pytest.raises(WasiNnError):
        state.get_output(context, 0)


def test_static_shapes_are_sized_at_load(state: StoreState) -> None:
    data = _tile_by_64()
    proto = onnx.load_from_string(data)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 512  # [512, 4] -> [32768, 4]: 512 KiB
    with pytest.raises(WasiNnError) as error:
        state.load([proto.SerializeToString()], GraphEncoding.ONNX, ExecutionTarget.CPU)
    assert error.value.code is ErrorCode.TOO_LARGE


def test_sizes_that_depend_on_input_values_are_refused(state: StoreState) -> None:
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["y"])], "cos",
        [helper.make_tensor_value_info("shape", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])]),
        opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    with pytest.raises(WasiNnError) as error:
        state.load([proto.SerializeToString()], GraphEncoding.ONNX, ExecutionTarget.CPU)
    assert error.value.code is ErrorCode.UNSUPPORTED_OPERATION
    assert "depends on the values of its inputs" in error.value.message


def test_named_models_are_not_bounded() -> None:
    # The embedder's model is trusted: its sizes are its own business.
    with wasinn.WasiNnHost(backend="openvino", limits=Limits(max_tensor_bytes=256 * KiB)) as host:
        host.register_model("tile", _tile_by_64())
        store = host.new_state()
        context = store.init_execution_context(store.load_by_name("tile"))
        assert store.context(context).context.state.guard is None
        store.set_input(context, 0, Tensor.from_numpy(np.ones((128, 4), np.float32)))
        store.compute(context)
        store.close()


def test_a_real_model_passes_as_a_guest_model() -> None:
    with wasinn.WasiNnHost(backend="openvino") as host:
        store = host.new_state()
        graph = store.load([(DIGITS_MODELS / "digits.onnx").read_bytes()], GraphEncoding.ONNX, ExecutionTarget.CPU)
        context = store.init_execution_context(graph)
        store.set_input(context, 0, Tensor.from_numpy(np.zeros((1, 64), np.float32)))
        store.compute(context)
        assert store.get_output(context, 0).shape == (1, 10)
        store.close()
