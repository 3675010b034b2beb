"""Write the tiny TFLite test models in this folder, with the flatbuffers schema LiteRT ships.

No TensorFlow needed: ``ai_edge_litert.schema_py_generated`` has the object API (ModelT, TensorT,
...), and ``flatbuffers`` serialises it. The outputs are committed (a few hundred bytes each), so
the tests also run where only tflite-runtime is installed (it ships no schema). Deterministic:

    python tests/data/make_models.py           # rewrite the .tflite files
    python tests/data/make_models.py --check   # exit 1 if a committed file differs

Models (inputs -> outputs):

* ``affine.tflite``: x f32[-1,4] -> x*2+1 (MUL, ADD); dynamic batch.
* ``dyn_add.tflite``: a f32[-1,3], b f32[-1,3] -> a+b; two dynamic inputs.
* ``types.tflite``: one input per wasi-nn type f16, f32, f64, u8, i32, i64 (each [2,3]) -> the same
  values reshaped to [3,2] (RESHAPE is type-agnostic), outputs in the same order.
* ``quant.tflite``: q u8[1,4] (scale 0.5, zero point 10) -> f32 (q-10)*0.5 (DEQUANTIZE), and
  s i8[1,4] (scale 0.25, zero point -3) -> f32 (s+3)*0.25.
* ``custom_op.tflite``: x f32[1,4] -> custom op ``WasinnNoSuchOp`` (no kernel anywhere).
* ``future_op.tflite``: x f32[1,4] -> builtin operator code 4000 (unknown to every runtime).
* ``no_split_options.tflite`` (SPLIT without its options), ``one_input_batch_matmul.tflite``
  (BATCH_MATMUL with one input of two): both crash LiteRT 2.3; the verifier refuses them.
* ``crash_depthwise_no_bias.tflite``: a uint8 DEPTHWISE_CONV_2D whose optional bias is left out.
  Valid by the schema, it passes the verifier and segfaults both LiteRT 2.3 and tflite-runtime 2.14
  in ``invoke``: the reason for the probe.
* ``add_one_f32/_i32/_i64.tflite``: x [2,3] -> x+1 (ADD), the models wasinn's conformance kit runs.
* ``degenerate_*.tflite``: well-formed flatbuffers whose graph computes nothing sensible (no
  operators, no outputs, an output or an operator input that nothing writes, operators out of
  order, no subgraphs, subgraphs that call each other in a loop, weights in an external buffer).
  ``degenerate_call_once_cycle`` segfaults LiteRT 2.3 (unbounded recursion). The verifier refuses each; the first one
  (``degenerate_no_operators``) used to load and then fail in ``get_output`` with a ValueError.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as S

HERE = Path(__file__).resolve().parent


class ModelBuilder:
    """One subgraph, built tensor by tensor."""

    def __init__(self) -> None:
        self.model = S.ModelT()
        self.model.version = 3
        self.model.description = "wasinn-backend-tflite test model"
        self.model.buffers = [S.BufferT()]  # buffer 0 is the empty sentinel
        self.model.operatorCodes = []
        self.graph = S.SubGraphT()
        self.graph.tensors, self.graph.operators, self.graph.inputs, self.graph.outputs = [], [], [], []
        self.model.subgraphs = [self.graph]

    def tensor(self, name: str, kind: int, shape: Sequence[int], *, data: np.ndarray | None = None,
               scale: float | None = None, zero_point: int = 0) -> int:
        t = S.TensorT()
        t.name = name
        t.type = kind
        t.shape = [1 if d < 0 else d for d in shape]
        if any(d < 0 for d in shape):
            t.shapeSignature = list(shape)
        t.buffer = 0
        if data is not None:
            buffer = S.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.model.buffers.append(buffer)
            t.buffer = len(self.model.buffers) - 1
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale, q.zeroPoint = [scale], [zero_point]
            t.quantization = q
        self.graph.tensors.append(t)
        return len(self.graph.tensors) - 1

    def opcode(self, builtin: int, custom: str | None = None) -> int:
        code = S.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = 1
        code.customCode = custom
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def op(self, opcode: int, inputs: Sequence[int], outputs: Sequence[int], options_type: int = 0,
           options: object = None) -> None:
        op = S.OperatorT()
        op.opcodeIndex = opcode
        op.inputs, op.outputs = list(inputs), list(outputs)
        op.builtinOptionsType = options_type
        op.builtinOptions = options
        self.graph.operators.append(op)

    def io(self, inputs: Sequence[int], outputs: Sequence[int]) -> None:
        self.graph.inputs, self.graph.outputs = list(inputs), list(outputs)

    def bytes(self) -> bytes:
        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


F32 = S.TensorType.FLOAT32


def affine() -> bytes:
    m = ModelBuilder()
    x = m.tensor("x", F32, [-1, 4])
    two = m.tensor("two", F32, [1], data=np.array([2], np.float32))
    one = m.tensor("one", F32, [1], data=np.array([1], np.float32))
    doubled = m.tensor("doubled", F32, [-1, 4])
    y = m.tensor("y", F32, [-1, 4])
    mul_opts, add_opts = S.MulOptionsT(), S.AddOptionsT()
    m.op(m.opcode(S.BuiltinOperator.MUL), [x, two], [doubled], S.BuiltinOptions.MulOptions, mul_opts)
    m.op(m.opcode(S.BuiltinOperator.ADD), [doubled, one], [y], S.BuiltinOptions.AddOptions, add_opts)
    m.io([x], [y])
    return m.bytes()


def dyn_add() -> bytes:
    m = ModelBuilder()
    a = m.tensor("a", F32, [-1, 3])
    b = m.tensor("b", F32, [-1, 3])
    y = m.tensor("sum", F32, [-1, 3])
    m.op(m.opcode(S.BuiltinOperator.ADD), [a, b], [y], S.BuiltinOptions.AddOptions, S.AddOptionsT())
    m.io([a, b], [y])
    return m.bytes()


def add_one(kind: int, dtype: type) -> bytes:
    m = ModelBuilder()
    x = m.tensor("x", kind, [2, 3])
    one = m.tensor("one", kind, [1], data=np.array([1], dtype))
    y = m.tensor("y", kind, [2, 3])
    m.op(m.opcode(S.BuiltinOperator.ADD), [x, one], [y], S.BuiltinOptions.AddOptions, S.AddOptionsT())
    m.io([x], [y])
    return m.bytes()


# The types a witx guest can name (wasi-nn has no i8 there: quant.tflite covers it for embedders).
TYPES = [("f16", S.TensorType.FLOAT16), ("f32", S.TensorType.FLOAT32), ("f64", S.TensorType.FLOAT64),
         ("u8", S.TensorType.UINT8), ("i32", S.TensorType.INT32), ("i64", S.TensorType.INT64)]


def types() -> bytes:
    m = ModelBuilder()
    reshape = m.opcode(S.BuiltinOperator.RESHAPE)
    shape = m.tensor("new_shape", S.TensorType.INT32, [2], data=np.array([3, 2], np.int32))
    inputs, outputs = [], []
    for name, kind in TYPES:
        x = m.tensor(f"in_{name}", kind, [2, 3])
        y = m.tensor(f"out_{name}", kind, [3, 2])
        m.op(reshape, [x, shape], [y])
        inputs.append(x)
        outputs.append(y)
    m.io(inputs, outputs)
    return m.bytes()


def quant() -> bytes:
    m = ModelBuilder()
    dequantize = m.opcode(S.BuiltinOperator.DEQUANTIZE)
    q = m.tensor("q", S.TensorType.UINT8, [1, 4], scale=0.5, zero_point=10)
    s = m.tensor("s", S.TensorType.INT8, [1, 4], scale=0.25, zero_point=-3)
    qf = m.tensor("q_real", F32, [1, 4])
    sf = m.tensor("s_real", F32, [1, 4])
    m.op(dequantize, [q], [qf])
    m.op(dequantize, [s], [sf])
    m.io([q, s], [qf, sf])
    return m.bytes()


def custom_op() -> bytes:
    m = ModelBuilder()
    x = m.tensor("x", F32, [1, 4])
    y = m.tensor("y", F32, [1, 4])
    m.op(m.opcode(S.BuiltinOperator.CUSTOM, custom="WasinnNoSuchOp"), [x], [y])
    m.io([x], [y])
    return m.bytes()


def future_op() -> bytes:
    m = ModelBuilder()
    x = m.tensor("x", F32, [1, 4])
    y = m.tensor("y", F32, [1, 4])
    m.op(m.opcode(4000), [x], [y])
    m.io([x], [y])
    return m.bytes()


def no_split_options() -> bytes:
    # SPLIT without its SplitOptions: LiteRT 2.3 crashes on it; the verifier refuses it.
    m = ModelBuilder()
    x = m.tensor("x", F32, [1, 5, 5, 1])
    w = m.tensor("w", F32, [1, 5, 5, 1], data=np.ones((1, 5, 5, 1), np.float32))
    y = m.tensor("y", F32, [1, 1, 1, 1])
    m.op(m.opcode(S.BuiltinOperator.SPLIT), [x, w], [y])
    m.io([x], [y])
    return m.bytes()


def one_input_batch_matmul() -> bytes:
    # BATCH_MATMUL given one input instead of two: crashes LiteRT 2.3; the verifier refuses it.
    m = ModelBuilder()
    x = m.tensor("x", F32, [1, 5, 5, 1])
    y = m.tensor("y", F32, [1, 1, 1, 1])
    m.op(m.opcode(S.BuiltinOperator.BATCH_MATMUL), [x], [y])
    m.io([x], [y])
    return m.bytes()


def crash_depthwise_no_bias() -> bytes:
    """A uint8-quantized DEPTHWISE_CONV_2D without its (optional) bias: valid by the schema, yet
    LiteRT 2.3 and tflite-runtime 2.14 segfault in invoke. (A bias of -1 is refused politely.)"""
    m = ModelBuilder()
    u8 = S.TensorType.UINT8
    x = m.tensor("x", u8, [1, 4, 4, 2], scale=0.5, zero_point=128)
    w = m.tensor("w", u8, [1, 3, 3, 2], data=np.full((1, 3, 3, 2), 130, np.uint8), scale=0.25, zero_point=128)
    y = m.tensor("y", u8, [1, 4, 4, 2], scale=0.5, zero_point=128)
    options = S.DepthwiseConv2DOptionsT()
    options.padding, options.strideW, options.strideH, options.depthMultiplier = S.Padding.SAME, 1, 1, 1
    options.dilationWFactor = options.dilationHFactor = 1
    m.op(m.opcode(S.BuiltinOperator.DEPTHWISE_CONV_2D), [x, w], [y], S.BuiltinOptions.DepthwiseConv2DOptions,
         options)
    m.io([x], [y])
    return m.bytes()


def _relu_model(m: ModelBuilder) -> tuple[int, int, int]:
    """x -> relu -> y, plus a spare tensor z (all f32[1,4]); returns (x, y, z)."""
    x, y, z = m.tensor("x", F32, [1, 4]), m.tensor("y", F32, [1, 4]), m.tensor("z", F32, [1, 4])
    return x, y, z


def _call_once(opcode: int, subgraph: int) -> S.OperatorT:
    op = S.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [], []
    op.builtinOptionsType, op.builtinOptions = S.BuiltinOptions.CallOnceOptions, S.CallOnceOptionsT()
    op.builtinOptions.initSubgraphIndex = subgraph
    return op


def degenerate(kind: str) -> bytes:
    m = ModelBuilder()
    x, y, z = _relu_model(m)
    relu = m.opcode(S.BuiltinOperator.RELU)
    if kind == "no_operators":  # the output is never written
        m.io([x], [y])
    elif kind == "no_operators_identity":  # the input is the output
        m.io([x], [x])
    elif kind == "no_operators_constant":  # a constant, and nothing to run
        c = m.tensor("c", F32, [1, 4], data=np.ones((1, 4), np.float32))
        m.io([], [c])
    elif kind == "no_outputs":
        m.op(relu, [x], [y])
        m.io([x], [])
    elif kind == "unwritten_output":  # an operator writes z; the output y is never written
        m.op(relu, [x], [z])
        m.io([x], [y])
    elif kind == "uninitialized_read":  # z is read, and nothing writes it
        m.op(m.opcode(S.BuiltinOperator.ADD), [x, z], [y], S.BuiltinOptions.AddOptions, S.AddOptionsT())
        m.io([x], [y])
    elif kind == "read_before_write":  # the operator reading z runs before the one writing it
        m.op(relu, [z], [y])
        m.op(relu, [x], [z])
        m.io([x], [y])
    elif kind == "unwritten_subgraph_output":  # subgraph 0 is fine; subgraph 1's output is never written
        m.op(relu, [x], [y])
        m.io([x], [y])
        other = S.SubGraphT()
        a, b = S.TensorT(), S.TensorT()
        a.name, b.name, a.type, b.type, a.shape, b.shape = "a", "b", F32, F32, [1, 4], [1, 4]
        other.tensors, other.operators, other.inputs, other.outputs = [a, b], [], [0], [1]
        m.model.subgraphs.append(other)
    elif kind == "no_subgraphs":
        m.op(relu, [x], [y])
        m.io([x], [y])
        m.model.subgraphs = []
    elif kind == "call_once_cycle":  # subgraph 0 calls 1, which calls 2, which calls 1: LiteRT 2.3 SIGSEGV
        call = m.opcode(S.BuiltinOperator.CALL_ONCE)
        m.graph.operators.append(_call_once(call, 1))
        m.op(relu, [x], [y])
        m.io([x], [y])
        for callee in (2, 1):
            other = S.SubGraphT()
            other.tensors, other.inputs, other.outputs, other.operators = [], [], [], [_call_once(call, callee)]
            m.model.subgraphs.append(other)
    elif kind == "while_calls_itself":  # WHILE whose condition and body are subgraph 0 itself
        options = S.WhileOptionsT()
        options.condSubgraphIndex = options.bodySubgraphIndex = 0
        m.op(m.opcode(S.BuiltinOperator.WHILE), [x], [y], S.BuiltinOptions.WhileOptions, options)
        m.io([x], [y])
    elif kind == "external_buffer":  # the weights would be in a file beside the model
        w = m.tensor("w", F32, [1, 4])
        m.graph.tensors[w].externalBuffer = 1
        group, external = S.ExternalBufferGroupT(), S.ExternalBufferT()
        group.name = "/etc/hostname"
        external.id, external.group, external.offset, external.length = 1, 0, 0, 16
        m.model.externalBufferGroups, m.model.externalBuffers = [group], [external]
        m.op(m.opcode(S.BuiltinOperator.ADD), [x, w], [y], S.BuiltinOptions.AddOptions, S.AddOptionsT())
        m.io([x], [y])
    else:
        raise ValueError(kind)
    return m.bytes()


DEGENERATE = ("no_operators", "no_operators_identity", "no_operators_constant", "no_outputs", "unwritten_output",
              "uninitialized_read", "read_before_write", "unwritten_subgraph_output", "no_subgraphs",
              "call_once_cycle", "while_calls_itself", "external_buffer")

MODELS = {"affine": affine, "dyn_add": dyn_add, "types": types, "quant": quant, "custom_op": custom_op,
          "future_op": future_op, "no_split_options": no_split_options,
          "one_input_batch_matmul": one_input_batch_matmul, "crash_depthwise_no_bias": crash_depthwise_no_bias,
          "add_one_f32": lambda: add_one(S.TensorType.FLOAT32, np.float32),
          "add_one_i32": lambda: add_one(S.TensorType.INT32, np.int32),
          "add_one_i64": lambda: add_one(S.TensorType.INT64, np.int64),
          **{f"degenerate_{kind}": lambda kind=kind: degenerate(kind) for kind in DEGENERATE}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the tiny TFLite test models")
    parser.add_argument("--check", action="store_true", help="fail if a committed model differs")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    stale = []
    for name, make in MODELS.items():
        data = make()
        path = args.out / f"{name}.tflite"
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(path.name)
        else:
            path.write_bytes(data)
            print(f"{path.name}: {len(data)} bytes")
    if stale:
        print(f"out of date: {', '.join(stale)} (run tests/data/make_models.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
