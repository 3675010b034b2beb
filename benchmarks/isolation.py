"""Isolated (wasinn.worker) vs in-process, side by side: one run, ratios.

    # onnx, tflite and openvino (the integration env has all three):
    PYTHONPATH=packages/wasinn-core/src:packages/wasinn-backend-onnx/tests \\
        .tox/integration/bin/python benchmarks/isolation.py [--rounds N] [--json out.json]
    # tokens streamed from a GGUF model (the ggml env):
    PYTHONPATH=packages/wasinn-core/src .tox/ggml/bin/python benchmarks/isolation.py --llm [--gguf PATH]

Per inference (set_input + compute + get_output through a real wasm guest, the trampoline), the
in-process host and the isolated one interleaved block by block in one process, so that both see the
same machine: the tiny affine ONNX model, squeezenet and resnet50 (onnx's "light" models) on ONNX
Runtime, and WasmEdge's birds classifier (TFLite, 3.6 MB, u8[1,224,224,3]) on LiteRT and on
OpenVINO. Also: the isolated side's round trips per inference (counted, not timed); the first
``load`` of a guest's model in a fresh host, right after the store is made (the template still
starting) and once the template is up; ``wasinn run`` of the nn-run guest loading the birds bytes,
end to end (process start to exit); each worker's own memory (Pss and Private, 8 graphs). With
``--llm``: tokens per second streamed through ``compute_single`` (Gemma-3-270M when ``--gguf`` names
it, else the tiny random GGUF). Medians; the load average is recorded.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import wasinn
from wasinn import Limits
from wasinn.testing.guest import TrampolineGuest
from wasinn.testing.models import third_party_model
from wasinn.worker import proxy

os.environ.setdefault("WASINN_HARDWARE", json.dumps({"accelerators": []}))
ROOT = Path(__file__).resolve().parent.parent
BIRDS = third_party_model("wasmedge-tflite-birds/lite-model_aiy_vision_classifier_birds_V1_3.tflite", __file__)
NN_RUN = ROOT / "guests" / "nn-run" / "nn-run.wasm"
POLICIES = ("in-process", "isolate")


def host(policy: str, backend: str | None = None) -> wasinn.WasiNnHost:
    return wasinn.WasiNnHost(limits=Limits(guest_models=policy), allow=[backend] if backend else None)


class Pair:
    """The same guest model loaded in an in-process host and in an isolated one."""

    def __init__(self, model: bytes, backend: str | None, encoding: int | None = None,
                 functions: dict[str, int] | None = None) -> None:
        self.hosts = {policy: host(policy, backend) for policy in POLICIES}
        self.guests: dict[str, TrampolineGuest] = {}
        self.contexts: dict[str, int] = {}
        for policy, h in self.hosts.items():
            guest = TrampolineGuest(h, functions=functions) if functions else TrampolineGuest(h)
            graph = guest.load([model], **({"encoding": encoding} if encoding is not None else {}))
            assert graph.ok and graph.value is not None, (policy, graph)
            ctx = guest.init_execution_context(graph.value).value
            assert ctx is not None
            self.guests[policy], self.contexts[policy] = guest, ctx

    def interleave(self, step: Callable[[TrampolineGuest, int], None], rounds: int, block: int) -> dict[str, float]:
        """Median seconds per ``step`` on each side (blocks of ``block`` steps, alternating), and the
        isolated side's round trips to its worker per step."""
        def run(policy: str, n: int) -> float:
            guest, ctx = self.guests[policy], self.contexts[policy]
            start = time.perf_counter()
            for _ in range(n):
                step(guest, ctx)
            return (time.perf_counter() - start) / n

        for policy in POLICIES:
            run(policy, block)  # warm up (and the isolated side's buffers)
        trips = [0]
        real_call = proxy.WorkerGraph._call

        def counted(self: proxy.WorkerGraph, *args: Any) -> list[Any]:
            trips[0] += 1
            return real_call(self, *args)

        proxy.WorkerGraph._call = counted  # type: ignore[method-assign]
        try:
            run("isolate", block)
        finally:
            proxy.WorkerGraph._call = real_call  # type: ignore[method-assign]
        times: dict[str, list[float]] = {policy: [] for policy in POLICIES}
        for _ in range(rounds):
            for policy in POLICIES:
                times[policy].append(run(policy, block))
        return {"in-process": statistics.median(times["in-process"]), "isolate": statistics.median(times["isolate"]),
                "round_trips": trips[0] / block}

    def close(self) -> None:
        for policy, h in self.hosts.items():
            self.guests[policy].close()
            h.close()


def inference(x: np.ndarray, out_dtype: type, out_shape: tuple[int, ...]) -> Callable[[TrampolineGuest, int], None]:
    def step(guest: TrampolineGuest, ctx: int) -> None:
        guest.reset_heap()
        assert guest.set_input(ctx, 0, x).ok
        assert guest.compute(ctx).ok
        call, _ = guest.get_output(ctx, 0, out_dtype, out_shape, max_bytes=1 << 24)
        assert call.ok
    return step


def per_inference(model: bytes, backend: str, x: np.ndarray, out_dtype: type, out_shape: tuple[int, ...],
                  rounds: int, block: int) -> dict[str, float]:
    pair = Pair(model, backend)
    try:
        return pair.interleave(inference(x, out_dtype, out_shape), rounds, block)
    finally:
        pair.close()


def first_load(model: bytes, backend: str) -> dict[str, float]:
    """Milliseconds of the first guest ``load`` in a fresh host: in-process; isolated right after the
    store is made (its template still starting in the background); isolated once the template is up
    (a guest usually takes that long to start); and the template's own start."""
    out: dict[str, float] = {}
    with host("in-process", backend) as h:
        guest = TrampolineGuest(h)
        start = time.perf_counter()
        assert guest.load([model]).ok
        out["in_process_ms"] = (time.perf_counter() - start) * 1e3
        guest.close()
    for when in ("isolated_at_once_ms", "isolated_template_up_ms"):
        proxy.close_templates()
        with host("isolate", backend) as h:
            guest = TrampolineGuest(h)  # makes the store: the template starts in the background
            if when == "isolated_template_up_ms":
                made = proxy.template(h.registry.get(backend))  # type: ignore[arg-type]
                out["template_start_ms"] = made.import_ms
            start = time.perf_counter()
            assert guest.load([model]).ok
            out[when] = (time.perf_counter() - start) * 1e3
            guest.close()
    return out


def cli_birds(backend: str, rounds: int) -> dict[str, float]:
    """``wasinn run`` of nn-run loading the birds bytes (one inference), process start to exit."""
    from PIL import Image
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "birds.tflite").write_bytes(BIRDS.read_bytes())
        with Image.open(BIRDS.parent / "bird.jpg") as image:
            (folder / "bird.rgb").write_bytes(np.asarray(image.convert("RGB").resize((224, 224)), np.uint8).tobytes())
        wasinn_cli = str(Path(sys.executable).parent / "wasinn")
        times: dict[str, list[float]] = {policy: [] for policy in POLICIES}
        for _ in range(rounds):
            for policy in POLICIES:
                argv = [wasinn_cli, "run", "-q", "--guest-models", policy, "--backend", backend, "--dir",
                        f"{folder}::/d", str(NN_RUN), "--load", "4", "0", "/d/birds.tflite", "--input", "0", "3",
                        "1x224x224x3", "/d/bird.rgb", "--print-output", "0", "3"]
                start = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                times[policy].append(time.perf_counter() - start)
                assert done.returncode == 0, done.stderr[-2000:]
    return {policy: statistics.median(values) * 1e3 for policy, values in times.items()}


def worker_memory(model: bytes, backend: str, graphs: int = 8) -> dict[str, float]:
    with host("isolate", backend) as h:
        guest = TrampolineGuest(h)
        pids = []
        for _ in range(graphs):
            graph = guest.load([model]).value
            guest.init_execution_context(graph)  # type: ignore[arg-type]
            state = guest.state.graph(graph).graph.state  # type: ignore[arg-type]
            assert isinstance(state, proxy.WorkerGraph)
            pids.append(state.pid)
        pss, private = [], []
        for pid in pids:
            fields = {}
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        fields[parts[0].rstrip(":")] = int(parts[1])
            pss.append(fields["Pss"] / 1024)
            private.append((fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024)
        guest.close()
    return {"pss_mib": statistics.median(pss), "private_mib": statistics.median(private)}


def llm_tokens(gguf: Path | None, rounds: int) -> dict[str, float]:
    """Seconds per streamed token (``compute_single`` + ``get_output_single``), both sides interleaved."""
    from wasinn_backend_ggml.testing import write_tiny_llama

    from wasinn.abi.ephemeral import FUNCTIONS
    with tempfile.TemporaryDirectory() as tmp:
        model = (gguf or write_tiny_llama(Path(tmp) / "tiny.gguf")).read_bytes()
    functions = {name: arity for name, (arity, _) in FUNCTIONS.items()}
    pair = Pair(model, "ggml", encoding=6, functions=functions)
    config = json.dumps({"temp": 0.0, "n-predict": 32, "ctx-size": 256, "threads": 2, "threads-batch": 2}).encode()
    prompt = b"The quick brown fox jumps over the lazy dog. Tell me a story about it:"
    for policy in POLICIES:
        guest = pair.guests[policy]
        assert guest.call("set_input", pair.contexts[policy], 1, guest.tensor_record(config, [1], 3)) == 0
    def seconds_per_token(guest: TrampolineGuest, ctx: int) -> float:
        guest.reset_heap()
        assert guest.call("set_input", ctx, 0, guest.tensor_record(prompt, [1], 3)) == 0
        assert guest.compute_single(ctx).errno == 0  # the prompt and the first token: not timed
        count, start = 0, time.perf_counter()
        while (errno := guest.compute_single(ctx).errno) == 0:
            guest.get_output_single_bytes(ctx, 0)
            count += 1
        elapsed = time.perf_counter() - start
        assert errno == 100 and count > 8, (errno, count)
        guest.call("fini_single", ctx)
        return elapsed / count

    per: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    for _ in range(rounds):
        for policy in POLICIES:
            per[policy].append(seconds_per_token(pair.guests[policy], pair.contexts[policy]))
    pair.close()
    return {policy: statistics.median(values) for policy, values in per.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--llm", action="store_true")
    parser.add_argument("--gguf", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"loadavg_before": os.getloadavg(), "cpus": os.cpu_count()}
    rows: list[tuple[str, float, float, float]] = []

    def row(name: str, found: dict[str, float], scale: float) -> None:
        inp, iso = found["in-process"], found["isolate"]
        rows.append((name, inp * scale, iso * scale, iso / inp))
        results[name] = found

    if args.llm:
        name = "Gemma-3-270M" if args.gguf else "tiny llama"
        row(f"{name}, per streamed token (ms)", llm_tokens(args.gguf, max(3, args.rounds // 6)), 1e3)
    else:
        from onnx_test_models import LIGHT, affine_model, light_input
        tiny = affine_model()
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        found = per_inference(tiny, "onnx", x, np.float32, (1, 4), args.rounds, 200)
        row("tiny affine (onnx), per inference (µs)", found, 1e6)
        results["tiny_overhead_us"] = (found["isolate"] - found["in-process"]) * 1e6
        for name in ("squeezenet", "resnet50"):
            path = LIGHT / f"light_{name}.onnx"
            found = per_inference(path.read_bytes(), "onnx", light_input(path), np.float32, (1, 1000),
                                  max(5, args.rounds // 2), 5 if name == "resnet50" else 20)
            row(f"{name} (onnx), per inference (ms)", found, 1e3)
        from PIL import Image
        with Image.open(BIRDS.parent / "bird.jpg") as image:
            pixels = np.asarray(image.convert("RGB").resize((224, 224)), np.uint8).reshape(1, 224, 224, 3)
        birds = BIRDS.read_bytes()
        for backend in ("tflite", "openvino"):
            found = per_inference(birds, backend, pixels, np.uint8, (1, 965), args.rounds, 20)
            row(f"birds ({backend}), per inference (ms)", found, 1e3)
            results[f"first_load_birds_{backend}"] = first_load(birds, backend)
            results[f"worker_memory_birds_{backend}"] = worker_memory(birds, backend)
            found = cli_birds(backend, max(3, args.rounds // 6))
            rows.append((f"wasinn run nn-run birds ({backend}) (ms)", found["in-process"], found["isolate"],
                         found["isolate"] / found["in-process"]))
            results[f"cli_birds_{backend}_ms"] = found
        results["worker_memory_tiny"] = worker_memory(tiny, "onnx")
    results["loadavg_after"] = os.getloadavg()
    print(f"load average before {results['loadavg_before']}, after {results['loadavg_after']}; "
          f"{results['cpus']} CPUs")
    print(f"{'':44} {'in-process':>12} {'isolated':>12} {'ratio':>7} {'trips':>6}")
    for name, a, b, ratio in rows:
        trips = results.get(name, {}).get("round_trips") if isinstance(results.get(name), dict) else None
        print(f"{name:44} {a:12.3f} {b:12.3f} {ratio:7.3f} {'' if trips is None else f'{trips:6.1f}'}")
    for key, value in results.items():
        if key.startswith(("first_load", "worker_memory", "tiny_overhead")):
            print(f"{key}: {value}")
    results["rows"] = rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    sys.exit(main())
