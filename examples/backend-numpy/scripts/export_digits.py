"""Export the demo digits model's weights (``demo/models/digits.onnx``) to an ``npz-mlp`` archive.

    python examples/backend-numpy/scripts/export_digits.py --out digits.npz

Reads the ONNX graph, a chain of MatMul, Add and an activation per layer, with ``onnx`` and
``onnx.numpy_helper``; the archive computes the same function, so any guest that classifies digits
with ``digits.onnx`` gets the same answers from ``digits.npz`` on the ``numpy`` backend. The
archive's bytes are reproducible (fixed timestamps).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wasinn_backend_numpy.npz import Mlp, Port, dump_mlp

REPO = Path(__file__).resolve().parents[3]
DEFAULT_ONNX = REPO / "demo" / "models" / "digits.onnx"
ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax"}


def _port(value: Any) -> Port:
    dims = value.type.tensor_type.shape.dim
    return Port(value.name, tuple(d.dim_value if d.HasField("dim_value") else None for d in dims))


def mlp_from_onnx(path: Path) -> Mlp:
    """The MLP an ONNX model of MatMul/Add/activation layers computes (``ValueError`` otherwise)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    weights: list[Any] = []
    biases: list[Any] = []
    activations: list[str] = []
    for node in graph.node:
        if node.op_type == "MatMul":
            weights.append(constants[node.input[1]])
            activations.append("identity")
        elif node.op_type == "Add" and len(biases) < len(weights):
            biases.append(constants[next(name for name in node.input if name in constants)])
        elif node.op_type in ACTIVATIONS and activations and activations[-1] == "identity":
            axis = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
            if node.op_type == "Softmax" and axis not in (-1, len(graph.input[0].type.tensor_type.shape.dim) - 1):
                raise ValueError(f"Softmax over axis {axis}: only the last axis is supported")
            activations[-1] = ACTIVATIONS[node.op_type]
        else:
            raise ValueError(f"{path}: node {node.name or node.op_type} ({node.op_type}) is not part of an MLP")
    hidden = set(activations[:-1])
    if len(hidden) > 1:
        raise ValueError(f"{path}: hidden layers use different activations ({', '.join(sorted(hidden))})")
    return Mlp(weights=tuple(weights), biases=tuple(biases), input=_port(graph.input[0]),
               output=_port(graph.output[0]), activation=hidden.pop() if hidden else "identity",
               output_activation=activations[-1])


def export(onnx_path: Path, out: Path) -> Mlp:
    """Write the ``npz-mlp`` archive of ``onnx_path`` to ``out``; returns the model."""
    mlp = mlp_from_onnx(onnx_path)
    out.write_bytes(dump_mlp(mlp))
    return mlp


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX, help="the ONNX model (default: the demo's)")
    parser.add_argument("--out", type=Path, default=Path("digits.npz"), help="where to write the archive")
    args = parser.parse_args(argv)
    mlp = export(args.onnx, args.out)
    layers = " -> ".join([str(mlp.weights[0].shape[0]), *(str(w.shape[1]) for w in mlp.weights)])
    print(f"wrote {args.out}: {layers}, {mlp.activation} then {mlp.output_activation}, {mlp.dtype}, "
          f"input {mlp.input.name}{list(mlp.input.shape)}, output {mlp.output.name}{list(mlp.output.shape)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
