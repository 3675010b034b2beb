"""The llama.cpp backend: WasmEdge's GGML conventions on llama-cpp-python.

* A graph is one ``llama_model`` (weights memory-mapped from the GGUF file by llama.cpp); each
  wasi-nn context has its own ``llama_context`` (its KV cache), so contexts share the weights.
* Inputs: 0 = the prompt (bytes, any length), 1 = JSON metadata updating the context's options.
* ``compute`` = the whole generation (or, with ``embedding``, the prompt's embedding);
  outputs: 0 = the text (or the embedding JSON), 1 = metadata JSON (``input_tokens``, ...).
* ``compute_single`` generates one token, ``get_output_single`` returns its bytes,
  ``fini_single`` ends the stream. The end is ``END_OF_SEQUENCE`` (100 under WasmEdge's numbering),
  a full context ``CONTEXT_FULL`` (101), a prompt that does not fit ``PROMPT_TOO_LONG`` (102).

Sampling mirrors llama-cpp-python's ``Llama`` (same sampler chain, same defaults), so a guest gets
the tokens ``Llama.generate`` gives natively with the same options.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wasinn import (
    Context,
    ErrorCode,
    Graph,
    Hardware,
    ModelDescription,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
)
from wasinn_backend_ggml import _probe, validate
from wasinn_backend_ggml._info import runtime_version
from wasinn_backend_ggml.options import MODEL_KEYS, Options, update
from wasinn_backend_ggml.scoring import gpu_offload

log = logging.getLogger("wasinn.ggml")
llama_log = logging.getLogger("wasinn.ggml.llama")

INPUTS = (TensorSpec("prompt", TensorType.U8, (None,), any_length=True),
          TensorSpec("metadata", TensorType.U8, (None,), any_length=True))
OUTPUTS = (TensorSpec("text", TensorType.U8, (None,)), TensorSpec("metadata", TensorType.U8, (None,)))
PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size
TOP_K, MIN_P, TYPICAL_P = 40, 0.05, 1.0  # llama-cpp-python's defaults (WasmEdge sends no keys for them)
EMPTY = np.zeros(0, np.uint8)
#: Options are a few keys: the cap wasinn puts on load_by_name_with_config's config (parsing JSON
#: costs several times its size in host memory).
MAX_METADATA_BYTES = 1 << 20
#: ctx-size is capped at the model's training context, or this where that is smaller.
MIN_CTX_LIMIT = 4096


def _error(code: ErrorCode, message: str) -> WasiNnError:
    return WasiNnError(code, message)


@dataclass(eq=False)
class GraphState:
    model: Any  # llama_cpp._internals.LlamaModel
    path: str
    options: Options
    temp_path: str | None
    n_ctx_train: int
    n_embd: int
    pooling_declared: bool
    #: A longer prompt cannot fit any context of this model: refused untokenized (see _prompt_bound).
    max_prompt_bytes: int = 1 << 62
    pieces: dict[int, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    contexts: int = 0
    unloaded: bool = False
    freed: bool = False


@dataclass(eq=False)
class Generation:
    """One prompt's generation on a context: the prompt is evaluated, then one token per step."""

    tokens: list[int]
    sampler: Any
    n_past: int
    n_ctx: int
    n_predict: int
    reverse_prompt: bytes
    pending: int | None = None  # the last sampled token, not yet fed back to the model
    generated: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    ended: ErrorCode | None = None
    echo_decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    echo_failed: bool = False


@dataclass(eq=False)
class ContextState:
    graph: GraphState
    options: Options
    llama_ctx: Any = None
    ctx_key: tuple[Any, ...] | None = None
    batch: Any = None
    n_batch: int = 1
    prompt: bytes = b""
    prompt_tokens: list[int] = field(default_factory=list)
    too_long: int = 0  # the byte length of a prompt refused untokenized (0: none)
    stream: Generation | None = None
    last_piece: bytes = b""
    output: bytes = b""
    input_tokens: int = 0
    output_tokens: int = 0
    closed: bool = False


def _prompt_bound(info: validate.GgufInfo, n_ctx_train: int) -> int:
    """The most prompt bytes that may fit the largest context a guest can ask for: every token stands
    for at most as many bytes as its longest text in the vocabulary ("<0x41>" or "▁the" are longer
    than the bytes they stand for), plus llama.cpp's rounding of ctx-size."""
    tokens = info.metadata.get("tokenizer.ggml.tokens")
    longest = max((len(t.encode("utf-8", "replace")) for t in tokens if isinstance(t, str)), default=1) \
        if isinstance(tokens, list) else 1
    n_ctx = max(n_ctx_train, MIN_CTX_LIMIT) + 256  # as _llama_context caps it (ctx-size 0: n_ctx_train)
    return n_ctx * max(longest, 1)


class GgmlBackend:
    def __init__(self) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self.llama = llama_cpp
        self.internals = _internals
        self.version = runtime_version() or getattr(llama_cpp, "__version__", "?")
        # llama.cpp logs to stderr by default: route it to Python logging (debug) instead.
        self._log_callback = llama_cpp.llama_log_callback(self._on_llama_log)
        llama_cpp.llama_log_set(self._log_callback, ctypes.c_void_p(0))

    @staticmethod
    def _on_llama_log(level: int, text: bytes, data: Any) -> None:
        if llama_log.isEnabledFor(logging.DEBUG):
            message = text.decode("utf-8", "replace").rstrip()
            if message:
                llama_log.debug("%s", message)

    # -- graphs ----------------------------------------------------------------------------------
    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        options = update(Options(), model.config, where="load config")
        temp_path = None
        if model.paths and len(model.paths) == 1:
            path = str(model.paths[0])  # the embedder's file: llama.cpp maps it, nothing is copied
        else:
            fd, temp_path = tempfile.mkstemp(prefix="wasinn-ggml-", suffix=".gguf")
            with os.fdopen(fd, "wb") as file:
                file.write(model.builders[0])
            path = temp_path
        try:
            return self._load_file(model, path, options, temp_path)
        except BaseException:
            if temp_path is not None:
                os.unlink(temp_path)
            raise

    def _load_file(self, model: ModelDescription, path: str, options: Options, temp_path: str | None) -> Graph:
        try:
            info = validate.read_file(path)
        except validate.GgufError as exc:
            raise _error(ErrorCode.INVALID_ARGUMENT, f"malformed GGUF model: {exc}") from None
        if _probe.wanted(trusted=model.name is not None):
            _probe.probe(path, hashlib.sha256(model.builders[0]).hexdigest() if temp_path else None)
        n_gpu_layers = options.n_gpu_layers
        if n_gpu_layers != 0 and not gpu_offload():
            log.warning("ggml: n-gpu-layers=%d asked for, but this llama.cpp build has no GPU offload: the "
                        "whole model runs on the CPU", n_gpu_layers)
            n_gpu_layers = 0
        # The options table lists these as read at load: say plainly when they cannot take effect.
        if options.tensor_split:
            log.warning("ggml: tensor-split %r ignored: the model is loaded on a single device",
                        options.tensor_split[:80])
        if options.main_gpu != 0 and not gpu_offload():
            log.warning("ggml: main-gpu=%d ignored: this llama.cpp build has no GPU offload", options.main_gpu)
        params = self.llama.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.main_gpu = options.main_gpu
        params.use_mmap = options.use_mmap
        # llama-cpp-python's LlamaModel.__del__ reads `sampler`, which its __init__ sets only on
        # success: preset it, so that a refused file does not print "Exception ignored" on stderr.
        llama_model = self.internals.LlamaModel.__new__(self.internals.LlamaModel)
        llama_model.sampler = None
        llama_model._exit_stack = contextlib.ExitStack()
        try:
            llama_model.__init__(path_model=path, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise _error(ErrorCode.INVALID_ARGUMENT, f"llama.cpp cannot load the GGUF model: {exc}") from None
        arch = info.architecture or "?"
        state = GraphState(model=llama_model, path=path, options=options, temp_path=temp_path,
                           n_ctx_train=llama_model.n_ctx_train(), n_embd=llama_model.n_embd(),
                           pooling_declared=f"{arch}.pooling_type" in info.metadata,
                           max_prompt_bytes=_prompt_bound(info, llama_model.n_ctx_train()))
        device = "gpu" if n_gpu_layers != 0 else "cpu"
        log.info("ggml: loaded %s model (%d tensors, vocabulary of %d) on the %s", arch, len(info.tensors),
                 info.n_vocab, device)
        return Graph(inputs=INPUTS, outputs=OUTPUTS, device=device, state=state)

    def unload(self, graph: Graph) -> None:
        state: GraphState = graph.state
        with state.lock:
            state.unloaded = True
            self._free_if_unused(state)

    @staticmethod
    def _free_if_unused(state: GraphState) -> None:
        # A context's llama_context needs the model: free the model after the last context.
        if state.unloaded and state.contexts == 0 and not state.freed:
            state.freed = True
            state.model.close()
            if state.temp_path is not None:
                try:
                    os.unlink(state.temp_path)
                except OSError:
                    pass

    # -- contexts ----------------------------------------------------------------------------------
    def init_execution_context(self, graph: Graph) -> Context:
        state: GraphState = graph.state
        with state.lock:
            if state.freed:
                raise _error(ErrorCode.INVALID_ARGUMENT, "the graph was unloaded")
            state.contexts += 1
        return Context(graph=graph, state=ContextState(graph=state, options=state.options))

    def finalize_execution_context(self, context: Context) -> None:
        cstate: ContextState = context.state
        if cstate.closed:
            return
        cstate.closed = True
        self._drop_llama_context(cstate)
        with cstate.graph.lock:
            cstate.graph.contexts -= 1
            self._free_if_unused(cstate.graph)

    @staticmethod
    def _drop_llama_context(cstate: ContextState) -> None:
        cstate.stream = None
        if cstate.batch is not None:
            cstate.batch.close()
            cstate.batch = None
        if cstate.llama_ctx is not None:
            cstate.llama_ctx.close()
            cstate.llama_ctx = None
            cstate.ctx_key = None

    def _llama_context(self, cstate: ContextState) -> Any:
        """The context's llama_context for its current options (re-created when they change)."""
        options = cstate.options
        key = options.context_key()
        if cstate.llama_ctx is not None and cstate.ctx_key == key:
            return cstate.llama_ctx
        self._drop_llama_context(cstate)
        llama = self.llama
        params = llama.llama_context_default_params()
        # Guest-chosen sizes are bounded: the KV cache and the compute buffers grow with them.
        limit = max(cstate.graph.n_ctx_train, MIN_CTX_LIMIT)
        n_ctx = options.ctx_size or cstate.graph.n_ctx_train or MIN_CTX_LIMIT
        if n_ctx > limit:
            log.warning("ggml: ctx-size %d is more than the model's training context allows here; using %d",
                        n_ctx, limit)
            n_ctx = limit
        n_batch = min(options.batch_size, n_ctx)
        cores = os.cpu_count() or 1
        threads, threads_batch = options.n_threads()
        if max(threads, threads_batch) > cores:
            log.warning("ggml: threads %d is more than the %d cores here; using %d", options.threads, cores, cores)
            threads, threads_batch = min(threads, cores), min(threads_batch, cores)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, options.ubatch_size)
        params.n_threads, params.n_threads_batch = threads, threads_batch
        params.embeddings = options.embedding
        if options.embedding and not cstate.graph.pooling_declared:
            params.pooling_type = llama.LLAMA_POOLING_TYPE_MEAN  # one vector per prompt, as WasmEdge returns
        if hasattr(params, "flash_attn"):
            params.flash_attn = False  # llama-cpp-python's default
        try:
            cstate.llama_ctx = self.internals.LlamaContext(model=cstate.graph.model, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise _error(ErrorCode.RUNTIME_ERROR, f"llama.cpp cannot create a context (ctx-size {n_ctx}): "
                                                  f"{exc}") from None
        cstate.n_batch = max(n_batch, 1)
        cstate.batch = self.internals.LlamaBatch(n_tokens=cstate.n_batch, embd=0, n_seq_max=1, verbose=False)
        cstate.ctx_key = key
        return cstate.llama_ctx

    # -- inputs ------------------------------------------------------------------------------------
    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        cstate: ContextState = context.state
        if index == 0:
            cstate.stream = None  # a new prompt ends any stream
            cstate.last_piece = b""
            size = memoryview(tensor.data).nbytes
            if size > cstate.graph.max_prompt_bytes:
                # Tokenizing costs ~45 bytes of host memory per prompt byte: a guest's 1 GiB prompt
                # would take the host down. Neither tokenized nor kept; compute says PromptTooLong.
                cstate.prompt, cstate.prompt_tokens, cstate.too_long = b"", [], size
                cstate.input_tokens, cstate.output_tokens = 0, 0
                log.warning("ggml: a prompt of %d bytes cannot fit any context of this model (at most %d "
                            "bytes): not tokenized", size, cstate.graph.max_prompt_bytes)
                return
            data = bytes(tensor.data)
            cstate.prompt, cstate.too_long = data, 0
            # Tokenized now, as WasmEdge does: guests read input_tokens (output 1) before compute.
            cstate.prompt_tokens = self._tokenize(cstate) if data else []
            cstate.input_tokens, cstate.output_tokens = len(cstate.prompt_tokens), 0
            return
        size = memoryview(tensor.data).nbytes
        if size > MAX_METADATA_BYTES:
            raise _error(ErrorCode.INVALID_ARGUMENT, f"metadata (input 1) of {size} bytes is too long (at most "
                                                     f"{MAX_METADATA_BYTES}, as for a load config)")
        text = bytes(tensor.data).rstrip(b"\0")
        if not text.strip():
            return
        try:
            raw = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _error(ErrorCode.INVALID_ARGUMENT, f"metadata (input 1) is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise _error(ErrorCode.INVALID_ARGUMENT, "metadata (input 1) must be a JSON object")
        for key in raw:
            if str(key).replace("-", "_") in MODEL_KEYS and raw[key] != getattr(cstate.graph.options,
                                                                                str(key).replace("-", "_")):
                log.warning("ggml: option %s applies when the model is loaded (load_by_name_with_config); "
                            "ignored in metadata", key)
        raw = {k: v for k, v in raw.items() if str(k).replace("-", "_") not in MODEL_KEYS}
        cstate.options = update(cstate.options, raw, where="metadata")

    # -- generation --------------------------------------------------------------------------------
    def _sampler(self, options: Options) -> Any:
        # llama-cpp-python's Llama._init_sampler, with WasmEdge's option names.
        sampler = self.internals.LlamaSampler()
        sampler.add_penalties(PENALTY_LAST_N, options.repeat_penalty, options.frequency_penalty,
                              options.presence_penalty)
        if options.temp < 0:
            sampler.add_softmax()
            sampler.add_dist(options.seed)
        elif options.temp == 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(TOP_K)
            sampler.add_typical(TYPICAL_P, 1)
            sampler.add_top_p(options.top_p, 1)
            sampler.add_min_p(MIN_P, 1)
            sampler.add_temp(options.temp)
            sampler.add_dist(options.seed)
        return sampler

    def _tokenize(self, cstate: ContextState) -> list[int]:
        model = cstate.graph.model
        if not cstate.prompt:
            raise _error(ErrorCode.INVALID_ARGUMENT, "no prompt: set input 0 first")
        tokens: list[int] = model.tokenize(cstate.prompt, model.add_bos_token(), True)
        return tokens

    @staticmethod
    def _prompt_tokens(cstate: ContextState) -> list[int]:
        if cstate.too_long:
            raise _error(ErrorCode.PROMPT_TOO_LONG, f"the prompt is {cstate.too_long} bytes; no context of this "
                                                    f"model can hold more than {cstate.graph.max_prompt_bytes} "
                                                    f"bytes of prompt")
        if not cstate.prompt:
            raise _error(ErrorCode.INVALID_ARGUMENT, "no prompt: set input 0 first")
        return cstate.prompt_tokens

    def _decode(self, cstate: ContextState, tokens: list[int], n_past: int) -> None:
        batch_size = cstate.n_batch
        for start in range(0, len(tokens), batch_size):
            chunk = tokens[start:start + batch_size]
            cstate.batch.set_batch(chunk, n_past=n_past + start, logits_all=False)
            try:
                cstate.llama_ctx.decode(cstate.batch)
            except RuntimeError as exc:
                raise _error(ErrorCode.CONTEXT_FULL, f"llama.cpp could not evaluate the tokens: {exc}") from None

    def _start(self, cstate: ContextState) -> Generation:
        ctx = self._llama_context(cstate)
        options = cstate.options
        tokens = self._prompt_tokens(cstate)
        n_ctx = ctx.n_ctx()
        if len(tokens) >= n_ctx:
            raise _error(ErrorCode.PROMPT_TOO_LONG, f"the prompt is {len(tokens)} tokens; the context holds {n_ctx} "
                                                    f"(ctx-size)")
        ctx.kv_cache_clear()
        started = time.perf_counter()
        self._decode(cstate, tokens, 0)
        if options.log_timings:
            log.info("ggml: prompt of %d tokens evaluated in %.1f ms", len(tokens),
                     (time.perf_counter() - started) * 1000)
        cstate.input_tokens, cstate.output_tokens = len(tokens), 0
        n_predict = options.n_predict if options.n_predict >= 0 else n_ctx
        return Generation(tokens=tokens, sampler=self._sampler(options), n_past=len(tokens), n_ctx=n_ctx,
                          n_predict=n_predict, reverse_prompt=options.reverse_prompt.encode())

    def _step(self, cstate: ContextState, gen: Generation) -> bytes:
        """Generate one token; its bytes. Raises END_OF_SEQUENCE / CONTEXT_FULL when there is none."""
        if gen.ended is not None:
            raise _error(gen.ended, "the generation has ended (fini_single, or a new prompt, starts another)")
        if len(gen.generated) >= gen.n_predict:
            gen.ended = ErrorCode.END_OF_SEQUENCE
            raise _error(ErrorCode.END_OF_SEQUENCE, f"n-predict ({gen.n_predict}) tokens generated")
        if gen.pending is not None:
            if gen.n_past >= gen.n_ctx:
                gen.ended = ErrorCode.CONTEXT_FULL
                raise _error(ErrorCode.CONTEXT_FULL, f"the context is full ({gen.n_ctx} tokens, ctx-size)")
            self._decode(cstate, [gen.pending], gen.n_past)
            gen.n_past += 1
            gen.pending = None
        llama = self.llama
        token = int(llama.llama_sampler_sample(gen.sampler.sampler, cstate.llama_ctx.ctx, -1))
        if llama.llama_vocab_is_eog(cstate.graph.model.vocab, token):
            gen.ended = ErrorCode.END_OF_SEQUENCE
            raise _error(ErrorCode.END_OF_SEQUENCE, "end of sequence")
        gen.pending = token
        gen.generated.append(token)
        cstate.output_tokens = len(gen.generated)
        piece = self.piece(cstate.graph, token)
        gen.text += piece
        if gen.reverse_prompt and gen.text.endswith(gen.reverse_prompt):
            gen.ended = ErrorCode.END_OF_SEQUENCE  # the reverse prompt is delivered, then the stream ends
        if cstate.options.stream_stdout and not gen.echo_failed:
            self._echo(gen, piece)
        return piece

    @staticmethod
    def _echo(gen: Generation, piece: bytes) -> None:
        """stream-stdout: the token on the host's stdout. An embedder's stdout may be a text stream
        with no byte buffer, None or closed: the generation goes on regardless (logged once)."""
        try:
            out = sys.stdout
            buffer = getattr(out, "buffer", None)
            if buffer is not None:
                buffer.write(piece)
            else:
                # A token may end inside a UTF-8 character: decode across tokens.
                out.write(gen.echo_decoder.decode(piece))
            out.flush()
        except (AttributeError, OSError, ValueError) as exc:
            gen.echo_failed = True
            log.warning("ggml: stream-stdout: cannot write to the host's stdout (%s: %s); tokens are no "
                        "longer echoed", type(exc).__name__, exc)

    def piece(self, graph: GraphState, token: int) -> bytes:
        """The token's text bytes (what llama-cpp-python's ``detokenize([token])`` gives), cached per
        graph: llama_token_to_piece costs tens of microseconds through ctypes, a dict lookup does not."""
        cached = graph.pieces.get(token)
        if cached is not None:
            return cached
        model = graph.model
        buffer = ctypes.create_string_buffer(64)
        n = self.llama.llama_token_to_piece(model.vocab, token, buffer, 64, 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self.llama.llama_token_to_piece(model.vocab, token, buffer, -n, 0, False)
        piece = buffer.raw[:max(n, 0)]
        graph.pieces[token] = piece  # at most one entry per vocabulary token
        return piece

    def compute(self, context: Context) -> None:
        cstate: ContextState = context.state
        cstate.stream = None
        if cstate.options.embedding:
            cstate.output = self._embed(cstate)
            return
        gen = self._start(cstate)
        started = time.perf_counter()
        try:
            while True:
                self._step(cstate, gen)
        except WasiNnError as exc:
            cstate.output = bytes(gen.text)
            if exc.code is not ErrorCode.END_OF_SEQUENCE:
                raise  # CONTEXT_FULL: the text so far is still output 0, as in WasmEdge
        finally:
            if cstate.options.log_timings:
                elapsed = time.perf_counter() - started
                log.info("ggml: %d tokens generated in %.1f ms", len(gen.generated), elapsed * 1000)

    def _embed(self, cstate: ContextState) -> bytes:
        ctx = self._llama_context(cstate)
        tokens = self._prompt_tokens(cstate)
        if len(tokens) > cstate.n_batch or len(tokens) >= ctx.n_ctx():
            raise _error(ErrorCode.PROMPT_TOO_LONG, f"the text is {len(tokens)} tokens; an embedding takes at most "
                                                    f"batch-size ({cstate.n_batch}) and fewer than "
                                                    f"ctx-size ({ctx.n_ctx()})")
        llama = self.llama
        ctx.kv_cache_clear()
        cstate.batch.reset()
        cstate.batch.add_sequence(tokens, 0, False)
        try:
            ctx.decode(cstate.batch)
        except RuntimeError as exc:
            raise _error(ErrorCode.RUNTIME_ERROR, f"llama.cpp could not embed the text: {exc}") from None
        n_embd = cstate.graph.n_embd
        if ctx.pooling_type() == llama.LLAMA_POOLING_TYPE_NONE:
            pointer = llama.llama_get_embeddings_ith(ctx.ctx, -1)
        else:
            pointer = llama.llama_get_embeddings_seq(ctx.ctx, 0)
        if not pointer:
            raise _error(ErrorCode.RUNTIME_ERROR, "llama.cpp returned no embedding")
        vector: list[float | None] = [float(v) for v in pointer[:n_embd]]
        broken = sum(1 for v in vector if v is not None and not math.isfinite(v))
        if broken:
            # JSON has no NaN or Infinity: guests' strict parsers (serde_json, ...) would fail on the
            # whole output. null, as WasmEdge's JSON library writes them; logged.
            log.warning("ggml: the embedding holds %d values that are not finite (the model's arithmetic "
                        "overflowed): written as null", broken)
            vector = [v if v is not None and math.isfinite(v) else None for v in vector]
        ctx.kv_cache_clear()
        cstate.input_tokens, cstate.output_tokens = len(tokens), 0
        return json.dumps({"n_embedding": n_embd, "embedding": vector}, allow_nan=False).encode()

    # -- outputs -----------------------------------------------------------------------------------
    def _metadata(self, cstate: ContextState) -> np.ndarray:
        # WasmEdge's keys; llama-cpp-python does not expose llama.cpp's build number or commit.
        data = {"input_tokens": cstate.input_tokens, "output_tokens": cstate.output_tokens,
                "llama_build_number": 0, "llama_commit": f"llama-cpp-python {self.version}",
                "llama_cpp_python": self.version}
        return np.frombuffer(json.dumps(data).encode(), np.uint8)

    def _output(self, cstate: ContextState, index: int, text: bytes) -> np.ndarray:
        # Index 1 is WasmEdge's metadata; any other index is the text (all of it, or the last piece).
        if index == 1:
            return self._metadata(cstate)
        return np.frombuffer(text, np.uint8) if text else EMPTY

    def get_output(self, context: Context, index: int) -> np.ndarray:
        cstate: ContextState = context.state
        return self._output(cstate, index, cstate.output)

    def compute_single(self, context: Context) -> None:
        cstate: ContextState = context.state
        if cstate.options.embedding:
            raise _error(ErrorCode.UNSUPPORTED_OPERATION, "embedding mode does not stream: use compute")
        if cstate.stream is None:
            cstate.stream = self._start(cstate)
        cstate.last_piece = self._step(cstate, cstate.stream)

    def get_output_single(self, context: Context, index: int) -> np.ndarray:
        cstate: ContextState = context.state
        return self._output(cstate, index, cstate.last_piece)

    def fini_single(self, context: Context) -> None:
        cstate: ContextState = context.state
        cstate.stream = None
        cstate.last_piece = b""
        if cstate.llama_ctx is not None:
            cstate.llama_ctx.kv_cache_clear()
