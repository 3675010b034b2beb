"""wasinn benchmarks: native runtime from Python vs the same inference through a wasm guest and wasinn.

    python benchmarks/run.py [--quick] [--out benchmarks/results.json] [--only SECTION,...]

Sections: ``infer`` (per backend and model, native and guest interleaved in one process),
``overhead`` (one wasinn host call vs empty host functions entered three ways, all looped inside wasm),
``import`` (``import wasinn`` + ``wasinn backends`` vs the bare imports, in subprocesses),
``load`` (first ``load`` vs cached ``load_by_name`` in a second store; OpenVINO's model cache in a
second process), ``memory`` (RSS of 1 vs 100 stores sharing one named model) and ``copy`` (bytes
copied per inference for a 100 MB input). See benchmarks/README.md and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

from wasinn.abi import entry
from wasinn.testing.models import third_party_model

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "models"
# committed in models/third-party, checked against its SOURCES.md
BIRDS = third_party_model("wasmedge-tflite-birds/lite-model_aiy_vision_classifier_birds_V1_3.tflite", __file__)
PAGE = 65536
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
I32 = wasmtime.ValType.i32()

# Scratch addresses in the guest's first page; tensors live from the second page on.
A_OUT, A_WRITTEN, A_DIMS, A_RECORD, A_NAME, A_CONFIG = 0x10, 0x14, 0x40, 0x100, 0x200, 0x400


# -- statistics ---------------------------------------------------------------------------------------
def summary(samples: list[float]) -> dict[str, float]:
    """Median, p10, p90 (and n) of per-inference seconds, reported in milliseconds."""
    a = np.asarray(samples) * 1000
    return {"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)),
            "p90_ms": float(np.percentile(a, 90)), "n": len(samples)}


# -- the benchmark guest ------------------------------------------------------------------------------
def _loop(name: str, params: list[str], body: str) -> str:
    """An exported ``name(params..., n) -> errno`` that runs ``body`` (an i32 errno expression) n times."""
    decl = " ".join(f"(param ${p} i32)" for p in params)
    return (f'  (func (export "{name}") {decl} (param $n i32) (result i32) (local $e i32)\n'
            f"    (block $done (loop $next\n"
            f"      (br_if $done (i32.eqz (local.get $n)))\n"
            f"{body}"
            f"      (local.set $n (i32.sub (local.get $n) (i32.const 1)))\n"
            f"      (br $next)))\n"
            f"    (local.get $e))")


def _step(call: str) -> str:
    return f"      (local.set $e {call})\n      (br_if $done (local.get $e))\n"


def bench_wat() -> str:
    """The benchmark guest: wasi-nn imports, ``load``/``init`` trampolines and in-wasm loops."""
    imports = {"load_by_name_with_config": 5, "init_execution_context": 2, "set_input": 3, "compute": 1,
               "get_output": 5, "unload": 1}
    lines = ["(module"]
    for name, arity in imports.items():
        lines.append(f'  (import "wasi_ephemeral_nn" "{name}" (func ${name} (param{" i32" * arity}) (result i32)))')
    # The native runtime called from a bare wasmtime-py host function (no wasinn): the control for what
    # running inside a host call costs any Python host.
    lines.append('  (import "bench" "native" (func $native (param i32) (result i32)))')
    # Empty host functions with the signatures of compute, set_input and get_output, entered three ways
    # (see make_linker): the floors that wasinn's calls are compared with.
    for family in EMPTY_FAMILIES:
        for arity in (1, 3, 5):
            lines.append(f'  (import "bench" "{family}{arity}" (func ${family}{arity} (param{" i32" * arity}) '
                         '(result i32)))')
    lines.append('  (memory (export "memory") 2)')
    for export, name, arity in (("load", "load_by_name_with_config", 5), ("init", "init_execution_context", 2)):
        params = " ".join(f"(param ${i} i32)" for i in range(arity))
        args = " ".join(f"(local.get ${i})" for i in range(arity))
        lines.append(f'  (func (export "{export}") {params} (result i32) (call ${name} {args}))')
    set_input = "(call $set_input (local.get $ctx) (i32.const 0) (local.get $rec))"
    compute = "(call $compute (local.get $ctx))"
    get_output = ("(call $get_output (local.get $ctx) (i32.const 0) (local.get $out) (local.get $max) "
                  "(local.get $written))")
    lines.append(_loop("bench", ["ctx", "rec", "out", "max", "written"],
                       _step(set_input) + _step(compute) + _step(get_output)))
    lines.append(_loop("loop_set_input", ["ctx", "rec"], _step(set_input)))
    lines.append(_loop("loop_compute", ["ctx"], _step(compute)))
    lines.append(_loop("loop_get_output", ["ctx", "out", "max", "written"], _step(get_output)))
    # The empty host functions answer errno 0 always, so their loops run to the end.
    for family in EMPTY_FAMILIES:
        lines.append(_loop(f"loop_{family}1", [], _step(f"(call ${family}1 (local.get $n))")))
        lines.append(_loop(f"loop_{family}3", ["a"], _step(f"(call ${family}3 (local.get $a) (i32.const 0) "
                                                            "(local.get $n))")))
        lines.append(_loop(f"loop_{family}5", ["a"], _step(f"(call ${family}5 (local.get $a) (i32.const 0) "
                                                            "(local.get $n) (i32.const 16) (i32.const 0))")))
    lines.append(_loop("loop_native", [], _step("(call $native (local.get $n))")))
    # unload of an invalid handle: errno != 0, so loop without stopping on it.
    lines.append(_loop("loop_unload_invalid", [], "      (local.set $e (call $unload (i32.const -1)))\n"))
    lines.append(")")
    return "\n".join(lines)


class BenchGuest:
    """One instance of the benchmark guest in its own store of ``host``."""

    def __init__(self, host: Any, engine: wasmtime.Engine, linker: wasmtime.Linker, module: wasmtime.Module) -> None:
        self.store = host.new_store(engine)
        self.instance = host.instantiate(self.store, linker, module)
        exports = self.instance.exports(self.store)
        self.memory: wasmtime.Memory = exports["memory"]  # type: ignore[assignment]
        names = ["load", "init", "bench", "loop_set_input", "loop_compute", "loop_get_output", "loop_native",
                 "loop_unload_invalid"] + [f"loop_{family}{arity}" for family in EMPTY_FAMILIES for arity in (1, 3, 5)]
        self.f = {name: exports[name] for name in names}
        self.rec = self.out = self.max = 0

    def u32(self, ptr: int) -> int:
        return int.from_bytes(self.memory.read(self.store, ptr, ptr + 4), "little")

    def load_by_name(self, name: str, config: dict[str, Any] | None = None) -> int:
        raw, cfg = name.encode(), json.dumps(config or {}).encode()
        self.memory.write(self.store, raw, A_NAME)
        self.memory.write(self.store, cfg, A_CONFIG)
        errno = self.f["load"](self.store, A_NAME, len(raw), A_CONFIG, len(cfg), A_OUT)
        if errno:
            raise RuntimeError(f"load_by_name_with_config({name!r}) errno {errno}")
        return self.u32(A_OUT)

    def init(self, graph: int) -> int:
        errno = self.f["init"](self.store, graph, A_OUT)
        if errno:
            raise RuntimeError(f"init_execution_context errno {errno}")
        return self.u32(A_OUT)

    def place(self, x: np.ndarray, out_bytes: int, type_number: int) -> None:
        """Write the tensor record and data into guest memory; reserve the output buffer."""
        data = np.ascontiguousarray(x)
        data_ptr = PAGE
        self.out = (data_ptr + data.nbytes + 63) // 64 * 64
        self.max = out_bytes
        need = self.out + out_bytes
        size = self.memory.data_len(self.store)
        if need > size:
            self.memory.grow(self.store, (need - size + PAGE - 1) // PAGE)
        dims = np.asarray(data.shape, "<u4").tobytes()
        self.memory.write(self.store, dims, A_DIMS)
        record = (np.array([A_DIMS, data.ndim], "<u4").tobytes() + bytes([type_number, 0, 0, 0])
                  + np.array([data_ptr, data.nbytes], "<u4").tobytes())
        self.memory.write(self.store, record, A_RECORD)
        view = np.frombuffer(self.memory.get_buffer_ptr(self.store, data.nbytes, data_ptr), np.uint8)
        view[:] = data.view(np.uint8).reshape(-1)
        self.rec = A_RECORD

    def output(self, dtype: Any) -> np.ndarray:
        n = self.u32(A_WRITTEN)
        return np.frombuffer(bytes(self.memory.read(self.store, self.out, self.out + n)), dtype).copy()

    def bench(self, ctx: int, n: int) -> None:
        errno = self.f["bench"](self.store, ctx, self.rec, self.out, self.max, A_WRITTEN, n)
        if errno:
            raise RuntimeError(f"bench errno {errno}")


#: What the guest's ``bench.native`` import runs: the current model's native inference.
NATIVE_IN_WASM: dict[str, Callable[[], Any]] = {"run": lambda: None}


def _native_in_wasm(caller: wasmtime.Caller, n: int) -> int:
    NATIVE_IN_WASM["run"]()
    return 0


def make_linker(host: Any, engine: wasmtime.Engine) -> wasmtime.Linker:
    linker = wasmtime.Linker(engine)
    host.add_to_linker(linker)
    linker.define_func("bench", "native", wasmtime.FuncType([I32], [I32]), _native_in_wasm, access_caller=True)
    for arity in (1, 3, 5):
        # through wasinn's own trampoline (wasinn.abi.entry), as every wasi-nn import is
        entry.define(linker, "bench", f"empty{arity}", arity, lambda call, *args: 0)
        # through wasmtime-py's Linker.define_func (its Python trampoline converts every parameter)
        linker.define_func("bench", f"pyfunc{arity}", wasmtime.FuncType([I32] * arity, [I32]),
                           lambda caller, *args: 0, access_caller=True)
        # the least a Python host function can be: a bare ctypes callback that writes errno 0
        _define_bare(linker, f"bare{arity}", arity)
    return linker


#: empty host functions: wasinn's trampoline, wasmtime-py's Func trampoline, a bare ctypes callback
EMPTY_FAMILIES = ("empty", "pyfunc", "bare")
_BARE_CALLBACKS: list[Any] = []  # kept alive as long as the process: linkers hold raw pointers to them


def _define_bare(linker: wasmtime.Linker, name: str, arity: int) -> None:
    import ctypes

    from wasmtime import _ffi as ffi

    def bare(env: int | None, caller: int, slots: int, count: int) -> int:
        ctypes.c_int32.from_address(slots).value = 0
        return 0

    void = ctypes.c_void_p
    callback = ctypes.CFUNCTYPE(ctypes.c_size_t, void, void, void, ctypes.c_size_t)(bare)
    _BARE_CALLBACKS.append(callback)
    define = ffi.dll["wasmtime_linker_define_func_unchecked"]
    define.restype = void
    define.argtypes = [void, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, void, void, void, void]
    ty = wasmtime.FuncType([I32] * arity, [I32])
    error = define(ctypes.cast(linker.ptr(), void), b"bench", 5, name.encode(), len(name), ctypes.cast(ty.ptr(), void),
                   ctypes.cast(callback, void), None, None)
    assert not error, f"defining bench::{name} failed"


TYPE_NUMBER = {np.dtype(np.float16): 0, np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.uint8): 3,
               np.dtype(np.int32): 4, np.dtype(np.int64): 5}


# -- models -------------------------------------------------------------------------------------------
def affine_onnx(path: Path, n: int = 4) -> Path:
    """y = 2x + 1 over f32[1, n] (Mul then Add), made with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])]
    inits = [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
             helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    graph = helper.make_graph(nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def resnet50_path() -> Path:
    import onnx
    return Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx"


def arange_input(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    n = int(np.prod(shape))
    if np.dtype(dtype) == np.uint8:
        return (np.arange(n) % 256).astype(np.uint8).reshape(shape)
    return (np.arange(n).reshape(shape) / n).astype(dtype)


# -- native runners (the same thread settings the wasinn backends are given) --------------------------
def ort_config() -> dict[str, Any]:
    # Spinning stated on both sides: ORT spins by default, wasinn's backend does not, and a session that
    # spins after its batch steals the cores from the other side's next batch.
    return {"intra_op_num_threads": THREADS, "inter_op_num_threads": 1, "execution_mode": "sequential",
            "graph_optimization_level": "all", "allow_spinning": False}


def ov_config(cache_dir: str = "") -> dict[str, Any]:
    return {"device": "CPU", "num_threads": THREADS, "performance_hint": "LATENCY", "num_streams": 1,
            "precision": "f32", "cache_dir": cache_dir}


def tflite_config() -> dict[str, Any]:
    return {"num_threads": THREADS}


BACKEND_CONFIG: dict[str, Callable[[], dict[str, Any]]] = {"onnx": ort_config, "openvino": ov_config,
                                                            "tflite": tflite_config}


def native_onnx(paths: list[Path]) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...], Any]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = THREADS, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as ort_config() gives wasinn
    sess = ort.InferenceSession(str(paths[0]), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}[inp.type]
    name = inp.name
    return (lambda x: sess.run(None, {name: x})[0]), tuple(inp.shape), dtype


def native_openvino(paths: list[Path]) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...], Any]:
    import openvino as ov
    core = ov.Core()
    compiled = core.compile_model(str(paths[0]), "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": THREADS, "NUM_STREAMS": "1",
        "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    port = compiled.input(0)
    dtype = port.get_element_type().to_dtype()

    def run(x: np.ndarray) -> np.ndarray:
        return req.infer({0: x}, share_inputs=True, share_outputs=True)[0]
    return run, tuple(port.get_shape()), dtype


def native_tflite(paths: list[Path]) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...], Any]:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(paths[0]), num_threads=THREADS)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        it.set_tensor(i["index"], x)
        it.invoke()
        return it.get_tensor(o["index"])
    return run, tuple(int(d) for d in i["shape"]), i["dtype"]


def native_pytorch(paths: list[Path]) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...], Any]:
    import torch
    torch.set_num_threads(THREADS)  # as pytorch_config() gives wasinn
    module = torch.jit.load(str(paths[0]), map_location="cpu").eval()
    shape = (1, 3, 224, 224) if paths[0].name.startswith("resnet") else (1, 4)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()
    return run, shape, np.float32


def pytorch_config() -> dict[str, Any]:
    return {"num_threads": THREADS}


NATIVE = {"onnx": native_onnx, "openvino": native_openvino, "tflite": native_tflite, "pytorch": native_pytorch}
BACKEND_CONFIG["pytorch"] = pytorch_config


def available_backends() -> list[str]:
    import wasinn
    host = wasinn.WasiNnHost()
    return [b.name for b in host.backends if b.available and b.name in NATIVE]


# -- section: inference ---------------------------------------------------------------------------------
def calibrate(fn: Callable[[int], None], target_s: float) -> int:
    """Batch size so one batch takes about ``target_s``."""
    k = 1
    while True:
        t = time.perf_counter()
        fn(k)
        dt = time.perf_counter() - t
        if dt >= target_s / 4 or k >= 1 << 16:
            return max(1, int(k * target_s / max(dt, 1e-9)))
        k *= 4


def bench_inference(quick: bool, workdir: Path, backends: list[str]) -> list[dict[str, Any]]:
    import wasinn
    models: list[tuple[str, str, list[Path], str]] = []  # (model, backend, files, class)
    affine = affine_onnx(workdir / "affine.onnx")
    for b in ("onnx", "openvino"):
        models.append(("tiny affine f32[1,4]", b, [affine], "tiny"))
    models.append(("digits f32[1,64]", "onnx", [DEMO / "digits.onnx"], "small"))
    models.append(("digits f32[1,64]", "openvino", [DEMO / "digits.xml", DEMO / "digits.bin"], "small"))
    models.append(("digits f32[1,64]", "tflite", [DEMO / "digits.tflite"], "small"))
    models.append(("birds u8[1,224,224,3] (3.6 MB tflite)", "tflite", [BIRDS], "real"))
    models.append(("birds u8[1,224,224,3] (3.6 MB tflite)", "openvino", [BIRDS], "real"))
    models.append(("resnet50 (onnx light) f32[1,3,224,224]", "onnx", [resnet50_path()], "real"))
    models.append(("resnet50 (onnx light) f32[1,3,224,224]", "openvino", [resnet50_path()], "real"))
    if "pytorch" in backends:  # the models are made with torch itself
        import resnet_torch
        models.append(("tiny affine f32[1,4]", "pytorch", [resnet_torch.save_affine(workdir / "affine.pt")], "tiny"))
        models.append(("resnet18-shaped (random) f32[1,3,224,224]", "pytorch",
                       [resnet_torch.save_resnet18(workdir / "resnet18.pt")], "real"))

    host = wasinn.WasiNnHost()
    engine = wasmtime.Engine()
    linker = make_linker(host, engine)
    module = wasmtime.Module(engine, bench_wat())
    results = []
    for i, (label, backend, files, kind) in enumerate(models):
        row: dict[str, Any] = {"model": label, "backend": backend, "class": kind}
        results.append(row)
        if backend not in backends:
            row["skipped"] = f"backend {backend} not installed/available"
            print(f"  {backend:9} {label}: skipped ({row['skipped']})", flush=True)
            continue
        try:
            run, shape, dtype = NATIVE[backend](files)
            x = arange_input(shape, dtype)
            ref = np.asarray(run(x)).copy()
            name = f"m{i}"
            source = [str(f) for f in files] if len(files) > 1 else str(files[0])
            host.register_model(name, source, backend=backend, config=BACKEND_CONFIG[backend]())
            guest = BenchGuest(host, engine, linker, module)
            ctx = guest.init(guest.load_by_name(name))
            guest.place(x, ref.nbytes, TYPE_NUMBER[np.dtype(dtype)])
            guest.bench(ctx, 1)
            got = guest.output(ref.dtype).reshape(ref.shape)
            atol = 1 if ref.dtype == np.uint8 else 1e-4
            row["outputs_match"] = bool(np.allclose(got, ref, rtol=1e-3, atol=atol))
            row["max_abs_diff"] = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        except Exception as exc:  # a backend that cannot take this model: say so, go on
            row["skipped"] = f"{type(exc).__name__}: {exc}"
            print(f"  {backend:9} {label}: skipped ({row['skipped']})", flush=True)
            continue

        def native(k: int, run: Callable[[np.ndarray], np.ndarray] = run, x: np.ndarray = x) -> None:
            for _ in range(k):
                run(x)

        def wasm(k: int, guest: BenchGuest = guest, ctx: int = ctx) -> None:
            guest.bench(ctx, k)

        def native_in_wasm(k: int, guest: BenchGuest = guest) -> None:
            guest.f["loop_native"](guest.store, k)

        NATIVE_IN_WASM["run"] = lambda run=run, x=x: run(x)
        # The same wasinn backend through the embedder API (StoreState, no wasm): wasinn's own code.
        embedder = host.new_state()
        e_ctx = embedder.init_execution_context(embedder.load_by_name(name))
        e_tensor = wasinn.Tensor.from_numpy(x)

        def embedded(k: int, state: Any = embedder, ctx: int = e_ctx, tensor: Any = e_tensor) -> None:
            for _ in range(k):
                state.set_input(ctx, 0, tensor)
                state.compute(ctx)
                state.get_output(ctx, 0)

        batch_s = 0.005 if quick else 0.05
        budget = 0.4 if quick else (8.0 if kind == "real" else 4.0)
        for _ in range(2 if quick else 5):  # warm-up
            native(1)
            wasm(1)
        k = max(1, min(calibrate(native, batch_s), calibrate(wasm, batch_s)))
        nat, gst, ctl, emb, paired = [], [], [], [], []
        deadline = time.perf_counter() + budget
        rounds = 0
        while rounds < (2 if quick else 5) or (time.perf_counter() < deadline and rounds < 400):
            order = (native, wasm, native_in_wasm, embedded)
            order = order if rounds % 2 == 0 else order[::-1]  # alternate who goes first
            times = {}
            for fn in order:
                t = time.perf_counter()
                fn(k)
                times[fn] = (time.perf_counter() - t) / k
            nat.append(times[native])
            gst.append(times[wasm])
            ctl.append(times[native_in_wasm])
            emb.append(times[embedded])
            paired.append(times[wasm] / times[native])
            rounds += 1
        row.update(batch=k, rounds=rounds, native=summary(nat), wasinn=summary(gst), native_in_host_call=summary(ctl),
                   embedder_api=summary(emb))
        row["ratio"] = row["wasinn"]["median_ms"] / row["native"]["median_ms"]
        # wasinn against the same native call made from a bare host function: wasinn's own share.
        row["ratio_to_native_in_host_call"] = row["wasinn"]["median_ms"] / row["native_in_host_call"]["median_ms"]
        row["embedder_ratio"] = row["embedder_api"]["median_ms"] / row["native"]["median_ms"]
        row["paired_ratio_median"] = float(np.median(paired))
        row["paired_ratio_p10_p90"] = [float(np.percentile(paired, 10)), float(np.percentile(paired, 90))]
        row["overhead_us"] = (row["wasinn"]["median_ms"] - row["native"]["median_ms"]) * 1000
        print(f"  {backend:9} {label}: native {row['native']['median_ms']:.4f} ms, wasinn "
              f"{row['wasinn']['median_ms']:.4f} ms, ratio {row['ratio']:.3f} "
              f"(paired {row['paired_ratio_median']:.3f}); native from a bare host call "
              f"{row['native_in_host_call']['median_ms']:.4f} ms, wasinn/that "
              f"{row['ratio_to_native_in_host_call']:.3f}; embedder API {row['embedder_api']['median_ms']:.4f} ms "
              f"({row['embedder_ratio']:.3f}), match={row['outputs_match']}", flush=True)
        guest.store.close()
        embedder.close()
    host.close()
    return results


# -- section: per-call overhead -------------------------------------------------------------------------
def noop_plugin() -> object:
    from wasinn.hookspecs import BackendInfo, Context, Graph, ModelFormat, Score, TensorSpec, TensorType, hookimpl

    out = np.zeros((1, 4), np.float32)

    class Noop:
        @hookimpl
        def backend_info(self) -> BackendInfo:
            return BackendInfo(runtime="none", runtime_version=None, formats=(ModelFormat.ONNX,))

        @hookimpl
        def can_handle(self, model: Any, hw: Any) -> Score:
            return Score(1, "benchmark no-op")

        @hookimpl
        def load(self, model: Any, hw: Any) -> Graph:
            return Graph(inputs=[TensorSpec("x", TensorType.F32, (1, 4))],
                         outputs=[TensorSpec("y", TensorType.F32, (1, 4))])

        @hookimpl
        def init_execution_context(self, graph: Graph) -> Context:
            return Context(graph=graph)

        @hookimpl
        def set_input(self, context: Context, index: int, tensor: Any) -> None:
            return None

        @hookimpl
        def compute(self, context: Context) -> None:
            return None

        @hookimpl
        def get_output(self, context: Context, index: int) -> np.ndarray:
            return out

    return Noop()


def bench_overhead(quick: bool, workdir: Path) -> dict[str, Any]:
    import wasinn
    affine = affine_onnx(workdir / "affine_noop.onnx")
    host = wasinn.WasiNnHost(backends={"noop": noop_plugin()}, entry_points=False)
    host.register_model("noop", str(affine), backend="noop")
    engine = wasmtime.Engine()
    linker = make_linker(host, engine)
    guest = BenchGuest(host, engine, linker, wasmtime.Module(engine, bench_wat()))
    ctx = guest.init(guest.load_by_name("noop"))
    guest.place(np.ones((1, 4), np.float32), 16, 1)
    guest.bench(ctx, 1)
    logging.getLogger("wasinn").setLevel(logging.CRITICAL)  # the invalid unload logs a warning per call
    n = 2000 if quick else 20000
    reps = 3 if quick else 9
    # name -> (loop, the empty host function of the same signature it is compared with)
    floors = {"empty": "empty, wasinn's trampoline", "pyfunc": "empty, wasmtime-py Func", "bare": "empty, bare ctypes"}
    calls: dict[str, tuple[Callable[[], Any], str]] = {}
    for family, label in floors.items():
        for arity in (1, 3, 5):
            name = f"{label}, {arity} param{'s' if arity > 1 else ''}"
            loop = guest.f[f"loop_{family}{arity}"]
            args = () if arity == 1 else (ctx,)
            calls[name] = ((lambda loop=loop, args=args: loop(guest.store, *args, n)), name)
    same = {arity: f"empty, wasinn's trampoline, {arity} param{'s' if arity > 1 else ''}" for arity in (1, 3, 5)}
    calls.update({
        "compute (no-op backend)": (lambda: guest.f["loop_compute"](guest.store, ctx, n), same[1]),
        "set_input 16 B (no-op backend)": (lambda: guest.f["loop_set_input"](guest.store, ctx, guest.rec, n), same[3]),
        "get_output 16 B (no-op backend)": (lambda: guest.f["loop_get_output"](guest.store, ctx, guest.out, 16,
                                                                               A_WRITTEN, n), same[5]),
        "unload(invalid handle), log level CRITICAL": (lambda: guest.f["loop_unload_invalid"](guest.store, n),
                                                       same[1]),
    })
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(reps):  # interleaved
        for name, (fn, _floor) in calls.items():
            t = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t) / n * 1e6)
    logging.getLogger("wasinn").setLevel(logging.NOTSET)
    out: dict[str, Any] = {"calls_per_batch": n, "batches": reps, "trampoline": entry.MODE, "per_call_us": {}}
    bare = {arity: statistics.median(samples[f"empty, bare ctypes, {arity} param{'s' if arity > 1 else ''}"])
            for arity in (1, 3, 5)}
    for name, values in samples.items():
        med = statistics.median(values)
        floor = statistics.median(samples[calls[name][1]])
        arity = next(a for a in (5, 3, 1) if same[a] == calls[name][1] or f"{a} param" in name)
        out["per_call_us"][name] = {"median": med, "min": min(values), "max": max(values),
                                    "floor": calls[name][1], "ratio_to_same_signature": med / floor,
                                    "ratio_to_bare_ctypes": med / bare[arity], "added_us": med - floor}
        print(f"  {name}: {med:.2f} µs/call, {med / floor:.2f}x wasinn's empty call of its signature "
              f"(+{med - floor:.2f} µs), {med / bare[arity]:.2f}x a bare ctypes callback", flush=True)
    guest.store.close()
    host.close()
    return out


# -- section: import time -------------------------------------------------------------------------------
def bench_import(quick: bool) -> dict[str, Any]:
    cases = {
        "python -c pass": "pass",
        "import wasmtime, numpy, pluggy": "import wasmtime, numpy, pluggy",
        "import wasinn": "import wasinn",
        "import wasinn + list backends": ("import wasinn\nfrom wasinn.plugins import discover\n"
                                          "r = discover()\n[b.to_dict() for b in r]"),
        "wasinn backends (CLI main)": ("import sys, io, contextlib\nfrom wasinn.cli.main import main\n"
                                       "sys.argv = ['wasinn', 'backends']\n"
                                       "with contextlib.redirect_stdout(io.StringIO()):\n"
                                       "    try:\n        main()\n    except SystemExit:\n        pass"),
    }
    runs = 3 if quick else 11
    samples: dict[str, list[float]] = {k: [] for k in cases}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for _ in range(runs):
        for name, code in cases.items():
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL)
            samples[name].append((time.perf_counter() - t) * 1000)
    out: dict[str, Any] = {name: {"best_ms": min(v), "median_ms": statistics.median(v), "runs": runs}
                           for name, v in samples.items()}
    base = out["import wasmtime, numpy, pluggy"]
    for name in ("import wasinn", "import wasinn + list backends", "wasinn backends (CLI main)"):
        out[name]["ratio_best"] = out[name]["best_ms"] / base["best_ms"]
        out[name]["ratio_median"] = out[name]["median_ms"] / base["median_ms"]
    for name, v in out.items():
        extra = f", {v['ratio_best']:.2f}x best / {v['ratio_median']:.2f}x median" if "ratio_best" in v else ""
        print(f"  {name}: best {v['best_ms']:.0f} ms, median {v['median_ms']:.0f} ms{extra}", flush=True)
    return out


# -- section: load vs cached load_by_name ------------------------------------------------------------------
LOAD_CHILD = """
import json, sys, time
sys.path.insert(0, {bench_dir!r})
import run as b, wasinn, wasmtime
host = wasinn.WasiNnHost()
host.register_model("m", {path!r}, backend="openvino", config=b.ov_config({cache!r}))
engine = wasmtime.Engine(); linker = b.make_linker(host, engine)
g = b.BenchGuest(host, engine, linker, wasmtime.Module(engine, b.bench_wat()))
t = time.perf_counter(); g.load_by_name("m"); dt = time.perf_counter() - t
print(json.dumps({{"first_load_by_name_ms": dt * 1000}}))
"""


def bench_load(quick: bool, workdir: Path, backends: list[str]) -> dict[str, Any]:
    import wasinn
    out: dict[str, Any] = {}
    cases = [("onnx", resnet50_path()), ("openvino", resnet50_path()), ("tflite", BIRDS), ("openvino", BIRDS)]
    for backend, path in cases:
        if backend not in backends:
            continue
        host = wasinn.WasiNnHost()
        host.register_model("m", str(path), backend=backend, config=BACKEND_CONFIG[backend]())
        engine = wasmtime.Engine()
        linker = make_linker(host, engine)
        module = wasmtime.Module(engine, bench_wat())
        g1, g2 = BenchGuest(host, engine, linker, module), BenchGuest(host, engine, linker, module)
        t = time.perf_counter()
        g1.load_by_name("m")
        first = time.perf_counter() - t
        cached = []
        for _ in range(5 if quick else 50):
            t = time.perf_counter()
            g2.load_by_name("m")
            cached.append(time.perf_counter() - t)
        key = f"{backend} {path.name}"
        out[key] = {"first_load_ms": first * 1000, "cached_load_by_name_ms": statistics.median(cached) * 1000,
                    "speedup": first / statistics.median(cached)}
        print(f"  {key}: first {first * 1000:.1f} ms, cached load_by_name {statistics.median(cached) * 1e6:.0f} µs, "
              f"{out[key]['speedup']:.0f}x", flush=True)
        g1.store.close()
        g2.store.close()
        host.close()
    if "openvino" in backends and not quick:
        cache = tempfile.mkdtemp(prefix="wasinn-ov-cache-", dir=workdir)
        for path in [resnet50_path(), BIRDS]:
            times = {}
            for label, cache_dir in (("no cache", ""), ("cold cache (writes it)", cache), ("warm cache", cache)):
                code = LOAD_CHILD.format(bench_dir=str(Path(__file__).parent), path=str(path), cache=cache_dir)
                res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                times[label] = json.loads(res.stdout.strip().splitlines()[-1])["first_load_by_name_ms"]
            key = f"openvino {path.name}, fresh process"
            times["speedup_warm_vs_no_cache"] = times["no cache"] / times["warm cache"]
            out[key] = times
            print(f"  {key}: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()), flush=True)
    return out


# -- section: memory of many stores ------------------------------------------------------------------------
MEMORY_CHILD = """
import json, sys
sys.path.insert(0, {bench_dir!r})
import numpy as np
import run as b, wasinn, wasmtime
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
host = wasinn.WasiNnHost()
host.register_model("m", {path!r}, backend={backend!r}, config=b.BACKEND_CONFIG[{backend!r}]())
engine = wasmtime.Engine(); linker = b.make_linker(host, engine); module = wasmtime.Module(engine, b.bench_wat())
g0 = b.BenchGuest(host, engine, linker, module)
r0 = rss()
guests = [g0]
contexts = [g0.init(g0.load_by_name("m"))]
r1 = rss()
for _ in range(99):
    g = b.BenchGuest(host, engine, linker, module)
    contexts.append(g.init(g.load_by_name("m")))
    guests.append(g)
r100 = rss()
# Then one inference in every store, each context keeping its inputs and outputs as wasi-nn requires.
graph = host.state(g0.store).context(contexts[0]).loaded.graph
x = np.ones(graph.inputs[0].shape, graph.inputs[0].dtype.numpy_dtype)
out_bytes = int(np.prod(graph.outputs[0].shape)) * graph.outputs[0].dtype.itemsize
g0.place(x, out_bytes, b.TYPE_NUMBER[x.dtype]); g0.bench(contexts[0], 1)
r1_infer = rss()
for g, ctx in zip(guests[1:], contexts[1:]):
    g.place(x, out_bytes, b.TYPE_NUMBER[x.dtype]); g.bench(ctx, 1)
r100_infer = rss()
print(json.dumps({{"rss_before_mb": r0 / 1e6, "rss_1_store_mb": r1 / 1e6, "rss_100_stores_mb": r100 / 1e6,
                  "rss_1_store_after_inference_mb": r1_infer / 1e6,
                  "rss_100_stores_after_inference_mb": r100_infer / 1e6,
                  "input_bytes": x.nbytes, "output_bytes": out_bytes, "model_file_mb": {size} / 1e6}}))
"""


def bench_memory(quick: bool, backends: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases = [("onnx", resnet50_path()), ("openvino", resnet50_path()), ("tflite", BIRDS), ("openvino", BIRDS)]
    cases = [c for c in cases if c[0] in backends][:1 if quick else None]
    for backend, path in cases:
        code = MEMORY_CHILD.format(bench_dir=str(Path(__file__).parent), path=str(path), backend=backend,
                                   size=path.stat().st_size)
        res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r["one_model_mb"] = r["rss_1_store_mb"] - r["rss_before_mb"]
        r["extra_99_stores_mb"] = r["rss_100_stores_mb"] - r["rss_1_store_mb"]
        r["extra_over_one_model"] = r["extra_99_stores_mb"] / r["one_model_mb"] if r["one_model_mb"] > 0 else None
        r["extra_99_stores_after_inference_mb"] = (r["rss_100_stores_after_inference_mb"]
                                                   - r["rss_1_store_after_inference_mb"])
        key = f"{backend} {path.name}"
        out[key] = r
        print(f"  {key}: one model +{r['one_model_mb']:.1f} MB RSS, 99 more stores +{r['extra_99_stores_mb']:.1f} MB;"
              f" after one inference in each: +{r['extra_99_stores_after_inference_mb']:.1f} MB "
              f"(inputs {r['input_bytes'] / 1e6:.2f} MB a context)", flush=True)
    return out


# -- section: bytes copied per inference for a large input ---------------------------------------------
def bench_copy(quick: bool, workdir: Path, backends: list[str]) -> dict[str, Any]:
    if "onnx" not in backends:
        return {"skipped": "onnx backend not available"}
    import wasinn
    n = (10 if quick else 100) * 1000 * 1000 // 4
    path = affine_onnx(workdir / "big_affine.onnx", n)
    host = wasinn.WasiNnHost()
    host.register_model("big", str(path), backend="onnx", config=ort_config())
    engine = wasmtime.Engine()
    guest = BenchGuest(host, engine, make_linker(host, engine), wasmtime.Module(engine, bench_wat()))
    ctx = guest.init(guest.load_by_name("big"))
    x = np.ones((1, n), np.float32)
    guest.place(x, x.nbytes, 1)
    del x
    guest.bench(ctx, 1)  # warm: the backend's input buffer exists from now on
    out: dict[str, Any] = {"input_bytes": n * 4}
    steps = {
        "set_input": lambda: guest.f["loop_set_input"](guest.store, ctx, guest.rec, 1),
        "compute": lambda: guest.f["loop_compute"](guest.store, ctx, 1),
        "get_output": lambda: guest.f["loop_get_output"](guest.store, ctx, guest.out, guest.max, A_WRITTEN, 1),
    }
    for name, fn in steps.items():
        times, peaks = [], []
        for _ in range(2 if quick else 5):
            tracemalloc.start()
            t = time.perf_counter()
            errno = fn()
            times.append(time.perf_counter() - t)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            assert errno == 0, f"{name} errno {errno}"
        ms = statistics.median(times) * 1000
        out[name] = {"median_ms": ms, "tracemalloc_peak_bytes": max(peaks),
                     "GB_per_s_if_one_copy": n * 4 / (ms / 1000) / 1e9}
        print(f"  {name}: {ms:.1f} ms, tracemalloc peak {max(peaks) / 1e6:.1f} MB "
              f"({out[name]['GB_per_s_if_one_copy']:.1f} GB/s for one {n * 4 / 1e6:.0f} MB copy)", flush=True)
    t = time.perf_counter()
    np.ones((1, n), np.float32).copy()
    out["reference_numpy_alloc_fill_copy_ms"] = (time.perf_counter() - t) * 1000
    guest.store.close()
    host.close()
    return out


# -- main -----------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for dist in ("wasmtime", "numpy", "pluggy", "onnxruntime", "openvino", "ai-edge-litert", "onnx", "wasinn-core",
                 "wasinn-backend-onnx", "wasinn-backend-openvino", "wasinn-backend-tflite"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores_available": THREADS, "platform": platform.platform(),
            "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9}


SECTIONS = ("overhead", "infer", "import", "load", "memory", "copy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: seconds, not minutes; numbers are rough")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--backends", help="comma list: measure only these backends (default: every installed one)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    logging.basicConfig(level=logging.ERROR)
    backends = available_backends()
    if args.backends:
        backends = [b for b in backends if b in args.backends.split(",")]
    print(f"backends available: {', '.join(backends) or 'none'}; threads: {THREADS}", flush=True)
    results: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                               "mode": "quick" if args.quick else "full", "machine": machine(),
                               "versions": versions(), "threads": THREADS, "backends": backends}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wasinn-bench-") as tmp:
        work = Path(tmp)
        for section in only:
            print(f"[{section}]", flush=True)
            if section == "overhead":
                results["overhead"] = bench_overhead(args.quick, work)
            elif section == "infer":
                results["inference"] = bench_inference(args.quick, work, backends)
            elif section == "import":
                results["import"] = bench_import(args.quick)
            elif section == "load":
                results["load"] = bench_load(args.quick, work, backends)
            elif section == "memory":
                results["memory"] = bench_memory(args.quick, backends)
            elif section == "copy":
                results["copy"] = bench_copy(args.quick, work, backends)
            else:
                parser.error(f"unknown section {section}")
    results["wall_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} in {results['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
