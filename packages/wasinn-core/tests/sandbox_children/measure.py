"""Measure what wasinn.sandbox costs and which memory rlimit each runtime tolerates (not a test).

    python measure.py memory RUNTIME     # numpy | onnx | openvino | tflite | ggml
    python measure.py bomb RUNTIME       # what a hostile allocation does under RLIMIT_DATA
    python measure.py layers             # microseconds to apply each layer, in forked children
    python measure.py start [MODULE]     # fork-from-template vs spawn, for a process that imported MODULE

Run it with the interpreter of the runtime's tox env, sources first on PYTHONPATH. Prints JSON lines.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve()
BIRDS = HERE.parents[4] / "models/third-party/wasmedge-tflite-birds/lite-model_aiy_vision_classifier_birds_V1_3.tflite"


def status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmPeak", "VmSize", "VmHWM", "VmRSS", "VmData", "Threads"):
                out[key] = int(value.split()[0])
    return out


def workload(runtime: str, tmp: str) -> Callable[[], object]:
    """Import the runtime now (the template's part) and return a function that loads and runs a model
    (with ``$THREADS`` threads where the runtime takes a number, as on a machine with more cores)."""
    threads = int(os.environ.get("THREADS", "0"))
    if runtime == "numpy":
        import numpy as np

        def run_numpy() -> object:
            a = np.ones((512, 512), dtype=np.float32)
            return float((a @ a).sum())
        return run_numpy
    if runtime == "onnx":
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        w = numpy_helper.from_array(np.ones((256, 256), dtype=np.float32), "w")
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], [w])
        data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        onnx.checker.check_model(onnx.load_from_string(data))

        def run_onnx() -> object:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            return float(sess.run(None, {"x": np.ones((1, 256), dtype=np.float32)})[0].sum())
        return run_onnx
    if runtime == "openvino":
        import numpy as np
        import openvino as ov
        core = ov.Core()

        def run_openvino() -> object:
            config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
            compiled = core.compile_model(str(BIRDS), "CPU", config)
            shape = list(compiled.inputs[0].shape)
            return int(np.argmax(compiled(np.zeros(shape, dtype=np.uint8))[0]))
        return run_openvino
    if runtime == "tflite":
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        def run_tflite() -> object:
            it = Interpreter(model_path=str(BIRDS), num_threads=threads or None)
            it.allocate_tensors()
            inp = it.get_input_details()[0]
            it.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=inp["dtype"]))
            it.invoke()
            return int(np.argmax(it.get_tensor(it.get_output_details()[0]["index"])))
        return run_tflite
    if runtime == "ggml":
        from llama_cpp import Llama
        from wasinn_backend_ggml.testing import write_tiny_llama
        path = write_tiny_llama(Path(tmp) / "tiny.gguf")

        def run_ggml() -> object:
            llm = Llama(model_path=str(path), n_ctx=256, n_threads=threads or None, verbose=False)
            llm.eval(llm.tokenize(b"hello world"))
            return llm.n_tokens
        return run_ggml
    raise SystemExit(f"unknown runtime {runtime}")


def in_fork(child: Callable[[], int]) -> int:
    """Run ``child`` in a forked child; its exit status (negative: killed by that signal)."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = child()
        finally:
            os._exit(code)
    _, st = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(st)


def works_under(run: Callable[[], object], which: int, nbytes: int) -> bool:
    def child() -> int:
        # OpenBLAS, short of memory while starting its threads, calls exit() with a lock held and
        # then deadlocks in its own exit handler: a hang is a failure too.
        signal.alarm(8)
        resource.setrlimit(which, (nbytes, nbytes))
        try:
            run()
        except BaseException:
            return 3
        return 0
    return in_fork(child) == 0


def smallest(run: Callable[[], object], which: int) -> int | None:
    """The smallest cap (MiB, to 4 MiB) under which ``run`` works; None if not even 64 GiB."""
    hi = 1 << 30
    while not works_under(run, which, hi):
        hi *= 4
        if hi > 64 << 30:
            return None
    lo = 0
    while hi - lo > 4 << 20:
        mid = (lo + hi) // 2
        if works_under(run, which, mid):
            hi = mid
        else:
            lo = mid
    return hi >> 20


def memory(runtime: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = workload(runtime, tmp)
        after_import = status()

        def peak() -> int:
            run()
            print(json.dumps({"runtime": runtime, "after_import_kB": after_import, "after_run_kB": status()}))
            return 0
        in_fork(peak)
        print(json.dumps({"runtime": runtime, "cpus": os.cpu_count(), "threads": os.environ.get("THREADS"),
                          "min_RLIMIT_DATA_MiB": smallest(run, resource.RLIMIT_DATA),
                          "min_RLIMIT_AS_MiB": smallest(run, resource.RLIMIT_AS)}))


def hostile(runtime: str, tmp: str) -> Callable[[], object]:
    """Import the runtime and write a model that allocates 3 GiB when it runs; return what runs it."""
    huge = 3 << 28  # float32 elements: 3 GiB
    if runtime == "numpy":
        import numpy as np
        return lambda: np.ones(huge, dtype=np.float32)
    if runtime == "onnx":
        import onnxruntime as ort
        from onnx import TensorProto, helper
        shape = helper.make_tensor("s", TensorProto.INT64, [1], [huge])  # the 104-byte ConstantOfShape bomb
        graph = helper.make_graph([helper.make_node("ConstantOfShape", ["s"], ["y"])], "g", [],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        return lambda: ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {})
    if runtime == "openvino":
        import numpy as np
        import openvino as ov
        import openvino.opset13 as ops
        p = ops.parameter([1], np.float32)
        model = ov.Model([ops.relu(ops.broadcast(p, ops.constant(np.array([huge], dtype=np.int64))))], [p])
        core = ov.Core()
        return lambda: core.compile_model(model, "CPU")(np.ones([1], dtype=np.float32))
    if runtime == "tflite":
        import numpy as np
        from ai_edge_litert.interpreter import Interpreter

        def tflite_bomb() -> object:  # the birds model, its input resized to a 3 GiB batch
            it = Interpreter(model_path=str(BIRDS))
            inp = it.get_input_details()[0]
            it.resize_tensor_input(inp["index"], [huge // 150528, 224, 224, 3])
            it.allocate_tensors()
            return it
        return tflite_bomb
    if runtime == "ggml":
        from llama_cpp import Llama
        from wasinn_backend_ggml.testing import write_tiny_llama
        path = write_tiny_llama(Path(tmp) / "tiny.gguf")

        def ggml_bomb() -> object:  # a context of a million tokens: its KV cache
            llm = Llama(model_path=str(path), n_ctx=1 << 20, verbose=False)
            llm.eval(llm.tokenize(b"hello"))
            return llm
        return ggml_bomb
    raise SystemExit(f"unknown runtime {runtime}")


def bomb(runtime: str) -> None:
    """The hostile model with RLIMIT_DATA at 512 MiB: how does the runtime fail?"""
    cap = 512 << 20
    with tempfile.TemporaryDirectory() as tmp:
        attempt = hostile(runtime, tmp)

        def child() -> int:
            resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
            try:
                attempt()
            except BaseException as e:
                print(json.dumps({"runtime": runtime, "raised": type(e).__name__, "message": str(e)[:300],
                                  "maxrss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10}))
                return 3
            return 0

        t = time.perf_counter()
        code = in_fork(child)
    print(json.dumps({"runtime": runtime, "cap_MiB": cap >> 20, "exit": code,
                      "ms": round((time.perf_counter() - t) * 1000)}))


def layers() -> None:
    """Cost of each layer in µs (median of forked children, each confining itself once)."""
    sys.path.insert(0, str(HERE.parents[2] / "src"))
    import numpy  # noqa: F401  (a realistic process: BLAS threads in the parent, none in the fork child)

    from wasinn.sandbox import Confinement, confine
    from wasinn.sandbox import seccomp as sc
    sc.worker_filter()  # warm ctypes types
    costs: dict[str, list[float]] = {}
    r, w = os.pipe()
    for _ in range(15):
        def child() -> int:
            done = confine(Confinement(memory_bytes=1 << 30, cpu_seconds=60))
            os.write(w, json.dumps(done.cost_us).encode() + b"\n")
            return 0
        assert in_fork(child) == 0
        for name, us in json.loads(os.read(r, 65536)).items():
            costs.setdefault(name, []).append(us)
    print(json.dumps({"layer_cost_us_median": {k: round(statistics.median(v), 1) for k, v in costs.items()},
                      "filter_insns": len(sc.worker_filter())}))

    # What the filter costs per system call: getppid (allowed without looking at its arguments, so
    # the kernel's allow cache answers) and mmap (the filter runs: its flags are checked).
    import mmap

    def per_call() -> dict[str, float]:
        out = {}
        for name, call in (("getppid", os.getppid),
                           ("mmap+munmap", lambda: mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE).close())):
            best = float("inf")
            for _ in range(5):
                t = time.perf_counter_ns()
                for _ in range(20000):
                    call()
                best = min(best, (time.perf_counter_ns() - t) / 20000)
            out[name] = round(best, 1)
        return out

    def child2() -> int:
        before = per_call()
        sc.install()
        os.write(w, json.dumps({"ns_per_call_without_filter": before, "ns_per_call_with_filter": per_call()}).encode())
        return 0
    assert in_fork(child2) == 0
    print(os.read(r, 65536).decode())


def start(module: str) -> None:
    """Time to a ready worker: fork from a template that imported ``module`` vs spawning a new interpreter."""
    __import__(module)
    forks = []
    private_kB = []
    for _ in range(20):
        r, w = os.pipe()
        t = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:
            os.write(w, b"r")
            with open("/proc/self/smaps_rollup") as f:  # what the worker does not share with its template
                private = sum(int(line.split()[1]) for line in f if line.startswith("Private_"))
            os.write(w, str(private).encode())
            os._exit(0)
        os.read(r, 1)
        forks.append((time.perf_counter_ns() - t) / 1e6)
        os.waitpid(pid, 0)
        private_kB.append(int(os.read(r, 64)))
        os.close(r)
        os.close(w)
    spawns = []
    for _ in range(5):
        t = time.perf_counter_ns()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        spawns.append((time.perf_counter_ns() - t) / 1e6)
    print(json.dumps({"module": module, "template_rss_kB": status()["VmRSS"],
                      "fork_ready_ms_median": round(statistics.median(forks), 2),
                      "fork_child_private_kB_median": statistics.median(private_kB),
                      "spawn_and_import_ms_median": round(statistics.median(spawns), 1)}))


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    commands: dict[str, Callable[..., None]] = {"memory": memory, "bomb": bomb, "layers": layers, "start": start}
    commands[command](*rest)
