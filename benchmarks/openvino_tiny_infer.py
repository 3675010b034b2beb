"""Why a tiny OpenVINO model costs more per inference through a Python host than through Wasmtime.

    python benchmarks/openvino_tiny_infer.py [--n N] [--rounds R]

A minimal reproduction without wasinn: the 4-float affine model of ``peer_wasmtime.py``, one infer
request, timed four ways in one process, each hot (back to back) and with ~40 µs of Python work
between inferences (what a host does in the guest's set_input and get_output calls):

* ``binding``: ``openvino._pyopenvino.InferRequest.infer`` (what the openvino backend calls);
* ``c-api``: ``ov_infer_request_infer`` from ``libopenvino_c`` through ctypes, on a request compiled
  through the C API (what Wasmtime calls), to separate the binding's own cost from OpenVINO's;
* each with OpenVINO's default thread count and with ``INFERENCE_NUM_THREADS=1``.

Then wasinn itself, in this process: ``wasinn run`` on the tiny guest of ``peer_wasmtime.py`` (load
once, N x set_input, compute, get_output), with the openvino backend's three hooks timed two ways: in
the guest's loop (each hook runs once per inference, between wasmtime, wasinn's ABI layer and the
other hooks), and hot (the same hook, same arguments, repeated inside one host call). The
difference is what the rest of a Python host's path costs the hook in caches and branch predictors.

Compare the numbers with Wasmtime's whole set_input + compute + get_output in ``peer_results.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def affine_model(folder: Path) -> Path:
    import openvino as ov

    parameter = ov.opset13.parameter([1, 4], ov.Type.f32, name="x")
    weight = ov.opset13.constant(np.arange(16, dtype=np.float32).reshape(4, 4) / 10)
    result = ov.opset13.add(ov.opset13.matmul(parameter, weight, False, False),
                            ov.opset13.constant(np.ones(4, np.float32)))
    path = folder / "affine.xml"
    ov.save_model(ov.Model([result], [parameter], "affine"), str(path))
    return path


def binding_infer(path: Path, threads: int | None) -> Callable[[], object]:
    import openvino as ov
    from openvino._pyopenvino import InferRequest

    properties: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        properties["INFERENCE_NUM_THREADS"] = threads
    request = ov.Core().compile_model(str(path), "CPU", properties).create_infer_request()
    request.get_input_tensor(0).data[:] = 1
    no_inputs: dict[int, object] = {}
    return lambda: InferRequest.infer(request, no_inputs, True, False)


def c_api_infer(path: Path, threads: int | None) -> Callable[[], object]:
    import openvino as ov

    library = next((Path(ov.__file__).parent / "libs").glob("libopenvino_c.so*"))
    c = ctypes.CDLL(str(library))
    handle = ctypes.c_void_p
    core, model, compiled, request = handle(), handle(), handle(), handle()

    def check(status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what}: OpenVINO C API status {status}")

    check(c.ov_core_create(ctypes.byref(core)), "ov_core_create")
    check(c.ov_core_read_model(core, str(path).encode(), None, ctypes.byref(model)), "ov_core_read_model")
    pairs: list[bytes] = [b"PERFORMANCE_HINT", b"LATENCY", b"NUM_STREAMS", b"1"]
    if threads:
        pairs += [b"INFERENCE_NUM_THREADS", str(threads).encode()]
    check(c.ov_core_compile_model(core, model, b"CPU", ctypes.c_size_t(len(pairs)), ctypes.byref(compiled),
                                  *(ctypes.c_char_p(p) for p in pairs)), "ov_core_compile_model")
    check(c.ov_compiled_model_create_infer_request(compiled, ctypes.byref(request)), "create_infer_request")
    check(c.ov_infer_request_infer(request), "ov_infer_request_infer")
    infer = c.ov_infer_request_infer
    return lambda: infer(request)


def per_inference_us(infer: Callable[[], object], n: int, gap_us: float) -> float:
    """Mean time of the infer call alone; between calls, ``gap_us`` of Python work touching memory."""
    scratch = [0] * 2048
    total = 0.0
    for _ in range(n):
        if gap_us:
            end = time.perf_counter() + gap_us * 1e-6
            while time.perf_counter() < end:
                scratch.reverse()
        started = time.perf_counter()
        infer()
        total += time.perf_counter() - started
    return total / n * 1e6


def wasinn_hooks_us(n: int, folder: Path) -> dict[str, tuple[float, float]]:
    """Per hook: (µs in the guest's loop, µs hot inside one host call), and the loop's wall time
    per inference under the key ``"wall"``."""
    from peer_wasmtime import guest_wat  # type: ignore[import-not-found]

    import wasinn_backend_openvino.backend as backend
    from wasinn.cli.main import main as wasinn_main

    model_dir = folder / "affine"  # the directory name is the model name the guest loads
    model_dir.mkdir()
    affine_model(folder).rename(model_dir / "model.xml")
    (folder / "affine.bin").rename(model_dir / "model.bin")
    hooks = ("set_input", "compute", "get_output")
    originals = {hook: getattr(backend, hook) for hook in hooks}
    looped = {hook: [0.0, 0] for hook in hooks}
    hot: dict[str, float] = {}

    def timed(hook: str) -> Callable[..., object]:
        original = originals[hook]

        def hook_call(*args: object) -> object:
            started = time.perf_counter()
            result = original(*args)
            looped[hook][0] += time.perf_counter() - started
            looped[hook][1] += 1
            if looped[hook][1] == n // 2:  # once, mid-run: the same call repeated back to back
                started = time.perf_counter()
                for _ in range(2000):
                    original(*args)
                hot[hook] = (time.perf_counter() - started) / 2000 * 1e6
            return result

        return hook_call

    walls = {}
    for count in (0, n):
        guest = folder / f"affine-{count}.wat"
        guest.write_text(guest_wat("affine", (1, 4), 1, 16, 16, count))
        command = ["run", "-q", "--backend", "openvino", "--nn-graph", f"openvino::{model_dir}", str(guest)]
        if count:
            for hook in hooks:
                setattr(backend, hook, timed(hook))
        started = time.perf_counter()
        try:
            wasinn_main(command)
        except SystemExit:
            pass
        walls[count] = time.perf_counter() - started
        for hook in hooks:
            setattr(backend, hook, originals[hook])
    found = {hook: (looped[hook][0] / looped[hook][1] * 1e6, hot[hook]) for hook in hooks}
    found["wall"] = ((walls[n] - walls[0]) / n * 1e6, float("nan"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wasinn-ov-tiny-") as tmp:
        path = affine_model(Path(tmp))
        sides = {f"{kind} threads={threads or 'default'}": make(path, threads)
                 for kind, make in (("binding", binding_infer), ("c-api", c_api_infer)) for threads in (None, 1)}
        results: dict[tuple[str, float], list[float]] = {}
        for round_number in range(args.rounds):
            order = list(sides.items()) if round_number % 2 == 0 else list(sides.items())[::-1]
            for name, infer in order:
                for gap in (0.0, 40.0):
                    results.setdefault((name, gap), []).append(per_inference_us(infer, args.n, gap))
    print(f"{'infer call':<28}{'hot (µs)':>10}{'after 40 µs of Python (µs)':>30}")
    for name in sides:
        hot, gapped = (statistics.median(results[name, gap]) for gap in (0.0, 40.0))
        print(f"{name:<28}{hot:>10.1f}{gapped:>30.1f}")
    with tempfile.TemporaryDirectory(prefix="wasinn-ov-tiny-") as tmp:
        hooks = wasinn_hooks_us(args.n, Path(tmp))
    print(f"\nwasinn run, per inference: {hooks.pop('wall')[0]:.1f} µs (N={args.n})")
    print(f"{'openvino backend hook':<28}{'in the loop (µs)':>18}{'hot (µs)':>10}")
    for hook, (in_loop, hot) in hooks.items():
        print(f"{hook:<28}{in_loop:>18.1f}{hot:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
