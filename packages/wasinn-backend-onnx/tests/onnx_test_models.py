"""Paths and hand-built ONNX models for the onnx backend's tests (a plain module, uniquely named:
test folders of several packages share one ``sys.path`` when run together)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[3]
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"
DIGITS_GUEST = REPO / "guests" / "digits" / "digits.wasm"
DIGITS_MODEL = REPO / "demo" / "models" / "digits.onnx"
DIGITS_IMAGES = REPO / "demo" / "images"
#: Real architectures with expected outputs, shipped in the onnx wheel.
LIGHT = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
                "squeezenet", "vgg19", "zfnet512")

#: wasi-nn (witx) numbers used on nn-run's command line.
ENC_ONNX, ENC_TFLITE, ENC_AUTODETECT = "1", "4", "5"
CPU, GPU, TPU = "0", "1", "2"
WITX_TYPE = {"f16": "0", "f32": "1", "f64": "2", "u8": "3", "i32": "4", "i64": "5"}
#: Guest exit status = 64 + errno.
EXIT = {"invalid_argument": 65, "invalid_encoding": 66, "runtime_error": 69, "unsupported_operation": 70,
        "too_large": 71, "not_found": 72}

ELEM = {"f16": TensorProto.FLOAT16, "f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "u8": TensorProto.UINT8,
        "i8": TensorProto.INT8, "i32": TensorProto.INT32, "i64": TensorProto.INT64, "bool": TensorProto.BOOL,
        "string": TensorProto.STRING}
NUMPY = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "u8": np.uint8, "i8": np.int8, "i32": np.int32,
         "i64": np.int64, "bool": np.bool_}
#: ONNX Runtime's CPU Add has no 8-bit or boolean kernels: those types go through Identity / Not.
ADD_TYPES = ("f16", "f32", "f64", "i32", "i64")


def value(name: str, dtype: str, shape: Sequence[int | str | None]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, ELEM[dtype], list(shape))


def model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
          outputs: Sequence[onnx.ValueInfoProto], opset: int = 13, check: bool = True) -> bytes:
    """A model as the tests need it: opset 13, IR version 9, checked unless ``check`` is False."""
    proto = helper.make_model(helper.make_graph(list(nodes), "test", list(inputs), list(outputs)),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    if check:
        onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def unary_model(dtype: str, shape: Sequence[int | str | None] = (1, 4)) -> bytes:
    """y = x + x for types with an Add kernel, y = x (Identity) for u8/i8, y = not x for bool."""
    if dtype in ADD_TYPES:
        node = helper.make_node("Add", ["x", "x"], ["y"])
    elif dtype == "bool":
        node = helper.make_node("Not", ["x"], ["y"])
    else:
        node = helper.make_node("Identity", ["x"], ["y"])
    return model([node], [value("x", dtype, shape)], [value("y", dtype, shape)])


def expected_unary(dtype: str, x: np.ndarray) -> np.ndarray:
    if dtype in ADD_TYPES:
        return np.asarray(x + x)
    if dtype == "bool":
        return np.asarray(np.logical_not(x))
    return x


def affine_model() -> bytes:
    """f32[1,4]: y = 2x + 1 (the same numbers as the core's fake backend)."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [helper.make_node("Constant", [], ["c2"], value=two), helper.make_node("Constant", [], ["c1"], value=one),
             helper.make_node("Mul", ["x", "c2"], ["t"]), helper.make_node("Add", ["t", "c1"], ["y"])]
    return model(nodes, [value("x", "f32", [1, 4])], [value("y", "f32", [1, 4])])


def multi_io_model() -> bytes:
    """Inputs declared as (zeta f32[2,3], alpha i64[3]) — not alphabetical, so index order is
    provably the declared order — and outputs (double f32[2,3], neg i64[3], wide f64[2,3])."""
    nodes = [helper.make_node("Add", ["zeta", "zeta"], ["double"]),
             helper.make_node("Neg", ["alpha"], ["neg"]),
             helper.make_node("Cast", ["zeta"], ["wide"], to=TensorProto.DOUBLE)]
    return model(nodes, [value("zeta", "f32", [2, 3]), value("alpha", "i64", [3])],
                 [value("double", "f32", [2, 3]), value("neg", "i64", [3]), value("wide", "f64", [2, 3])])


def light_input(path: Path) -> np.ndarray:
    """The input onnx's test runner feeds the light models: arange / n, as float32."""
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    data = next(i for i in graph.input if i.name not in initializers)
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in data.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def light_expected(name: str) -> np.ndarray:
    tensor = onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb"))
    return np.asarray(onnx.numpy_helper.to_array(tensor))


def randomized_light(name: str, seed: int = 0) -> bytes:
    """A light model with random weights in place of its ConstantOfShape fills.

    The shipped light models fill every weight with one constant, so all their logits are equal and
    the expected output (a uniform softmax) does not depend on the input at all. With random
    weights the output does, which makes "guest output == native ONNX Runtime output" a real
    check of the input and output paths on a real architecture.
    """
    proto = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    graph = proto.graph
    shapes = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("__SHAPE")}
    rng = np.random.default_rng(seed)
    kept = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            shape = tuple(int(d) for d in shapes[node.input[0]])
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
            if fan_in:  # weights: variance-preserving scale, so deep stacks neither vanish nor explode
                data = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            else:  # biases, batch-norm scales and shifts
                data = rng.uniform(0.5, 1.0, shape) if node.output[0].endswith(("_s_0", "_scale_0", "_riv_0",
                                                                                  "_var_0")) else \
                    rng.normal(0.0, 0.01, shape)
            graph.initializer.append(onnx.numpy_helper.from_array(data.astype(np.float32), node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    data_bytes: bytes = proto.SerializeToString()
    return data_bytes
