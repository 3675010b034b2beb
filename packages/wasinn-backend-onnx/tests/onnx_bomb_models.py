"""Hostile ONNX models a guest can hand to ``load``, and a worker that runs one in a child process.

Each model is a few hundred bytes that makes a runtime allocate about a gigabyte (or build a huge
graph, or hold strings outside any allocator the host can cap) when it loads or runs. The worker
(run as ``python onnx_bomb_models.py``) loads one through a real guest and reports every step's
errno and the process's peak RSS before and after, so that a test can bound what the bomb cost::

    python onnx_bomb_models.py VARIANT [VARIANT ...] [--backend onnx|openvino] [--limits JSON]

For each variant, in a store of its own, it prints ``BEGIN <variant>`` and then one ``RESULT <json>``
line (``DONE`` at the end). ``--backend`` forces a backend; without it the host ranks the installed
backends as it would for any guest. First the worker loads and runs a good model (so that the
runtimes' libraries and pools are in the baseline, ``hwm_start``), and after each bomb the same good
model again, in the bomb's store and in a new one: the host must still serve.

(A plain module, uniquely named: test folders of several packages share one ``sys.path``.)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

#: What the bombs ask for: 2^28 four-byte elements (1 GiB), or 2^27 eight-byte ones.
ELEMENTS = {"f32": 1 << 28, "f64": 1 << 27, "i64": 1 << 27}
ELEM = {"f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "i64": TensorProto.INT64}
NUMPY = {"f32": np.float32, "f64": np.float64, "i64": np.int64}
MiB = 1 << 20
#: The limits the tests run guests under: a 16 MiB tensor, 128 MiB of runtime memory per context.
TEST_LIMITS = {"max_tensor_bytes": 16 * MiB, "max_runtime_bytes_per_context": 128 * MiB,
               "max_runtime_bytes_per_store": 512 * MiB}


@dataclass(frozen=True)
class Bomb:
    """A hostile model and the inputs a guest feeds it (``None``: the model has no inputs)."""

    name: str
    model: bytes
    inputs: Sequence[np.ndarray] = field(default_factory=tuple)


def first_failure(result: dict[str, object]) -> tuple[str, int]:
    """The first step of a worker's RESULT that failed, and its errno (("none", 0) if every step succeeded)."""
    if result["load"]:
        return "load", int(result["load"])  # type: ignore[call-overload]
    for steps in result.get("steps", []):  # type: ignore[attr-defined]
        for step, errno in steps.items():
            if errno:
                return step, int(errno)
    return "none", 0


def _model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
           outputs: Sequence[onnx.ValueInfoProto], initializers: Sequence[onnx.TensorProto] = (),
           opset: int = 13, domains: dict[str, int] | None = None, **graph: object) -> bytes:
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    proto = helper.make_model(helper.make_graph(list(nodes), "bomb", list(inputs), list(outputs),
                                                initializer=list(initializers), **graph),  # type: ignore[arg-type]
                              opset_imports=opsets, ir_version=8)
    data: bytes = proto.SerializeToString()
    return data


def _value(name: str, elem: int, shape: Sequence[int | str | None] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def _i64(name: str, values: Sequence[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))


def _reduce(source: str, dtype: str) -> tuple[list[onnx.NodeProto], list[onnx.ValueInfoProto]]:
    """``y = max(source)``: a one-element output, so the bomb is the intermediate, not the output."""
    return ([helper.make_node("ReduceMax", [source], ["y"], keepdims=0)], [_value("y", ELEM[dtype], [])])


def constant_of_shape_initializer(dtype: str) -> Bomb:
    """ConstantOfShape with its shape in an initializer (ONNX Runtime folds it at load)."""
    fill = helper.make_tensor("fill", ELEM[dtype], [1], [1])
    nodes, outputs = _reduce("big", dtype)
    return Bomb(f"constant_of_shape_initializer_{dtype}",
                _model([helper.make_node("ConstantOfShape", ["shape"], ["big"], value=fill), *nodes], [], outputs,
                       [_i64("shape", [ELEMENTS[dtype]])]))


def constant_of_shape_output(dtype: str) -> Bomb:
    """The 104-byte model of the report: ConstantOfShape straight to the output."""
    fill = helper.make_tensor("fill", ELEM[dtype], [1], [1])
    return Bomb(f"constant_of_shape_output_{dtype}",
                _model([helper.make_node("ConstantOfShape", ["shape"], ["y"], value=fill)], [],
                       [_value("y", ELEM[dtype], None)], [_i64("shape", [ELEMENTS[dtype]])]))


def constant_of_shape_input(dtype: str) -> Bomb:
    """ConstantOfShape whose shape the guest sends at compute: no load-time pass can see it."""
    fill = helper.make_tensor("fill", ELEM[dtype], [1], [1])
    nodes, outputs = _reduce("big", dtype)
    return Bomb(f"constant_of_shape_input_{dtype}",
                _model([helper.make_node("ConstantOfShape", ["shape"], ["big"], value=fill), *nodes],
                       [_value("shape", TensorProto.INT64, [1])], outputs),
                [np.array([ELEMENTS[dtype]], np.int64)])


def expand(dtype: str) -> Bomb:
    """Expand of a one-element guest input to a shape in an initializer (the 90-byte model)."""
    nodes, outputs = _reduce("big", dtype)
    return Bomb(f"expand_{dtype}",
                _model([helper.make_node("Expand", ["x", "shape"], ["big"]), *nodes], [_value("x", ELEM[dtype], [1])],
                       outputs, [_i64("shape", [ELEMENTS[dtype]])]),
                [np.ones([1], NUMPY[dtype])])


def tile() -> Bomb:
    nodes, outputs = _reduce("big", "f32")
    return Bomb("tile", _model([helper.make_node("Tile", ["x", "repeats"], ["big"]), *nodes],
                               [_value("x", TensorProto.FLOAT, [1])], outputs, [_i64("repeats", [ELEMENTS["f32"]])]),
                [np.ones([1], np.float32)])


def range_() -> Bomb:
    nodes, outputs = _reduce("big", "i64")
    scalars = [helper.make_tensor(n, TensorProto.INT64, [], [v]) for n, v in
               (("start", 0), ("limit", ELEMENTS["i64"]), ("delta", 1))]
    return Bomb("range", _model([helper.make_node("Range", ["start", "limit", "delta"], ["big"]), *nodes], [],
                                outputs, scalars))


def resize() -> Bomb:
    """Resize of a 1x1 image by scales 16384 x 16384."""
    nodes, outputs = _reduce("big", "f32")
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 16384.0, 16384.0])
    roi = helper.make_tensor("roi", TensorProto.FLOAT, [0], [])
    return Bomb("resize", _model([helper.make_node("Resize", ["x", "roi", "scales"], ["big"], mode="nearest"), *nodes],
                                 [_value("x", TensorProto.FLOAT, [1, 1, 1, 1])], outputs, [roi, scales]),
                [np.ones([1, 1, 1, 1], np.float32)])


def upsample() -> Bomb:
    """Upsample (opset 9) with its scales in an initializer."""
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 16384.0, 16384.0])
    nodes = [helper.make_node("Upsample", ["x", "scales"], ["big"], mode="nearest"),
             helper.make_node("ReduceMax", ["big"], ["y"], keepdims=0)]
    return Bomb("upsample", _model(nodes, [_value("x", TensorProto.FLOAT, [1, 1, 1, 1])],
                                   [_value("y", TensorProto.FLOAT, [])], [scales], opset=9),
                [np.ones([1, 1, 1, 1], np.float32)])


def reshape_broadcast(static: bool) -> Bomb:
    """Two 64 KiB guest inputs, [16384, 1] + [1, 16384], broadcast to a 1 GiB sum, then reshaped.

    ``static``: the model declares the input shapes; else they are dynamic, and only the shapes the
    guest sends at compute say how large the sum is.
    """
    side = 1 << 14
    a_shape: list[int | str] = [side, 1] if static else ["n", 1]
    b_shape: list[int | str] = [1, side] if static else [1, "m"]
    nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Reshape", ["sum", "flat"], ["big"]),
             helper.make_node("ReduceMax", ["big"], ["y"], keepdims=0)]
    return Bomb(f"reshape_broadcast_{'static' if static else 'dynamic'}",
                _model(nodes, [_value("a", TensorProto.FLOAT, a_shape), _value("b", TensorProto.FLOAT, b_shape)],
                       [_value("y", TensorProto.FLOAT, [])], [_i64("flat", [-1])]),
                [np.ones([side, 1], np.float32), np.ones([1, side], np.float32)])


def concat_loop() -> Bomb:
    """A Loop that doubles a tensor 18 times by concatenating it with itself (4 KiB -> 1 GiB).

    (A longer loop is no more hostile to a fixed host; to an unfixed one it is the whole machine.)"""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Concat", ["x_in", "x_in"], ["x_out"], axis=0)],
        "double", [_value("i", TensorProto.INT64, []), _value("cond_in", TensorProto.BOOL, []),
                   _value("x_in", TensorProto.FLOAT, None)],
        [_value("cond_out", TensorProto.BOOL, []), _value("x_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Loop", ["trips", "cond", "x"], ["big"], body=body),
             helper.make_node("ReduceMax", ["big"], ["y"], keepdims=0)]
    init = [helper.make_tensor("trips", TensorProto.INT64, [], [18]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [1])]
    return Bomb("concat_loop", _model(nodes, [_value("x", TensorProto.FLOAT, [1024])],
                                      [_value("y", TensorProto.FLOAT, [])], init), [np.ones([1024], np.float32)])


def sparse_initializer() -> Bomb:
    """A sparse initializer of one value in a 2^28-element dense shape: runtimes densify it at load."""
    sparse = helper.make_sparse_tensor(helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0]), _i64("w_idx", [0]),
                                       [ELEMENTS["f32"]])
    nodes, outputs = _reduce("w", "f32")
    return Bomb("sparse_initializer", _model(nodes, [], outputs, sparse_initializer=[sparse]))


def sparse_constant() -> Bomb:
    """The same through a Constant node's ``sparse_value``."""
    sparse = helper.make_sparse_tensor(helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0]), _i64("w_idx", [0]),
                                       [ELEMENTS["f32"]])
    nodes, outputs = _reduce("w", "f32")
    return Bomb("sparse_constant", _model([helper.make_node("Constant", [], ["w"], sparse_value=sparse), *nodes], [],
                                          outputs))


def string_expand() -> Bomb:
    """A 1 MiB string expanded 1024 times: a string's bytes live outside every tensor allocator."""
    text = helper.make_tensor("text", TensorProto.STRING, [1], [b"a" * MiB])
    nodes = [helper.make_node("Expand", ["text", "shape"], ["many"]), helper.make_node("Shape", ["many"], ["y"])]
    return Bomb("string_expand", _model(nodes, [], [_value("y", TensorProto.INT64, [1])],
                                        [text, _i64("shape", [1024])]))


def string_cast() -> Bomb:
    """Numbers cast to strings, then concatenated with themselves in a loop (lengths double)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("StringConcat", ["s_in", "s_in"], ["s_out"])],
        "grow", [_value("i", TensorProto.INT64, []), _value("cond_in", TensorProto.BOOL, []),
                 _value("s_in", TensorProto.STRING, None)],
        [_value("cond_out", TensorProto.BOOL, []), _value("s_out", TensorProto.STRING, None)])
    nodes = [helper.make_node("Cast", ["x"], ["s"], to=TensorProto.STRING),
             helper.make_node("Loop", ["trips", "cond", "s"], ["long"], body=body),
             helper.make_node("Shape", ["long"], ["y"])]
    init = [helper.make_tensor("trips", TensorProto.INT64, [], [30]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [1])]
    return Bomb("string_cast", _model(nodes, [_value("x", TensorProto.FLOAT, [1])],
                                      [_value("y", TensorProto.INT64, [1])], init, opset=20),
                [np.ones([1], np.float32)])


def node_flood(count: int = 150_000) -> Bomb:
    """A chain of ``count`` Identity nodes: ~30 bytes each in the file, kilobytes in a runtime."""
    graph = onnx.GraphProto(name="flood")
    for i in range(count):
        node = graph.node.add()
        node.op_type = "Identity"
        node.input.append(f"t{i}" if i else "x")
        node.output.append(f"t{i + 1}" if i + 1 < count else "y")
    graph.input.append(_value("x", TensorProto.FLOAT, [1]))
    graph.output.append(_value("y", TensorProto.FLOAT, [1]))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return Bomb("node_flood", proto.SerializeToString(), [np.ones([1], np.float32)])


def function_flood(levels: int = 17) -> Bomb:
    """Model-local functions, each calling the one below twice: 2^17 nodes once inlined, 1 kB on disk."""
    functions = [helper.make_function("bomb", "f0", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
                                      [helper.make_opsetid("", 13)])]
    for level in range(1, levels + 1):
        below = f"f{level - 1}"
        functions.append(helper.make_function(
            "bomb", f"f{level}", ["x"], ["y"],
            [helper.make_node(below, ["x"], ["t"], domain="bomb"),
             helper.make_node(below, ["t"], ["y"], domain="bomb")],
            [helper.make_opsetid("", 13), helper.make_opsetid("bomb", 1)]))
    graph = helper.make_graph([helper.make_node(f"f{levels}", ["x"], ["y"], domain="bomb")], "flood",
                              [_value("x", TensorProto.FLOAT, [1])], [_value("y", TensorProto.FLOAT, [1])])
    proto = helper.make_model(graph, functions=functions, ir_version=8,
                              opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("bomb", 1)])
    return Bomb("function_flood", proto.SerializeToString(), [np.ones([1], np.float32)])


def big_output(count_bytes: int = 15 * MiB) -> Bomb:
    """A legitimate-looking model whose output is just under a 16 MiB tensor limit: x[1] -> y[N]."""
    elements = count_bytes // 4
    return Bomb("big_output", _model([helper.make_node("Expand", ["x", "shape"], ["y"])],
                                     [_value("x", TensorProto.FLOAT, [1])],
                                     [_value("y", TensorProto.FLOAT, [elements])],
                                     [_i64("shape", [elements])]), [np.ones([1], np.float32)])


def good_model() -> bytes:
    """f32[1,4]: y = 2x + 1, the model every worker serves before and after a bomb."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])]
    init = [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    return _model(nodes, [_value("x", TensorProto.FLOAT, [1, 4])], [_value("y", TensorProto.FLOAT, [1, 4])], init)


#: Every bomb by name.
BOMBS: dict[str, Callable[[], Bomb]] = {
    **{f"constant_of_shape_initializer_{t}": (lambda t=t: constant_of_shape_initializer(t)) for t in ELEM},
    **{f"constant_of_shape_output_{t}": (lambda t=t: constant_of_shape_output(t)) for t in ELEM},
    **{f"constant_of_shape_input_{t}": (lambda t=t: constant_of_shape_input(t)) for t in ELEM},
    **{f"expand_{t}": (lambda t=t: expand(t)) for t in ELEM},
    "tile": tile,
    "range": range_,
    "resize": resize,
    "upsample": upsample,
    "reshape_broadcast_static": lambda: reshape_broadcast(True),
    "reshape_broadcast_dynamic": lambda: reshape_broadcast(False),
    "concat_loop": concat_loop,
    "sparse_initializer": sparse_initializer,
    "sparse_constant": sparse_constant,
    "string_expand": string_expand,
    "string_cast": string_cast,
    "node_flood": node_flood,
    "function_flood": function_flood,
}


# -- names that try to forge a log line -----------------------------------------------------------------
#: The line a forging model tries to write into the host's log.
FORGED = "WARNING wasinn: FORGED LINE"


def forging_models() -> dict[str, tuple[bytes, list[np.ndarray]]]:
    """Models whose op type, domain, node or value name carries a line break (or a terminal escape)
    and then a log line of its own; each fails, at load or at compute, with a runtime message that
    quotes the name. ``spelling -> (model, inputs for compute)``."""
    x1, y1 = _value("x", TensorProto.FLOAT, [1]), _value("y", TensorProto.FLOAT, [1])
    x2, s1 = _value("x", TensorProto.FLOAT, [2]), _value("s", TensorProto.INT64, [1])
    feed = [np.ones(2, np.float32), np.array([3], np.int64)]

    def reshape(name: str) -> bytes:  # 2 elements cannot be reshaped to [3]: fails at compute, naming the node
        return _model([helper.make_node("Reshape", ["x", "s"], ["y"], name=name)], [x2, s1],
                      [_value("y", TensorProto.FLOAT, [None])])

    return {
        # refused when the session is made: "No Op registered for Relu\n..."
        "op_type": (_model([helper.make_node(f"Relu\n{FORGED}", ["x"], ["y"])], [x1], [y1]), []),
        "op_type_cr": (_model([helper.make_node(f"Relu\r{FORGED}", ["x"], ["y"])], [x1], [y1]), []),
        "domain": (_model([helper.make_node("Relu", ["x"], ["y"], domain=f"d\n{FORGED}")], [x1], [y1],
                          domains={f"d\n{FORGED}": 1}), []),
        "node_name": (reshape(f"n\n{FORGED}"), feed),
        # refused when the session is made: an output no node produces, named in the message
        "value_name": (_model([helper.make_node("Relu", ["x"], ["y"])], [x1],
                              [_value(f"z\n{FORGED}", TensorProto.FLOAT, [1])]), []),
        "terminal_escape": (reshape(f"n\x1b[2K\r{FORGED}"), feed),
    }


def run_forging_model(host: object, data: bytes, feed: Sequence[np.ndarray]) -> list[int]:
    """A guest of ``host`` loads ``data`` and, where it loads, computes with ``feed``: the errnos."""
    from wasinn.testing.guest import TrampolineGuest

    guest = TrampolineGuest(host)  # type: ignore[arg-type]
    loaded = guest.load([data])
    errnos = [loaded.errno]
    if loaded.ok and loaded.value is not None:
        context = guest.init_execution_context(loaded.value)
        assert context.ok and context.value is not None
        for index, array in enumerate(feed):
            assert guest.set_input(context.value, index, array).ok
        errnos.append(guest.compute(context.value).errno)
    guest.close()
    return errnos


def forged_lines(logged: str) -> list[str]:
    """Lines of ``logged`` that start as the forged line would (after any terminal control)."""
    return [line for line in logged.splitlines() if line.lstrip("\x1b[2K\r ").startswith(FORGED)]


# -- the worker ---------------------------------------------------------------------------------------
def _hwm() -> int:
    """This process's peak RSS so far, in bytes (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _run(guest: object, graph: int, inputs: Sequence[np.ndarray], steps: dict[str, object]) -> int | None:
    """init, set_input, compute, get_output: each step's errno into ``steps``; the context handle."""
    from wasinn.testing.guest import TrampolineGuest

    assert isinstance(guest, TrampolineGuest)
    context = guest.init_execution_context(graph)
    steps["init"] = context.errno
    if not context.ok or context.value is None:
        return None
    for index, array in enumerate(inputs):
        call = guest.set_input(context.value, index, array)
        steps[f"set_input_{index}"] = call.errno
        if not call.ok:
            return context.value
    steps["compute"] = guest.compute(context.value).errno
    if steps["compute"] == 0:
        call, _ = guest.get_output_bytes(context.value, 0, max_bytes=64 * MiB)
        steps["get_output"] = call.errno
    return context.value


def _good(guest: object) -> bool:
    from wasinn.testing.guest import TrampolineGuest

    assert isinstance(guest, TrampolineGuest)
    graph = guest.load([good_model()])
    if not graph.ok or graph.value is None:
        return False
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    try:
        (y,) = guest.infer(graph.value, [x], [(np.float32, (1, 4))])
    except AssertionError:
        return False
    guest.reset_heap()
    return bool(np.array_equal(y, 2 * x + 1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+", choices=sorted(BOMBS))
    parser.add_argument("--backend", default=None)
    parser.add_argument("--limits", default=json.dumps(TEST_LIMITS))
    args = parser.parse_args(argv)

    import logging

    import wasmtime

    import wasinn
    from wasinn.testing.guest import TrampolineGuest

    logging.basicConfig(level=logging.ERROR)
    bombs = [BOMBS[variant]() for variant in args.variants]  # built before the baseline: not the host's memory
    with wasinn.WasiNnHost(limits=wasinn.Limits(**json.loads(args.limits)), backend=args.backend) as host:
        engine = wasmtime.Engine()
        warm = TrampolineGuest(host, engine)
        good = _good(warm)  # the runtimes' libraries and pools are in the baseline
        warm.close()
        start = _hwm()
        for variant, bomb in zip(args.variants, bombs, strict=True):
            print(f"BEGIN {variant}", flush=True)
            guest = TrampolineGuest(host, engine)
            result: dict[str, object] = {"variant": bomb.name, "model_bytes": len(bomb.model), "good_before": good,
                                         "hwm_start": start, "hwm_before": _hwm()}
            loaded = guest.load([bomb.model])
            result["load"] = loaded.errno
            if loaded.ok and loaded.value is not None:
                result["backend"] = guest.state.tables.graphs[loaded.value].backend.name
                steps: dict[str, object] = {}
                _run(guest, loaded.value, bomb.inputs, steps)
                guest.reset_heap()
                result["steps"] = [steps]
            result["hwm_after"] = _hwm()
            result["good_after"] = _good(guest)
            guest.close()
            result["good_new_store"] = _good(TrampolineGuest(host, engine))
            print("RESULT " + json.dumps(result), flush=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
