"""Per-inference overhead of the onnx backend against a bare ``InferenceSession.run``.

    python packages/wasinn-backend-onnx/benchmarks/overhead.py [--rounds N]

For each model, four ways of running one inference, interleaved round by round so that a noisy
machine slows them alike (the median over rounds is printed):

* ``native``: ``session.run(None, {name: x})`` on a session with the backend's own options;
* ``binding``: the same session through an IO binding with a preallocated output (the floor);
* ``hooks``: the backend's ``set_input`` + ``compute`` + ``get_output`` called directly;
* ``host``: wasinn's ``StoreState`` API (core checks and dispatch + hooks, no wasm);
* ``guest``: nn-run (``--repeat``) through the real wasm ABI: ``set_input`` + ``compute`` per
  repeat (no ``get_output``: nn-run would rewrite a file through WASI each time); per-inference
  cost from the difference of two repeat counts, so that instantiation and model load cancel out.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import wasmtime

import wasinn
from wasinn import Tensor

REPO = Path(__file__).resolve().parents[3]
LIGHT = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"
MODELS = {
    "digits": (REPO / "demo" / "models" / "digits.onnx", 2000),
    "squeezenet": (LIGHT / "light_squeezenet.onnx", 30),
    "resnet50": (LIGHT / "light_resnet50.onnx", 5),
}
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"


def timed(fn: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def guest_seconds(host: wasinn.WasiNnHost, engine: wasmtime.Engine, module: wasmtime.Module, workdir: Path,
                  shape: tuple[int, ...], repeat: int) -> float:
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    host.add_to_linker(linker)
    store = host.new_store(engine)
    wasi = wasmtime.WasiConfig()
    # No --output: nn-run would rewrite the output file through WASI on every repeat, which costs
    # more than the inference of a small model. The output copy is measured by "host".
    wasi.argv = ["nn-run", "--load-by-name", "m", "--input", "0", "1", "x".join(map(str, shape)), "/d/in.bin",
                 "--repeat", str(repeat)]
    wasi.preopen_dir(str(workdir), "/d")
    store.set_wasi(wasi)
    instance = host.instantiate(store, linker, module)
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    started = time.perf_counter()
    try:
        start(store)
    except wasmtime.ExitTrap as exit_trap:
        assert exit_trap.code == 0, exit_trap.code
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def bench(name: str, path: Path, calls: int, rounds: int) -> dict[str, float]:
    host = wasinn.WasiNnHost(backend="onnx")
    host.register_model("m", path)
    state = host.new_state()
    graph_handle = state.load_by_name("m")
    context_handle = state.init_execution_context(graph_handle)
    entry = state.context(context_handle)
    graph = entry.loaded.graph
    spec = graph.inputs[0]
    shape = tuple(d or 1 for d in spec.shape or ())
    x = (np.arange(int(np.prod(shape))).reshape(shape) / np.prod(shape)).astype(np.float32)
    tensor = Tensor.from_numpy(x)
    hooks = entry.loaded.backend.hooks
    context = entry.context

    config = graph.state.config
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_num_threads
    options.inter_op_num_threads = config.inter_op_num_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.allow_spinning else "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {spec.name: x}

    def native() -> None:
        session.run(None, feed)

    binding = session.io_binding()
    binding.bind_cpu_input(spec.name, x)
    out_spec = session.get_outputs()[0]
    out = np.empty([d if isinstance(d, int) else 1 for d in out_spec.shape], np.float32)
    binding.bind_output(out_spec.name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)

    def native_binding() -> None:
        session.run_with_iobinding(binding)

    def via_hooks() -> None:
        hooks["set_input"](context, 0, tensor)
        hooks["compute"](context)
        hooks["get_output"](context, 0)

    def set_input_only() -> None:
        hooks["set_input"](context, 0, tensor)

    def via_host() -> None:
        state.set_input(context_handle, 0, tensor)
        state.compute(context_handle)
        state.get_output(context_handle, 0)

    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, str(NN_RUN))
    results: dict[str, list[float]] = {"native": [], "binding": [], "hooks": [], "host": [], "guest": [],
                                       "set_input": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        x.astype("<f4").tofile(workdir / "in.bin")
        for fn in (native, native_binding, via_hooks, via_host):  # warm-up: first runs plan memory, start threads
            timed(fn, max(3, calls // 10))
        guest_seconds(host, engine, module, workdir, shape, 2)
        for _ in range(rounds):
            results["native"].append(timed(native, calls))
            results["binding"].append(timed(native_binding, calls))
            results["hooks"].append(timed(via_hooks, calls))
            results["host"].append(timed(via_host, calls))
            results["set_input"].append(timed(set_input_only, calls * 10))
            few = guest_seconds(host, engine, module, workdir, shape, 1)
            many = guest_seconds(host, engine, module, workdir, shape, 1 + calls)
            results["guest"].append((many - few) / calls)
    state.close()
    host.close()
    summary = {key: statistics.median(values) for key, values in results.items()}
    summary.update({f"min_{key}": min(values) for key, values in results.items()})
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, {wasinn.hardware.probe().cpu.cores} cores, median of {args.rounds} rounds")
    header = "".join(f"{column:>12}" for column in ("native", "binding", "hooks", "host", "guest"))
    print(f"{'model':<12}{header}   overhead vs native: hooks / host / guest")
    for name in args.models:
        path, calls = MODELS[name]
        r = bench(name, path, calls, args.rounds)
        cells = "".join(f"{r[k] * 1e6:>10.1f}us" for k in ("native", "binding", "hooks", "host", "guest"))
        deltas = " / ".join(f"{(r[k] - r['native']) * 1e6:+.1f}us" for k in ("hooks", "host", "guest"))
        print(f"{name:<12}{cells}   {deltas}")
        best = "".join(f"{r['min_' + k] * 1e6:>10.1f}us" for k in ("native", "binding", "hooks", "host", "guest"))
        print(f"{'  (best)':<12}{best}   set_input alone: {r['set_input'] * 1e6:.1f}us (median)")


if __name__ == "__main__":
    main()
