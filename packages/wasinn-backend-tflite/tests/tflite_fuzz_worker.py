"""Child process for the fuzz tests: load model variants through the tflite backend, one by one.

Usage: ``python tflite_fuzz_worker.py VARIANTS PROGRESS START``. VARIANTS holds length-prefixed model
blobs. Before each variant the worker writes its number to PROGRESS, so when the process dies the
parent knows which variant killed it; at the end it writes ``done ok=N error=N``. Each variant
goes through the real host (forced to the tflite backend) as a guest's ``load`` would: verify,
build, then a context, inputs (zeros, then random values), compute and every output.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

from wasinn import ErrorCode, ExecutionTarget, GraphEncoding, Tensor, WasiNnError, WasiNnHost


def variants(path: Path) -> list[bytes]:
    blob = path.read_bytes()
    items, pos = [], 0
    while pos < len(blob):
        (size,) = struct.unpack_from("<I", blob, pos)
        items.append(blob[pos + 4:pos + 4 + size])
        pos += 4 + size
    return items


def exercise(host: WasiNnHost, data: bytes, rng: np.random.Generator) -> None:
    state = host.new_state()
    try:
        graph = state.load([data], GraphEncoding.TENSORFLOWLITE, ExecutionTarget.CPU)
        context = state.init_execution_context(graph)
        inputs = state.graph(graph).graph.inputs
        for fill in ("zeros", "random"):
            for index, spec in enumerate(inputs):
                if spec.dtype is None or spec.shape is None:
                    continue
                shape = tuple(1 if d is None else d for d in spec.shape)
                if fill == "zeros":
                    array = np.zeros(shape, spec.dtype.numpy_dtype)
                else:
                    array = (rng.standard_normal(shape) * 100).astype(spec.dtype.numpy_dtype)
                state.set_input(context, index, Tensor.from_numpy(array, spec.dtype))
            state.compute(context)
            for index in range(len(state.graph(graph).graph.outputs)):
                state.get_output(context, index).copy()
    finally:
        state.close()


def main() -> int:
    items = variants(Path(sys.argv[1]))
    progress, start = Path(sys.argv[2]), int(sys.argv[3])
    host = WasiNnHost(backend="tflite")
    rng = np.random.default_rng(0)
    ok = errors = 0
    for i in range(start, len(items)):
        progress.write_text(str(i))
        try:
            exercise(host, items[i], rng)
            ok += 1
        except WasiNnError as exc:
            assert isinstance(exc.code, ErrorCode)
            errors += 1
    progress.write_text(f"done ok={ok} error={errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
