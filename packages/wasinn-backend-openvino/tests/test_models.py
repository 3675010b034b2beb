"""IR, ONNX and TFLite models through the core and this backend (no wasm): dtypes, shapes, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import openvino.opset13 as ops
import pytest
from onnx import TensorProto, helper, numpy_helper
from ov_helpers import (
    BIRDS,
    DIGITS_MODELS,
    IR_TYPES,
    WAMR_MODELS,
    compiled_of,
    digits_images,
    infer,
    ir_builders,
    load_named,
    native_digits,
    new_host,
    run_graph,
)

from wasinn import ErrorCode, ExecutionTarget, GraphEncoding, Limits, Tensor, TensorType, WasiNnError, hardware


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 as raw 16-bit words (exact for the small integers used here)."""
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def affine_ir(kind: TensorType, shape: list[int]) -> ov.Model:
    """y = x * 2 + 1 in the element type of ``kind``."""
    element = IR_TYPES[kind]
    x = ops.parameter(shape, element, name="x")
    two, one = (ops.constant(np.array(v, np.float32)) for v in (2, 1))
    if element != ov.Type.f32:
        two, one = ops.convert(two, element), ops.convert(one, element)
    y = ops.add(ops.multiply(x, two), one)
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([ops.result(y)], [x], f"affine_{kind.value}")


@pytest.mark.parametrize("kind", list(IR_TYPES))
def test_ir_every_dtype(kind: TensorType, tmp_path: Path) -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = values * 2 + 1
    if kind is TensorType.BF16:
        x, want = bf16_bits(values), bf16_bits(expected)
    else:
        x, want = values.astype(kind.numpy_dtype), expected.astype(kind.numpy_dtype)
    (y,) = infer(ir_builders(affine_ir(kind, [3, 4]), tmp_path), [x], types=[kind])
    assert y.dtype == kind.numpy_dtype and y.shape == (3, 4)
    np.testing.assert_array_equal(y, want)


def multi_io_ir() -> ov.Model:
    a = ops.parameter([2, 3], ov.Type.f32, name="a")
    b = ops.parameter([3], ov.Type.i32, name="b")
    total = ops.add(a, ops.convert(b, ov.Type.f32))
    tripled = ops.multiply(b, ops.constant(np.int32(3)))
    grand = ops.reduce_sum(ops.convert(a, ov.Type.f64), ops.constant(np.array([0, 1], np.int64)), False)
    for node, name in ((total, "total"), (tripled, "tripled"), (grand, "grand")):
        node.output(0).get_tensor().set_names({name})
    return ov.Model([ops.result(total), ops.result(tripled), ops.result(grand)], [a, b], "multi")


def test_ir_multi_input_multi_output(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    b = np.array([10, -20, 30], np.int32)
    with new_host() as host:
        state = host.new_state()
        graph = state.load(ir_builders(multi_io_ir(), tmp_path), GraphEncoding.OPENVINO, ExecutionTarget.CPU)
        loaded = state.graph(graph).graph
        assert [s.describe() for s in loaded.inputs] == ["f32[2,3]", "i32[3]"]
        assert [(s.name, s.describe()) for s in loaded.outputs] == [
            ("total", "f32[2,3]"), ("tripled", "i32[3]"), ("grand", "f64[]")]
        total, tripled, grand = run_graph(state, graph, [a, b])
    np.testing.assert_array_equal(total, a + b)
    np.testing.assert_array_equal(tripled, b * 3)
    assert grand.shape == () and grand == pytest.approx(a.sum(dtype=np.float64))


def test_ir_dynamic_shapes(tmp_path: Path) -> None:
    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x")
    model = ov.Model([ops.result(ops.multiply(x, ops.constant(np.float32(2))))], [x], "dynamic")
    with new_host() as host:
        state = host.new_state()
        graph = state.load(ir_builders(model, tmp_path), GraphEncoding.OPENVINO, ExecutionTarget.CPU)
        assert state.graph(graph).graph.inputs[0].describe() == "f32[?,4]"
        context = state.init_execution_context(graph)
        for rows in (1, 3, 2):  # one context, a new size each time
            data = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
            state.set_input(context, 0, Tensor.from_numpy(data))
            state.compute(context)
            np.testing.assert_array_equal(state.get_output(context, 0), data * 2)
        with pytest.raises(WasiNnError, match=r"expects f32\[\?,4\], got f32\[4\]") as caught:
            state.set_input(context, 0, Tensor.from_numpy(np.zeros(4, np.float32)))
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT


ONNX_TYPES = {
    TensorType.F16: TensorProto.FLOAT16,
    TensorType.F32: TensorProto.FLOAT,
    TensorType.F64: TensorProto.DOUBLE,
    TensorType.U8: TensorProto.UINT8,
    TensorType.I8: TensorProto.INT8,
    TensorType.I32: TensorProto.INT32,
    TensorType.I64: TensorProto.INT64,
}


def onnx_bytes(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=9)
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("kind", list(ONNX_TYPES))
def test_onnx_every_dtype(kind: TensorType) -> None:
    element = ONNX_TYPES[kind]
    bias = numpy_helper.from_array(np.array([1, 2, 3, 4], kind.numpy_dtype), "bias")
    graph = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["y"])], "add",
                              [helper.make_tensor_value_info("x", element, [2, 4])],
                              [helper.make_tensor_value_info("y", element, [2, 4])], [bias])
    x = np.arange(8).reshape(2, 4).astype(kind.numpy_dtype)
    (y,) = infer([onnx_bytes(graph)], [x], encoding=GraphEncoding.ONNX)
    assert y.dtype == kind.numpy_dtype
    np.testing.assert_array_equal(y, x + np.array([1, 2, 3, 4], kind.numpy_dtype))


def test_onnx_multi_io_with_a_dynamic_batch() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["relu"]), helper.make_node("Neg", ["b"], ["neg"])], "multi",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("b", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("relu", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("neg", TensorProto.INT64, [2])])
    a = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    b = np.array([7, -8], np.int64)
    relu, neg = infer([onnx_bytes(graph)], [a, b])
    np.testing.assert_array_equal(relu, np.maximum(a, 0))
    np.testing.assert_array_equal(neg, -b)


@pytest.mark.parametrize(("name", "shape", "expected"), [
    ("sum", (1, 5, 5, 1), [[300.0]]),
    ("max", (1, 5, 5, 1), [[24.0]]),
    ("average", (1, 5, 5, 1), [[12.0]]),
    ("mult_dim", (1, 3, 3, 1), [list(range(9))]),
    ("mult_out", (1, 4, 4, 1), [[24, 28, 32, 36], [6, 7, 8, 9]]),
])
def test_wamr_tflite_models(name: str, shape: tuple[int, ...], expected: list[list[float]]) -> None:
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    outputs = infer([(WAMR_MODELS / f"{name}.tflite").read_bytes()], [x], encoding=GraphEncoding.TENSORFLOWLITE)
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got.ravel(), want, rtol=1e-6)


def bird_pixels() -> np.ndarray:
    from PIL import Image

    with Image.open(BIRDS / "bird.jpg") as image:
        rgb = image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    return np.asarray(rgb, np.uint8)[None]


def test_birds_classifier_from_its_own_file() -> None:
    model = BIRDS / "lite-model_aiy_vision_classifier_birds_V1_3.tflite"
    pixels = bird_pixels()
    with new_host() as host:
        # Uncached, a named TFLite model is read from its own file (no temporary copy).
        state, graph = load_named(host, "birds", model, {"cache_dir": None})
        loaded = state.graph(graph).graph
        assert [s.describe() for s in loaded.inputs] == ["u8[1,224,224,3]"]
        assert [s.describe() for s in loaded.outputs] == ["u8[1,965]"]
        (scores,) = run_graph(state, graph, [pixels])
    assert int(np.argmax(scores)) == 166  # Aix galericulata, the mandarin duck in the photo

    from ai_edge_litert.interpreter import Interpreter

    native = Interpreter(model_path=str(model))
    native.allocate_tensors()
    native.set_tensor(native.get_input_details()[0]["index"], pixels)
    native.invoke()
    reference = native.get_tensor(native.get_output_details()[0]["index"])
    assert int(np.argmax(reference)) == 166
    # Quantized: OpenVINO dequantizes and LiteRT runs integer kernels, so scores may differ slightly.
    assert np.abs(scores.astype(int) - reference.astype(int)).max() <= 3


@pytest.mark.parametrize("files", [("digits.xml", "digits.bin"), ("digits.onnx",), ("digits.tflite",)])
def test_digits_equal_to_native_runtimes(files: tuple[str, ...]) -> None:
    images, labels = digits_images()
    with new_host() as host:
        state = host.new_state()
        graph = state.load([(DIGITS_MODELS / f).read_bytes() for f in files], GraphEncoding.AUTODETECT,
                           ExecutionTarget.CPU)
        context = state.init_execution_context(graph)
        ours = []
        for image in images:
            state.set_input(context, 0, Tensor.from_numpy(image))
            state.compute(context)
            ours.append(state.get_output(context, 0).copy())
    probabilities = np.concatenate(ours)
    for name, reference in native_digits(images).items():
        np.testing.assert_allclose(probabilities, reference, atol=1e-5, rtol=0, err_msg=name)
        assert (probabilities.argmax(1) == reference.argmax(1)).all(), name
    assert (probabilities.argmax(1) == labels).sum() == 350  # 97.22%, as demo/models/README.md says


def digits_ir() -> list[bytes]:
    return [(DIGITS_MODELS / "digits.xml").read_bytes(), (DIGITS_MODELS / "digits.bin").read_bytes()]


def test_default_precision_is_f32_and_bf16_is_opt_in() -> None:
    with new_host() as host:
        state, graph = load_named(host, "digits", digits_ir())
        assert compiled_of(state, graph).get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
        state, graph = load_named(host, "digits-bf16", digits_ir(), {"precision": "bf16"})
        precision = compiled_of(state, graph).get_property("INFERENCE_PRECISION_HINT")
    # OpenVINO runs bf16 on AVX-512 CPUs (emulated where avx512_bf16 is missing) and falls back elsewhere.
    wanted = ov.Type.bf16 if hardware.probe().cpu.has("avx512f") else ov.Type.f32
    assert precision == wanted


def test_raw_properties_reach_openvino() -> None:
    with new_host() as host:
        state, graph = load_named(host, "digits", digits_ir(),
                                  {"num_threads": 2, "properties": {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                    "ENABLE_CPU_PINNING": False}})
        compiled = compiled_of(state, graph)
        assert compiled.get_property("INFERENCE_NUM_THREADS") == 2
        assert compiled.get_property("ENABLE_CPU_PINNING") is False
        assert compiled.get_property("NUM_STREAMS") == 2  # THROUGHPUT's own choice: no single-stream default
        assert str(compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"


def test_auto_device_from_the_config() -> None:
    with new_host() as host:
        state, graph = load_named(host, "digits", digits_ir(), {"device": "AUTO"})
        assert state.graph(graph).graph.device == "AUTO (CPU)"
        (y,) = run_graph(state, graph, [np.zeros((1, 64), np.float32)])
    assert y.shape == (1, 10) and y.sum() == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(("config", "words"), [
    ({"colour": "blue"}, "unknown key"),
    ({"properties": {"NO_SUCH_PROPERTY": 1}}, "NO_SUCH_PROPERTY"),
])
def test_bad_config_is_invalid_argument(config: dict[str, object], words: str) -> None:
    with new_host() as host, pytest.raises(WasiNnError, match=words) as caught:
        load_named(host, "digits", digits_ir(), config)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


def test_tensor_errors() -> None:
    with new_host() as host:
        state = host.new_state()
        graph = state.load(digits_ir(), GraphEncoding.OPENVINO, ExecutionTarget.CPU)
        context = state.init_execution_context(graph)

        def refused(call, *args, match: str) -> None:
            with pytest.raises(WasiNnError, match=match) as caught:
                call(*args)
            assert caught.value.code is ErrorCode.INVALID_ARGUMENT

        refused(state.compute, context, match=r"input\(s\) \[0\] not set")
        refused(state.set_input, context, 0, Tensor.from_numpy(np.zeros((1, 64), np.float64)),
                match=r"input 0 \(pixels\) expects f32\[1,64\], got f64\[1,64\]")
        refused(state.set_input, context, 0, Tensor.from_numpy(np.zeros((64,), np.float32)),
                match=r"expects f32\[1,64\], got f32\[64\]")
        refused(state.set_input, context, 0, Tensor.from_numpy(np.zeros((2, 32), np.float32)),
                match=r"expects f32\[1,64\], got f32\[2,32\]")
        refused(state.get_output, context, 0, match="compute has not run")
        state.set_input(context, 0, Tensor.from_numpy(np.zeros((1, 64), np.float32)))
        state.compute(context)
        refused(state.get_output, context, 1, match="out of range")
        assert state.get_output(context, 0).shape == (1, 10)


@pytest.mark.parametrize(("builders", "encoding", "code", "words"), [
    (lambda ir: [b"<net name='x' version='11'><layers><layer id='0'", ir[1]], GraphEncoding.OPENVINO,
     ErrorCode.INVALID_ARGUMENT, "not a valid openvino-ir model"),
    (lambda ir: [ir[0], ir[1][:1000]], GraphEncoding.OPENVINO, ErrorCode.INVALID_ARGUMENT, "Incorrect weights"),
    (lambda ir: [ir[0], b""], GraphEncoding.AUTODETECT, ErrorCode.INVALID_ARGUMENT, "Incorrect weights"),
    (lambda ir: [ir[0], bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8))], GraphEncoding.OPENVINO,
     ErrorCode.INVALID_ARGUMENT, "Incorrect weights"),
    (lambda ir: [bytes(np.random.default_rng(1).integers(0, 256, 900, np.uint8)), ir[1]], GraphEncoding.OPENVINO,
     ErrorCode.INVALID_ARGUMENT, "not a valid openvino-ir model"),  # the core catches this one
    (lambda ir: [b"<?xml version='1.0'?><net name='empty' version='11'></net>", b""], GraphEncoding.OPENVINO,
     ErrorCode.INVALID_ARGUMENT, "no outputs"),
])
def test_bad_ir_models(builders, encoding: GraphEncoding, code: ErrorCode, words: str) -> None:
    with new_host() as host:
        state = host.new_state()
        with pytest.raises(WasiNnError, match=words) as caught:
            state.load(builders(digits_ir()), encoding, ExecutionTarget.CPU)
    assert caught.value.code is code


def test_bad_onnx_and_tflite_models() -> None:
    onnx_model = onnx.load_from_string((DIGITS_MODELS / "digits.onnx").read_bytes())
    onnx_model.graph.node[0].op_type = "NoSuchOp"
    tflite = (DIGITS_MODELS / "digits.tflite").read_bytes()
    cases = [
        ([onnx_model.SerializeToString()], ErrorCode.UNSUPPORTED_OPERATION, "NoSuchOp"),
        ([tflite[:8] + bytes(np.random.default_rng(2).integers(0, 256, 4000, np.uint8))],
         ErrorCode.INVALID_ARGUMENT, "corrupted or malformed"),
    ]
    with new_host() as host:
        state = host.new_state()
        for builders, code, words in cases:
            with pytest.raises(WasiNnError, match=words) as caught:
                state.load(builders, GraphEncoding.AUTODETECT, ExecutionTarget.CPU)
            assert caught.value.code is code


def test_contexts_run_concurrently() -> None:
    images, _ = digits_images()
    with new_host() as host:
        state, graph = load_named(host, "digits", digits_ir())
        (expected,) = run_graph(state, graph, [images[0]])
        expected_all = [run_graph(state, graph, [image])[0] for image in images[:40]]
        failures: list[BaseException] = []

        def worker(offset: int) -> None:
            mine = host.new_state()
            handle = mine.load_by_name("digits")
            context = mine.init_execution_context(handle)
            try:
                for step in range(120):
                    k = (offset + step) % 40
                    mine.set_input(context, 0, Tensor.from_numpy(images[k]))
                    mine.compute(context)
                    np.testing.assert_array_equal(mine.get_output(context, 0), expected_all[k])
            except BaseException as exc:  # reported below: an assert in a thread would be lost
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(i * 7,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures
    assert expected.shape == (1, 10)


def test_tflite_from_bytes_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    (y,) = infer([(WAMR_MODELS / "sum.tflite").read_bytes()], [x])
    assert y.ravel().tolist() == [300.0]
    assert list(tmp_path.iterdir()) == []


def test_onnx_external_data_from_a_named_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    weights = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(1, 4096), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "external",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4096])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=9)
    path = tmp_path / "external.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="external.data", size_threshold=0)
    assert (tmp_path / "external.data").stat().st_size == 4096 * 4
    x = np.ones((1, 4096), np.float32)
    with new_host() as host:
        for name, config in (("uncached", {"cache_dir": None}), ("cached", {})):
            state, graph_handle = load_named(host, name, path, config)
            (y,) = run_graph(state, graph_handle, [x])
            np.testing.assert_array_equal(y, x + np.arange(4096, dtype=np.float32))
    # The cache's content-named copy has no data file beside it: compiled again without the cache.
    assert "compiled without it" in caplog.text


def test_compute_uses_the_bindings_own_infer_and_sees_each_new_input(tmp_path: Path) -> None:
    # compute skips openvino's Python wrapper (input dispatch, OVDict): check that it is really the
    # binding's method that runs, and that every compute infers on the input set just before it.
    from openvino._pyopenvino import InferRequest as BindingRequest

    from wasinn_backend_openvino import runtime

    # It wraps the context's own infer: the backend's state, so the guest's model runs in this process.
    with new_host(limits=Limits(guest_models="in-process")) as host:
        state = host.new_state()
        graph = state.load(ir_builders(affine_ir(TensorType.F32, [1, 4]), tmp_path), GraphEncoding.AUTODETECT,
                           ExecutionTarget.CPU)
        context = state.init_execution_context(graph)
        run = state.context(context).context.state
        calls: list[object] = []
        real = run.infer
        run.infer = lambda: calls.append(real()) or calls[-1]
        assert real.__closure__ is not None and any(
            cell.cell_contents is BindingRequest.infer for cell in real.__closure__)
        for step in range(3):
            x = np.full((1, 4), step, np.float32)
            state.set_input(context, 0, Tensor.from_numpy(x))
            state.compute(context)
            np.testing.assert_array_equal(state.get_output(context, 0), x * 2 + 1)
        assert len(calls) == 3
    # Where the binding is laid out otherwise, the public wrapper runs.
    seen: list[bool] = []

    class Elsewhere:
        def infer(self, share_outputs: bool) -> None:
            seen.append(share_outputs)

    runtime.synchronous_infer(Elsewhere())()
    assert seen == [True]
