"""The backend through the embedder API (a store's state without wasm): formats, tensor types,
outputs, configs and targets, each compared with torch called natively."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch_models import TORCH_DTYPE, AddOne, Affine, exported, torchscript

import wasinn
from wasinn import ErrorCode, ExecutionTarget, GraphEncoding, Limits, ModelFormat, Tensor, TensorType, WasiNnError
from wasinn.host.state import StoreState


@pytest.fixture
def host() -> Iterator[wasinn.WasiNnHost]:
    # These tests load models as a guest would: the embedder opted in to guest TorchScript/.pt2.
    with wasinn.WasiNnHost(backend="pytorch", limits=Limits(allow_guest_code=True)) as h:
        yield h


@pytest.fixture
def state(host: wasinn.WasiNnHost) -> Iterator[StoreState]:
    s = host.new_state()
    yield s
    s.close()


def run(state: StoreState, model: bytes, *inputs: np.ndarray, target: ExecutionTarget = ExecutionTarget.CPU,
        outputs: int = 1) -> list[np.ndarray]:
    graph = state.load([model], GraphEncoding.PYTORCH, target)
    context = state.init_execution_context(graph)
    for index, array in enumerate(inputs):
        state.set_input(context, index, Tensor.from_numpy(array))
    state.compute(context)
    return [np.array(state.get_output(context, i)) for i in range(outputs)]


def test_both_formats_are_recognised_and_ranked_first(host: wasinn.WasiNnHost) -> None:
    for data, fmt in ((torchscript(AddOne()), ModelFormat.TORCHSCRIPT),
                      (exported(AddOne(), torch.zeros(2)), ModelFormat.TORCH_EXPORT)):
        ranking = host.explain([data])
        assert ranking.model.format == fmt
        assert ranking.winner is not None and ranking.winner.backend == "pytorch"
        assert f"{fmt.value} is PyTorch's own format" in ranking.winner.reason


@pytest.mark.parametrize("kind", ["torchscript", "export"])
def test_two_outputs_equal_native_torch(state: StoreState, kind: str) -> None:
    module = Affine().eval()
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    model = torchscript(module) if kind == "torchscript" else exported(module, torch.zeros(2, 4))
    y, sums = run(state, model, x, outputs=2)
    with torch.inference_mode():
        want_y, want_sums = module(torch.from_numpy(x))
    np.testing.assert_array_equal(y, want_y.numpy())
    np.testing.assert_array_equal(sums, want_sums.numpy())


@pytest.mark.parametrize("dtype", [t for t in TORCH_DTYPE if t is not TensorType.BF16], ids=lambda t: t.value)
def test_every_tensor_type_through_torchscript(state: StoreState, dtype: TensorType) -> None:
    x = (np.arange(6) % 5).astype(dtype.numpy_dtype).reshape(2, 3)
    (y,) = run(state, torchscript(AddOne()), x)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, x + np.asarray(1, x.dtype))


def test_bf16_in_and_out(state: StoreState) -> None:
    values = torch.tensor([[1.5, -2.0, 3.25]], dtype=torch.bfloat16)
    raw = values.view(torch.int16).numpy().view(np.uint16)
    graph = state.load([torchscript(AddOne())], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    state.set_input(context, 0, Tensor(TensorType.BF16, (1, 3), memoryview(raw.tobytes())))
    state.compute(context)
    out = np.array(state.get_output(context, 0))
    got = torch.from_numpy(out.view(np.int16).copy()).view(torch.bfloat16)
    assert torch.equal(got, values + 1)


def test_dict_and_bool_outputs(state: StoreState) -> None:
    class Mixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"positive": x > 0, "double": x * 2}

    x = np.array([-1.0, 0.0, 2.0], np.float32)
    positive, double = run(state, torchscript(Mixed()), x, outputs=2)
    np.testing.assert_array_equal(positive, np.array([0, 0, 1], np.uint8))
    np.testing.assert_array_equal(double, x * 2)


def test_a_non_tensor_output_is_unsupported(state: StoreState) -> None:
    class WithInt(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
            return x, 3

    graph = state.load([torchscript(WithInt())], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    state.set_input(context, 0, Tensor.from_numpy(np.zeros(2, np.float32)))
    state.compute(context)
    with pytest.raises(WasiNnError) as caught:
        state.get_output(context, 1)
    assert caught.value.code is ErrorCode.UNSUPPORTED_OPERATION and "int" in str(caught.value)
    np.testing.assert_array_equal(state.get_output(context, 0), np.zeros(2, np.float32))  # still usable


def test_optional_inputs_keep_their_defaults(state: StoreState) -> None:
    class Scaled(torch.nn.Module):
        def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
            if scale is None:
                return x
            return x * scale

    model = torchscript(Scaled())
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_array_equal(run(state, model, x)[0], x)
    np.testing.assert_array_equal(run(state, model, x, np.array([3.0], np.float32))[0], x * 3)


def test_missing_input_and_runtime_failure(state: StoreState) -> None:
    class Two(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a @ b

    graph = state.load([torchscript(Two())], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    state.set_input(context, 0, Tensor.from_numpy(np.ones((2, 3), np.float32)))
    with pytest.raises(WasiNnError) as caught:
        state.compute(context)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "1" in str(caught.value)
    state.set_input(context, 1, Tensor.from_numpy(np.ones((4, 2), np.float32)))  # 3 != 4: matmul fails
    with pytest.raises(WasiNnError) as caught:
        state.compute(context)
    assert caught.value.code is ErrorCode.RUNTIME_ERROR
    state.set_input(context, 1, Tensor.from_numpy(np.ones((3, 2), np.float32)))
    state.compute(context)
    np.testing.assert_array_equal(state.get_output(context, 0), np.full((2, 2), 3, np.float32))


def test_export_program_checks_type_and_shape_at_set_input(state: StoreState) -> None:
    graph = state.load([exported(AddOne(), torch.zeros(2, 3))], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    for bad in (np.zeros((2, 3), np.int32), np.zeros((3, 2), np.float32)):
        with pytest.raises(WasiNnError) as caught:
            state.set_input(context, 0, Tensor.from_numpy(bad))
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "f32[2,3]" in str(caught.value)


def test_gpu_without_cuda_is_refused_not_run_on_the_cpu(state: StoreState) -> None:
    assert not torch.cuda.is_available()  # this test is about a machine without CUDA
    for target in (ExecutionTarget.GPU, ExecutionTarget.TPU):
        with pytest.raises(WasiNnError) as caught:
            state.load([torchscript(AddOne())], GraphEncoding.PYTORCH, target)
        assert caught.value.code is ErrorCode.UNSUPPORTED_OPERATION
    host = wasinn.WasiNnHost()
    reason = host.explain([torchscript(AddOne())], target=ExecutionTarget.GPU).candidates[0].reason
    assert "CUDA" in reason and "not running on the CPU" in reason
    host.close()


def test_auto_runs_on_the_cpu_without_cuda(state: StoreState) -> None:
    x = np.ones(3, np.float32)
    np.testing.assert_array_equal(run(state, torchscript(AddOne()), x, target=ExecutionTarget.AUTO)[0], x + 1)


@pytest.mark.parametrize(("config", "words"), [
    ({"device": "tpu"}, "device must be"), ({"num_threads": 0}, "num_threads"), ({"threads": 2}, "unknown key"),
    ({"device": "cuda"}, "contradicts target cpu"),
])
def test_bad_configs_are_invalid_argument(host: wasinn.WasiNnHost, config: dict[str, object], words: str) -> None:
    host.register_model("m", [torchscript(AddOne())], config=config)
    state = host.new_state()
    with pytest.raises(WasiNnError) as caught:
        state.load_by_name("m")
    assert caught.value.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.UNSUPPORTED_OPERATION), caught.value
    assert words in str(caught.value)
    state.close()


def test_a_guest_may_not_set_the_process_wide_thread_count(host: wasinn.WasiNnHost) -> None:
    host.register_model("m", [torchscript(AddOne())])
    state = host.new_state()
    with pytest.raises(WasiNnError) as caught:
        state.load_by_name("m", {"num_threads": 1})
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "guest may not set num_threads" in str(caught.value)
    state.close()


def test_embedder_sets_the_thread_count(host: wasinn.WasiNnHost) -> None:
    before = torch.get_num_threads()
    try:
        host.register_model("m", [torchscript(AddOne())], config={"num_threads": 1})
        state = host.new_state()
        state.load_by_name("m")
        assert torch.get_num_threads() == 1
        state.close()
    finally:
        torch.set_num_threads(before)
