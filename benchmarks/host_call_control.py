"""Control for docs/benchmarks.md: does code run slower inside a wasmtime-py host function?

No wasinn here. Each workload runs K times from Python, and K times from an empty host function that a
wasm loop calls K times; batches interleave and alternate which goes first. Prints the median time per
call of each and their ratio.

    python benchmarks/host_call_control.py [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import wasmtime

from wasinn.testing.models import third_party_model

BIRDS = third_party_model("wasmedge-tflite-birds/lite-model_aiy_vision_classifier_birds_V1_3.tflite", __file__)
LOOP_WAT = """(module
  (import "control" "call" (func $call (param i32) (result i32)))
  (func (export "loop") (param $n i32) (result i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (drop (call $call (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (i32.const 0)))"""


def workloads(threads: int) -> dict[str, Callable[[], object]]:
    found: dict[str, Callable[[], object]] = {
        "time.sleep(0.002)": lambda: time.sleep(0.002),
        "pure-Python loop": lambda: sum(range(30000)),
    }
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(BIRDS), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.ones(detail["shape"], np.uint8))
    found["LiteRT invoke (birds)"] = interpreter.invoke
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    current: dict[str, Callable[[], object]] = {}

    def host(caller: wasmtime.Caller, n: int) -> int:
        current["run"]()
        return 0

    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    i32 = wasmtime.ValType.i32()
    linker.define_func("control", "call", wasmtime.FuncType([i32], [i32]), host, access_caller=True)
    store = wasmtime.Store(engine)
    loop = linker.instantiate(store, wasmtime.Module(engine, LOOP_WAT)).exports(store)["loop"]
    assert isinstance(loop, wasmtime.Func)
    batch = 10
    for name, work in workloads(args.threads).items():
        current["run"] = work
        from_python: list[float] = []
        from_host_call: list[float] = []

        def python_side(work: Callable[[], object] = work, out: list[float] = from_python) -> None:
            start = time.perf_counter()
            for _ in range(batch):
                work()
            out.append((time.perf_counter() - start) / batch * 1e3)

        def wasm_side(out: list[float] = from_host_call) -> None:
            start = time.perf_counter()
            loop(store, batch)
            out.append((time.perf_counter() - start) / batch * 1e3)

        for round_ in range(args.rounds):
            for side in ((python_side, wasm_side) if round_ % 2 else (wasm_side, python_side)):
                side()
        py, wa = statistics.median(from_python), statistics.median(from_host_call)
        print(f"{name:24} from Python {py:.3f} ms, inside a host call {wa:.3f} ms, ratio {wa / py:.3f}")


if __name__ == "__main__":
    main()
