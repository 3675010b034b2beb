"""Measure what the backend costs on top of the bare interpreter (numbers for the docs).

    python scripts/measure.py [--repeat N]

For each model: the load (verify + build + allocate), making a context (pooled and fresh), and one
inference (inputs + compute + outputs) through wasinn's StoreState against the bare interpreter
doing the same (set_tensor, invoke, get_tensor), both single-threaded, best of N after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wasinn import Tensor, WasiNnHost
from wasinn.testing.models import third_party_model
from wasinn_backend_tflite import _runtime
from wasinn_backend_tflite._verify import verify

REPO = Path(__file__).resolve().parents[3]
MODELS = {
    "digits": REPO / "demo" / "models" / "digits.tflite",
    "mult_out": third_party_model("wamr-tflite-test-models/mult_out.tflite", __file__),
    "birds": third_party_model("wasmedge-tflite-birds/lite-model_aiy_vision_classifier_birds_V1_3.tflite", __file__),
}


def best(fn: Callable[[], object], repeat: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1e6


def median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def measure(host: WasiNnHost, api: _runtime.Api, name: str, path: Path, repeat: int) -> str:
    data = path.read_bytes()
    host.register_model(name, path, config={"num_threads": 1})
    verify_us = median(lambda: verify(data), 20)
    state = host.new_state()
    started = time.perf_counter()
    graph = state.load_by_name(name)
    load_ms = (time.perf_counter() - started) * 1000
    pooled_us = median(lambda: state.finalize_execution_context(state.init_execution_context(graph)), 20)
    keep = [state.init_execution_context(graph)]
    fresh_us = median(lambda: keep.append(state.init_execution_context(graph)), 10)
    context = keep[0]
    loaded = state.graph(graph).graph
    inputs = [np.zeros(tuple(1 if d is None else d for d in s.shape or ()), s.dtype.numpy_dtype)
              for s in loaded.inputs if s.dtype is not None]
    tensors = [Tensor.from_numpy(a) for a in inputs]
    outputs = range(len(loaded.outputs))

    def through_wasinn() -> None:
        for i, t in enumerate(tensors):
            state.set_input(context, i, t)
        state.compute(context)
        for j in outputs:
            state.get_output(context, j).copy()

    bare = api.Interpreter(model_content=data, num_threads=1)
    bare.allocate_tensors()
    ins = [d["index"] for d in bare.get_input_details()]
    outs = [d["index"] for d in bare.get_output_details()]

    def bare_run() -> None:
        for index, array in zip(ins, inputs, strict=True):
            bare.set_tensor(index, array)
        bare.invoke()
        for index in outs:
            bare.get_tensor(index)

    wasinn_us, bare_us = best(through_wasinn, repeat), best(bare_run, repeat)
    state.close()
    return (f"{name:9} {len(data):>9} B  verify {verify_us / 1000:7.2f} ms  load {load_ms:7.1f} ms  "
            f"context: pooled {pooled_us:6.1f} us, fresh {fresh_us / 1000:6.2f} ms  "
            f"inference: wasinn {wasinn_us:8.1f} us, bare {bare_us:8.1f} us, overhead {wasinn_us - bare_us:6.1f} us")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    runtime = _runtime.select()
    assert isinstance(runtime, _runtime.Runtime), runtime
    api = _runtime.api(runtime)  # imported before timing the loads
    print(f"interpreter: {runtime.distribution} {runtime.version}")
    with WasiNnHost(backend="tflite") as host:
        _ = host.hardware  # probed once per host (other backends' devices hooks import their runtimes)
        for name, path in MODELS.items():
            print(measure(host, api, name, path, args.repeat))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
