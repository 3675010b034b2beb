"""Benchmark for docs/backends/ggml.md: an LLM guest streaming tokens through wasinn vs llama-cpp-python.

* time per generated token: a wasm loop calling ``compute_single`` + ``get_output_single`` (WasmEdge's
  streaming calls) against ``Llama.generate`` + ``detokenize`` of each token called natively (both
  end with the token's bytes), same model, options and threads, on a
  random llama GGUF big enough that a token costs a few milliseconds (target: <= 1.03x);
* prompt processing (tokens/s): ``compute`` with ``n-predict`` 0 from wasm against ``Llama.eval``;
* the three streaming calls on a backend that does no work, against wasinn's empty import of the same
  signature (target: <= 1.5x, as for the other operations).

Rounds interleave and alternate which side goes first; medians are reported. No downloads: the
model is written on the spot (``wasinn_backend_ggml.testing``).

    python benchmarks/ggml_tokens.py [--threads 2] [--rounds 15] [--tokens 32] [--layers 8] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime
from wasinn_backend_ggml.testing import TinyLlama, write_tiny_llama

import wasinn
from wasinn import Context, Graph, ModelFormat, Score, Tensor, TensorSpec, TensorType, hookimpl
from wasinn.abi import entry

PROMPT = b"hello world, the llama said to the cat and the dog: " * 4
WAT = """(module
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "compute_single" (func $cs (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "get_output_single" (func $gos (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "fini_single" (func $fini (param i32) (result i32)))
  (import "bench" "empty1" (func $empty1 (param i32) (result i32)))
  (import "bench" "empty5" (func $empty5 (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  ;; n tokens: compute_single, then get_output_single into [1024, 1024+512), size at 8
  (func (export "stream") (param $ctx i32) (param $n i32) (result i32) (local $e i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $e (call $cs (local.get $ctx)))
      (if (local.get $e) (then (return (local.get $e))))
      (local.set $e (call $gos (local.get $ctx) (i32.const 0) (i32.const 1024) (i32.const 512) (i32.const 8)))
      (if (local.get $e) (then (return (local.get $e))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (i32.const 0))
  (func (export "compute") (param $ctx i32) (result i32) (call $compute (local.get $ctx)))
  (func (export "fini") (param $ctx i32) (result i32) (call $fini (local.get $ctx)))
  (func (export "loop_cs") (param $ctx i32) (param $n i32) (result i32)
    (block $done (loop $next (br_if $done (i32.eqz (local.get $n)))
      (drop (call $cs (local.get $ctx))) (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br $next)))
    (i32.const 0))
  (func (export "loop_gos") (param $ctx i32) (param $n i32) (result i32)
    (block $done (loop $next (br_if $done (i32.eqz (local.get $n)))
      (drop (call $gos (local.get $ctx) (i32.const 0) (i32.const 1024) (i32.const 512) (i32.const 8)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br $next)))
    (i32.const 0))
  (func (export "loop_fini") (param $ctx i32) (param $n i32) (result i32)
    (block $done (loop $next (br_if $done (i32.eqz (local.get $n)))
      (drop (call $fini (local.get $ctx))) (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br $next)))
    (i32.const 0))
  (func (export "loop_empty1") (param $n i32) (result i32)
    (block $done (loop $next (br_if $done (i32.eqz (local.get $n)))
      (drop (call $empty1 (local.get $n))) (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br $next)))
    (i32.const 0))
  (func (export "loop_empty5") (param $n i32) (result i32)
    (block $done (loop $next (br_if $done (i32.eqz (local.get $n)))
      (drop (call $empty5 (local.get $n) (i32.const 0) (i32.const 1024) (i32.const 512) (i32.const 8)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1))) (br $next)))
    (i32.const 0)))"""

NULL_FORMAT = ModelFormat("null-stream")
ONE_BYTE = np.zeros(1, np.uint8)


class NullStream:
    """A backend whose streaming hooks do nothing: what is left is wasinn's cost per call."""

    @hookimpl
    def backend_info(self) -> wasinn.BackendInfo:
        return wasinn.BackendInfo(runtime="none", runtime_version=None, formats=(NULL_FORMAT,))

    @hookimpl
    def detect_format(self, builders: Any) -> str | None:
        return str(NULL_FORMAT) if bytes(builders[0][:4]) == b"NULL" else None

    @hookimpl
    def can_handle(self, model: wasinn.ModelDescription, hw: wasinn.Hardware) -> Score | None:
        return Score(1, "null") if model.format == NULL_FORMAT else None

    @hookimpl
    def load(self, model: wasinn.ModelDescription, hw: wasinn.Hardware) -> Graph:
        spec = TensorSpec("x", TensorType.U8, (None,), any_length=True)
        return Graph(inputs=[spec], outputs=[spec])

    @hookimpl
    def init_execution_context(self, graph: Graph) -> Context:
        return Context(graph)

    @hookimpl
    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        pass

    @hookimpl
    def compute(self, context: Context) -> None:
        pass

    @hookimpl
    def get_output(self, context: Context, index: int) -> np.ndarray:
        return ONE_BYTE

    @hookimpl
    def compute_single(self, context: Context) -> None:
        pass

    @hookimpl
    def get_output_single(self, context: Context, index: int) -> np.ndarray:
        return ONE_BYTE

    @hookimpl
    def fini_single(self, context: Context) -> None:
        pass


class Bench:
    def __init__(self, host: wasinn.WasiNnHost) -> None:
        self.engine = wasmtime.Engine()
        linker = wasmtime.Linker(self.engine)
        host.add_to_linker(linker)
        entry.define(linker, "bench", "empty1", 1, lambda call, *args: 0)
        entry.define(linker, "bench", "empty5", 5, lambda call, *args: 0)
        self.store = host.new_store(self.engine)
        self.instance = host.instantiate(self.store, linker, wasmtime.Module(self.engine, WAT))
        self.state = host.state(self.store)

    def call(self, name: str, *args: int) -> int:
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        return int(func(self.store, *args))


def prompt_tensor(data: bytes) -> Tensor:
    return Tensor(TensorType.U8, (1,), memoryview(data))  # WasmEdge's shape for a prompt


def bench_tokens(path: Path, threads: int, rounds: int, n_tokens: int) -> dict[str, Any]:
    import llama_cpp

    options = {"temp": 0.0, "ctx-size": 512, "batch-size": 512, "threads": threads, "n-predict": n_tokens + 1}
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    prompt_tokens = llm.tokenize(PROMPT, add_bos=True, special=True)
    with wasinn.WasiNnHost(allow=["ggml"]) as host:
        host.register_model("bench", path, config=options)
        bench = Bench(host)
        ctx = bench.state.init_execution_context(bench.state.load_by_name("bench"))
        bench.state.set_input(ctx, 0, prompt_tensor(PROMPT))
        pp = bench.state.init_execution_context(bench.state.load_by_name("bench"))
        bench.state.set_input(pp, 0, prompt_tensor(PROMPT))
        bench.state.set_input(pp, 1, prompt_tensor(json.dumps({"n-predict": 0}).encode()))
        guest_tok: list[float] = []
        native_tok: list[float] = []
        guest_pp: list[float] = []
        native_pp: list[float] = []
        same_tokens = True

        def guest_side() -> None:
            assert bench.call("stream", ctx, 1) == 0  # the prompt, and the first token
            start = time.perf_counter()
            assert bench.call("stream", ctx, n_tokens) == 0
            guest_tok.append((time.perf_counter() - start) / n_tokens * 1e3)
            assert bench.call("fini", ctx) == 0
            start = time.perf_counter()
            assert bench.call("compute", pp) == 0
            guest_pp.append(len(prompt_tokens) / (time.perf_counter() - start))

        def native_side() -> None:
            nonlocal same_tokens
            llm.reset()
            generator = llm.generate(prompt_tokens, temp=0.0, reset=True)
            next(generator)
            start = time.perf_counter()
            for _ in range(n_tokens):
                llm.detokenize([next(generator)])  # a streaming client needs each token's bytes, as the guest gets
            native_tok.append((time.perf_counter() - start) / n_tokens * 1e3)
            generator.close()
            llm.reset()
            start = time.perf_counter()
            llm.eval(prompt_tokens)
            native_pp.append(len(prompt_tokens) / (time.perf_counter() - start))
            llm.reset()

        guest_side()
        native_side()  # warm-up
        guest_tok.clear(), native_tok.clear(), guest_pp.clear(), native_pp.clear()
        for r in range(rounds):
            for side in ((guest_side, native_side) if r % 2 == 0 else (native_side, guest_side)):
                side()
        # the same text both ways (greedy): the comparison is like for like
        first = llm.generate(prompt_tokens, temp=0.0, reset=True)
        native_text = b"".join(llm.detokenize([next(first)]) for _ in range(8))
        first.close()
        llm.reset()
        bench.call("stream", ctx, 8)
        state = bench.state.context(ctx).context.state
        same_tokens = bytes(state.stream.text) == native_text if state.stream else False
    med = statistics.median
    return {
        "prompt_tokens": len(prompt_tokens), "generated_tokens_per_round": n_tokens, "rounds": rounds,
        # min as well as median: on a shared machine, other work only ever adds time
        "ms_per_token": {"guest_streaming": med(guest_tok), "native": med(native_tok),
                         "ratio": med(guest_tok) / med(native_tok),
                         "min_ratio": min(guest_tok) / min(native_tok), "guest_samples": guest_tok,
                         "native_samples": native_tok},
        "prompt_tokens_per_s": {"guest": med(guest_pp), "native": med(native_pp),
                                "ratio": med(native_pp) / med(guest_pp)},
        "same_text": same_tokens,
    }


def bench_calls(batches: int, calls: int) -> dict[str, Any]:
    with wasinn.WasiNnHost(backends={"null": NullStream()}, entry_points=False) as host:
        bench = Bench(host)
        state = bench.state
        ctx = state.init_execution_context(state.load([b"NULL"], wasinn.GraphEncoding.AUTODETECT,
                                                      wasinn.ExecutionTarget.CPU))
        loops = {"compute_single": ("loop_cs", (ctx, calls), "empty1"),
                 "get_output_single": ("loop_gos", (ctx, calls), "empty5"),
                 "fini_single": ("loop_fini", (ctx, calls), "empty1"),
                 "empty1": ("loop_empty1", (calls,), None), "empty5": ("loop_empty5", (calls,), None)}
        samples: dict[str, list[float]] = {name: [] for name in loops}
        for b in range(batches + 1):
            order = list(loops) if b % 2 == 0 else list(reversed(loops))
            for name in order:
                export, args, _ = loops[name]
                start = time.perf_counter()
                bench.call(export, *args)
                if b:  # the first batch warms up
                    samples[name].append((time.perf_counter() - start) / calls * 1e6)
        med = {name: statistics.median(values) for name, values in samples.items()}
        return {name: {"us_per_call": med[name], "floor": floor,
                       "ratio_to_empty": med[name] / med[floor] if floor else 1.0}
                for name, (_, _, floor) in loops.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import llama_cpp

    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": platform.platform(),
                               "processor": platform.processor(), "threads": args.threads,
                               "llama_cpp_python": llama_cpp.__version__, "wasmtime": wasmtime.__version__
                               if hasattr(wasmtime, "__version__") else None}
    spec = TinyLlama(n_layer=args.layers, n_embd=512, n_head=8, n_head_kv=8, n_ff=1536, n_ctx_train=1024)
    with tempfile.TemporaryDirectory() as folder:
        path = write_tiny_llama(Path(folder) / "bench.gguf", spec)
        results["model"] = {"layers": spec.n_layer, "n_embd": spec.n_embd, "n_ff": spec.n_ff, "dtype": spec.dtype,
                            "bytes": path.stat().st_size}
        results["tokens"] = bench_tokens(path, args.threads, args.rounds, args.tokens)
    results["streaming_calls"] = bench_calls(batches=9, calls=20000)
    tok = results["tokens"]
    print(f"model: {results['model']}")
    print(f"ms/token: guest streaming {tok['ms_per_token']['guest_streaming']:.3f}, native "
          f"{tok['ms_per_token']['native']:.3f}, ratio {tok['ms_per_token']['ratio']:.4f} (of the minima "
          f"{tok['ms_per_token']['min_ratio']:.4f}; same text: {tok['same_text']})")
    print(f"prompt ({tok['prompt_tokens']} tokens): guest {tok['prompt_tokens_per_s']['guest']:.0f} tok/s, native "
          f"{tok['prompt_tokens_per_s']['native']:.0f} tok/s, ratio {tok['prompt_tokens_per_s']['ratio']:.4f}")
    for name, row in results["streaming_calls"].items():
        print(f"{name}: {row['us_per_call']:.2f} µs/call, {row['ratio_to_empty']:.2f}x {row['floor'] or '-'}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
