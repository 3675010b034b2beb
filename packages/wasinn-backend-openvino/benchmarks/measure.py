#!/usr/bin/env python3
"""Measure what docs/backends/openvino.md reports, through wasinn's own load path.

    python benchmarks/measure.py cache [MODEL ...]      # first vs second process load, cache on
    python benchmarks/measure.py precision [MODEL ...]  # f32 vs bf16 (and f16): latency and max abs diff

MODEL is a .tflite, .onnx or .xml file (IR: its .bin beside it); the default is the birds classifier in
models/third-party. Every cache measurement runs in a fresh process with a fresh cache directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wasinn.testing.models import third_party_dir

REPO = Path(__file__).resolve().parents[3]
BIRDS = third_party_dir(__file__) / "wasmedge-tflite-birds"  # committed in models/third-party
DEFAULT_MODELS = [BIRDS / "lite-model_aiy_vision_classifier_birds_V1_3.tflite"]

# A child process. It starts the runtime first (import openvino, make the Core, ask for its devices:
# what every process pays once, cache or not), then times load_by_name (read and compile, or import
# the cached blob).
CHILD = """
import json, sys, time
started = time.perf_counter()
import wasinn
from wasinn_backend_openvino import runtime
runtime.available_devices()
runtime_ms = (time.perf_counter() - started) * 1000
host = wasinn.WasiNnHost(backend="openvino")
host.register_model("m", sys.argv[1:], config=json.loads(sys.argv[0]))
state = host.new_state()
started = time.perf_counter()
graph = state.load_by_name("m")
elapsed = time.perf_counter() - started
compiled = state.graph(graph).graph.state.compiled
print(json.dumps({"ms": elapsed * 1000, "runtime_ms": runtime_ms,
                  "from_cache": bool(compiled.get_property("LOADED_FROM_CACHE"))}))
host.close()
"""


def model_files(path: Path) -> list[str]:
    return [str(path), str(path.with_suffix(".bin"))] if path.suffix == ".xml" else [str(path)]


def child_load(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    code = CHILD.replace("sys.argv[0]", repr(json.dumps(config)))
    result = subprocess.run([sys.executable, "-c", code, *model_files(path)], capture_output=True, text=True,
                            check=True)
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def measure_cache(models: list[Path], rounds: int) -> None:
    print("| model | size | load, no cache | load, first process (cold cache) | load, second process (warm cache) "
          "| runtime start (every process) |")
    print("|---|---|---|---|---|---|")
    for path in models:
        none, cold, warm, start = [], [], [], []
        for _ in range(rounds):
            plain = child_load(path, {"cache_dir": None})
            none.append(plain["ms"])
            with tempfile.TemporaryDirectory() as cache:
                first = child_load(path, {"cache_dir": cache})
                second = child_load(path, {"cache_dir": cache})
            assert not first["from_cache"] and second["from_cache"], (first, second)
            cold.append(first["ms"])
            warm.append(second["ms"])
            start.extend(run["runtime_ms"] for run in (plain, first, second))
        size = sum(os.path.getsize(f) for f in model_files(path)) / 1e6
        print(f"| {path.name} | {size:.2f} MB | {statistics.median(none):.0f} ms | {statistics.median(cold):.0f} ms "
              f"| {statistics.median(warm):.0f} ms | {statistics.median(start):.0f} ms |")
    print(f"(median of {rounds} rounds; each load in a fresh process)")


def sample_input(spec: Any) -> np.ndarray:
    """The birds photo, resized to the model's NHWC input; floats scaled to 0..1."""
    from PIL import Image

    _, height, width, _ = spec.shape
    with Image.open(BIRDS / "bird.jpg") as image:
        pixels = np.asarray(image.convert("RGB").resize((width, height)), np.uint8)[None]
    return pixels if spec.dtype.value == "u8" else (pixels / 255).astype(spec.dtype.numpy_dtype)


PRECISIONS = ("f32", "bf16", "f16")


def once(state: Any, run: dict[str, Any]) -> list[np.ndarray]:
    """One inference as a guest makes it: set_input, compute, get_output."""
    for index, tensor in enumerate(run["tensors"]):
        state.set_input(run["context"], index, tensor)
    state.compute(run["context"])
    return [state.get_output(run["context"], i).copy() for i in range(run["outputs"])]


def measure_precision(models: list[Path], warmup: int, runs: int) -> None:
    """All three precisions in one process, timed in interleaved batches so that a busy machine
    slows them alike."""
    from openvino import Core

    import wasinn

    print("CPU:", Core().get_property("CPU", "FULL_DEVICE_NAME"),
          "| OPTIMIZATION_CAPABILITIES:", Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    print("| model | precision asked | compiled as | median ms | vs f32 | max abs diff vs f32 "
          "| argmax of output 0 same |")
    print("|---|---|---|---|---|---|---|")
    batch = 10
    for path in models:
        with wasinn.WasiNnHost(backend="openvino") as host:
            state = host.new_state()
            runs_of: dict[str, dict[str, Any]] = {}
            for precision in PRECISIONS:
                host.register_model(precision, model_files(path), config={"precision": precision, "cache_dir": None})
                graph = state.load_by_name(precision)
                loaded = state.graph(graph).graph
                runs_of[precision] = {
                    "context": state.init_execution_context(graph),
                    "tensors": [wasinn.Tensor.from_numpy(sample_input(spec), spec.dtype) for spec in loaded.inputs],
                    "outputs": len(loaded.outputs),
                    "compiled": loaded.state.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                    "times": [],
                }

            for run in runs_of.values():
                for _ in range(warmup):
                    run["result"] = once(state, run)
            for _ in range(0, runs, batch):
                for run in runs_of.values():
                    for _ in range(batch):
                        started = time.perf_counter()
                        once(state, run)
                        run["times"].append(time.perf_counter() - started)
        base = runs_of["f32"]
        base_ms = statistics.median(base["times"]) * 1000
        for precision, run in runs_of.items():
            ms = statistics.median(run["times"]) * 1000
            diff = max(float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
                       for a, b in zip(run["result"], base["result"], strict=True))
            same = int(np.argmax(run["result"][0])) == int(np.argmax(base["result"][0]))
            print(f"| {path.name} | {precision} | {run['compiled']} | {ms:.2f} | {ms / base_ms:.2f}x | {diff:.3g} "
                  f"| {'yes' if same else 'no'} |")
    print(f"(median of {runs} runs each, in interleaved batches of {batch}, after {warmup} warm-up runs; "
          "one run = set_input + compute + get_output)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["cache", "precision"])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="cache: rounds of cold/warm processes")
    parser.add_argument("--runs", type=int, default=200, help="precision: timed runs")
    parser.add_argument("--warmup", type=int, default=20, help="precision: untimed runs first")
    args = parser.parse_intermixed_args()
    models = args.models or DEFAULT_MODELS
    if args.what == "cache":
        measure_cache(models, args.rounds)
    else:
        measure_precision(models, args.warmup, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
