"""Test helpers: model builders, a host with only this backend, and guest runners.

(A uniquely named module rather than conftest, so that the test suites of several packages can share a
pytest run.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

import wasinn
from wasinn import ExecutionTarget, GraphEncoding, WasiNnHost
from wasinn.cli.main import main as wasinn_main
from wasinn.testing.models import third_party_dir

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "demo"
DIGITS_MODELS = DEMO / "models"
GUESTS = REPO / "guests"
NN_RUN = GUESTS / "nn-run" / "nn-run.wasm"
DIGITS_GUEST = GUESTS / "digits" / "digits.wasm"
THIRD_PARTY = third_party_dir(__file__)  # models/third-party, checked against SOURCES.md
WAMR_MODELS = THIRD_PARTY / "wamr-tflite-test-models"
BIRDS = THIRD_PARTY / "wasmedge-tflite-birds"

# Exit status of a guest for each wasi-nn errno (64 + errno, witx numbering).
EXIT = {"invalid_argument": 65, "invalid_encoding": 66, "runtime_error": 69, "unsupported_operation": 70}


#: The OpenVINO element type of each wasi-nn tensor type, for building IR test models.
IR_TYPES = {
    wasinn.TensorType.F16: ov.Type.f16,
    wasinn.TensorType.BF16: ov.Type.bf16,
    wasinn.TensorType.F32: ov.Type.f32,
    wasinn.TensorType.F64: ov.Type.f64,
    wasinn.TensorType.U8: ov.Type.u8,
    wasinn.TensorType.I8: ov.Type.i8,
    wasinn.TensorType.I32: ov.Type.i32,
    wasinn.TensorType.I64: ov.Type.i64,
}


def ir_builders(model: ov.Model, folder: Path, name: str = "model") -> list[bytes]:
    """The model as IR builders (XML, weights), with exact weights (no fp16 compression)."""
    xml = folder / f"{name}.xml"
    ov.save_model(model, xml, compress_to_fp16=False)
    return [xml.read_bytes(), xml.with_suffix(".bin").read_bytes()]


def new_host(**kwargs: Any) -> WasiNnHost:
    return WasiNnHost(backend="openvino", **kwargs)


def infer(
    builders: Sequence[bytes],
    inputs: Sequence[np.ndarray],
    *,
    encoding: GraphEncoding = GraphEncoding.AUTODETECT,
    target: ExecutionTarget = ExecutionTarget.CPU,
    types: Sequence[wasinn.TensorType | None] | None = None,
) -> list[np.ndarray]:
    """Load anonymous model bytes as a guest would (through the core, without wasm) and run once."""
    with new_host() as host:
        state = host.new_state()
        graph = state.load(builders, encoding, target)
        return run_graph(state, graph, inputs, types)


def run_graph(state: wasinn.StoreState, graph: int, inputs: Sequence[np.ndarray],
              types: Sequence[wasinn.TensorType | None] | None = None) -> list[np.ndarray]:
    context = state.init_execution_context(graph)
    for index, array in enumerate(inputs):
        kind = types[index] if types else None
        state.set_input(context, index, wasinn.Tensor.from_numpy(array, kind))
    state.compute(context)
    count = len(state.graph(graph).graph.outputs)
    return [state.get_output(context, i).copy() for i in range(count)]


def load_named(host: WasiNnHost, name: str, source: Any, model_config: Mapping[str, Any] | None = None,
               **kwargs: Any) -> tuple[wasinn.StoreState, int]:
    host.register_model(name, source, config=model_config, **kwargs)
    state = host.new_state()
    return state, state.load_by_name(name)


def compiled_of(state: wasinn.StoreState, graph: int) -> Any:
    return state.graph(graph).graph.state.compiled


def run_guest(guest: Path, args: Sequence[str], tmp_path: Path, *extra: str) -> int:
    """``wasinn run --backend openvino`` with tmp_path preopened as /d and the demo as /demo."""
    return wasinn_main(["-q", "run", "--backend", "openvino", "--dir", f"{tmp_path}::/d", "--dir", f"{DEMO}::/demo",
                        *extra, str(guest), *args])


ACCURACY = re.compile(r"accuracy: (\d+\.\d+)%")


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """The held-out images as the demo guest feeds them (pixel / maxval), and their labels."""
    arrays, labels = [], []
    for path in sorted((DEMO / "images").glob("*.pgm")):
        data = path.read_bytes()
        header = data.split(maxsplit=4)  # P5, width, height, maxval, pixels
        maxval = int(header[3])
        pixels = np.frombuffer(data[-64:], np.uint8).astype(np.float32) / maxval
        arrays.append(pixels.reshape(1, 64))
        labels.append(int(path.stem.split("-")[1]))
    return np.stack(arrays), np.array(labels)


def native_digits(images: np.ndarray) -> dict[str, np.ndarray]:
    """The digits model's probabilities for each image from ONNX Runtime and LiteRT, run natively."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    session = onnxruntime.InferenceSession(str(DIGITS_MODELS / "digits.onnx"), providers=["CPUExecutionProvider"])
    interpreter: Any = Interpreter(model_path=str(DIGITS_MODELS / "digits.tflite"))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    lite = []
    for image in images:
        interpreter.set_tensor(source, image)
        interpreter.invoke()
        lite.append(interpreter.get_tensor(sink).copy())
    ort = np.concatenate([session.run(None, {"pixels": image})[0] for image in images])
    return {"onnxruntime": ort, "litert": np.concatenate(lite)}
