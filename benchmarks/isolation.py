"""Isolated (wasinn.worker) vs in-process, side by side: one run, ratios.

    PYTHONPATH=packages/wasinn-core/src:packages/wasinn-backend-onnx/src:packages/wasinn-backend-onnx/tests \\
        .tox/onnx/bin/python benchmarks/isolation.py [--rounds N] [--json out.json]
    PYTHONPATH=...core/src:...ggml/src .tox/ggml/bin/python benchmarks/isolation.py --llm

Per inference (set_input + compute + get_output through a real wasm guest, the trampoline) on the
tiny affine ONNX model and on squeezenet (onnx's "light" model, 224x224); the first ``load`` of a
guest's model in a fresh host (isolated: includes starting the backend's template process; then a
second load, a fork from the warm template); each worker's own memory (Pss and Private from
/proc/<pid>/smaps_rollup, with 8 graphs loaded); with ``--llm``, tokens per second of the tiny GGUF
streamed through a worker. Medians; the machine's load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import wasinn
from wasinn import Limits
from wasinn.testing.guest import TrampolineGuest
from wasinn.worker import proxy

os.environ.setdefault("WASINN_HARDWARE", json.dumps({"accelerators": []}))


def host(policy: str) -> wasinn.WasiNnHost:
    return wasinn.WasiNnHost(limits=Limits(guest_models=policy))


def per_inference(model: bytes, x: np.ndarray, out_shape: tuple[int, ...], rounds: int,
                  block: int) -> tuple[float, float, float]:
    """Seconds per inference in-process and isolated (medians of blocks of ``block`` inferences,
    the two hosts interleaved block by block so that both see the same machine), and the isolated
    side's round trips to its worker per inference."""
    hosts = {policy: host(policy) for policy in ("in-process", "isolate")}
    guests, contexts = {}, {}
    for policy, h in hosts.items():
        guest = TrampolineGuest(h)
        graph = guest.load([model]).value
        ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
        assert ctx is not None
        guests[policy], contexts[policy] = guest, ctx
    trips = [0]
    real_call = proxy.WorkerGraph._call

    def counted(self: proxy.WorkerGraph, *args: Any) -> list[Any]:
        trips[0] += 1
        return real_call(self, *args)

    def run(policy: str, n: int) -> float:
        guest, ctx = guests[policy], contexts[policy]
        start = time.perf_counter()
        for _ in range(n):
            guest.reset_heap()
            assert guest.set_input(ctx, 0, x).ok
            assert guest.compute(ctx).ok
            call, _ = guest.get_output(ctx, 0, np.float32, out_shape, max_bytes=1 << 24)
            assert call.ok
        return (time.perf_counter() - start) / n

    times: dict[str, list[float]] = {"in-process": [], "isolate": []}
    for policy in times:
        run(policy, block)  # warm up (and the isolated side's buffers)
    proxy.WorkerGraph._call = counted  # type: ignore[method-assign]
    try:
        run("isolate", block)
    finally:
        proxy.WorkerGraph._call = real_call  # type: ignore[method-assign]
    for _ in range(rounds):
        for policy in times:
            times[policy].append(run(policy, block))
    for policy, h in hosts.items():
        guests[policy].close()
        h.close()
    return statistics.median(times["in-process"]), statistics.median(times["isolate"]), trips[0] / block


def first_load(model: bytes, policy: str) -> tuple[float, float]:
    proxy.close_templates()  # a fresh template: the first load pays for it, as in-process pays the import
    with host(policy) as h:
        guest = TrampolineGuest(h)
        start = time.perf_counter()
        assert guest.load([model]).ok
        first = time.perf_counter() - start
        start = time.perf_counter()
        assert guest.load([model]).ok
        second = time.perf_counter() - start
        guest.close()
    return first, second


def worker_memory(model: bytes, graphs: int = 8) -> dict[str, float]:
    with host("isolate") as h:
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


def llm_tokens(policy: str) -> float:
    from wasinn_backend_ggml.testing import write_tiny_llama

    from wasinn.abi.ephemeral import FUNCTIONS
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "tiny.gguf").read_bytes()
    with host(policy) as h:
        guest = TrampolineGuest(h, functions={name: arity for name, (arity, _) in FUNCTIONS.items()})
        graph = guest.load([model]).value
        ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
        assert ctx is not None
        config = json.dumps({"temp": 0.0, "n-predict": 64, "ctx-size": 256}).encode()
        assert guest.call("set_input", ctx, 1, guest.tensor_record(config, [1], 3)) == 0
        best = []
        for _ in range(3):
            guest.reset_heap()
            assert guest.call("set_input", ctx, 0, guest.tensor_record(b"hello world, the llama said", [1], 3)) == 0
            count, start = 0, time.perf_counter()
            while (errno := guest.compute_single(ctx).errno) == 0:
                guest.get_output_single_bytes(ctx, 0)
                count += 1
            best.append(count / (time.perf_counter() - start))
            assert errno == 100 and count > 8, (policy, errno, count)  # end of sequence after the tokens
            guest.call("fini_single", ctx)
        guest.close()
    return statistics.median(best)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--llm", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"loadavg": os.getloadavg(), "cpus": os.cpu_count()}
    rows = []
    if args.llm:
        iso, inp = llm_tokens("isolate"), llm_tokens("in-process")
        rows.append(("tiny llama tokens/s", inp, iso, inp / iso))
    else:
        from onnx_test_models import LIGHT, affine_model, light_input
        tiny = affine_model()
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        inp, iso, trips = per_inference(tiny, x, (1, 4), args.rounds, 100)
        rows.append(("tiny affine, per inference (µs)", inp * 1e6, iso * 1e6, iso / inp))
        results["tiny_overhead_us"] = (iso - inp) * 1e6
        results["tiny_round_trips_per_inference"] = trips
        squeeze = (LIGHT / "light_squeezenet.onnx").read_bytes()
        sx = light_input(LIGHT / "light_squeezenet.onnx")
        inp, iso, trips = per_inference(squeeze, sx, (1, 1000), max(5, args.rounds // 4), 10)
        results["squeezenet_round_trips_per_inference"] = trips
        rows.append(("squeezenet, per inference (ms)", inp * 1e3, iso * 1e3, iso / inp))
        inp_first, inp_second = first_load(squeeze, "in-process")
        iso_first, iso_second = first_load(squeeze, "isolate")
        rows.append(("squeezenet first load (ms)", inp_first * 1e3, iso_first * 1e3, iso_first / inp_first))
        rows.append(("squeezenet second load (ms)", inp_second * 1e3, iso_second * 1e3, iso_second / inp_second))
        results["worker_memory_tiny"] = worker_memory(tiny)
        results["worker_memory_squeezenet"] = worker_memory(squeeze)
    print(f"load average {results['loadavg']}, {results['cpus']} CPUs")
    print(f"{'':36} {'in-process':>12} {'isolated':>12} {'ratio':>7}")
    for name, a, b, ratio in rows:
        print(f"{name:36} {a:12.1f} {b:12.1f} {ratio:7.3f}")
    for key in ("tiny_overhead_us", "tiny_round_trips_per_inference", "squeezenet_round_trips_per_inference",
                "worker_memory_tiny", "worker_memory_squeezenet"):
        if key in results:
            print(f"{key}: {results[key]}")
    results["rows"] = rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
