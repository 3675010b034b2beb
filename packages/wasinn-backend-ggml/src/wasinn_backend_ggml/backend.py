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

import atexit
import codecs
import contextlib
import ctypes
import hashlib
import inspect
import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
import weakref
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wasinn import (
    Context,
    ErrorCode,
    Graph,
    Hardware,
    Limits,
    ModelDescription,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
)
from wasinn_backend_ggml import _probe, grammar, validate
from wasinn_backend_ggml._info import runtime_version
from wasinn_backend_ggml.options import CACHE_TYPES, FLASH_ATTN, MODEL_KEYS, Options, update
from wasinn_backend_ggml.scoring import gpu_offload

log = logging.getLogger("wasinn.ggml")
llama_log = logging.getLogger("wasinn.ggml.llama")

# The text convention of docs/components.md. A component guest names its inputs "0"/"prompt" and
# "1"/"metadata" (the options JSON; optional: a prompt alone is a valid compute); the outputs are
# named "0" (the reply) and "1" (the metadata JSON), as WACS names its GGUF reply "0".
INPUTS = (TensorSpec("prompt", TensorType.U8, (None,), any_length=True),
          TensorSpec("metadata", TensorType.U8, (None,), any_length=True, optional=True))
OUTPUTS = (TensorSpec("0", TensorType.U8, (None,)), TensorSpec("1", TensorType.U8, (None,)))
MIROSTAT_TAU, MIROSTAT_M = 5.0, 100  # llama-cpp-python's (WasmEdge has no key for tau)
DRY_SEQ_BREAKERS = ("\n", ":", "\"", "*")  # llama.cpp's defaults
#: Tensors of a classifier head: rank pooling (reranking) needs one (llama.cpp aborts without).
CLASSIFIER_TENSORS = ("cls.weight", "cls.output.weight")
EMPTY = np.zeros(0, np.uint8)
#: Options are a few keys: the cap wasinn puts on load_by_name_with_config's config (parsing JSON
#: costs several times its size in host memory).
MAX_METADATA_BYTES = 1 << 20
#: ctx-size is capped at the model's training context, or this where that is smaller, and in any
#: case at the embedder's ``Limits.max_context_tokens``.
MIN_CTX_LIMIT = 4096
#: llama.cpp rounds a context's size up to a multiple of 32 (256 with flash attention): the larger,
#: so that what is charged is an upper bound.
CTX_PAD = 256
#: Host memory llama.cpp's tokenizer takes per prompt byte, at most: its symbol and work lists (measured
#: 20 to 60 bytes per byte on SentencePiece vocabularies, depending on the text).
TOKENIZE_BYTES_PER_BYTE = 64
#: Tokens a prompt gives, at most, per byte (an invalid UTF-8 byte becomes U+FFFD: three byte tokens),
#: and specials the tokenizer may add (BOS, EOS).
TOKENS_PER_BYTE, EXTRA_TOKENS = 3, 16
TOKEN_BYTES = 4  # llama_token is an int32
#: Bytes that never occur in UTF-8: C0, C1 (overlong lead bytes) and F5-FF.
NOT_UTF8_BYTES = re.compile(rb"[\xc0\xc1\xf5-\xff]")
PIECE_BUFFER = 256  # bytes: a token's text is shorter in real vocabularies


def _error(code: ErrorCode, message: str) -> WasiNnError:
    return WasiNnError(code, message)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class GuestFile:
    """A guest's model bytes in a temporary file, for llama.cpp to map.

    The name is removed as soon as llama.cpp has loaded the model (POSIX keeps a mapped file's data
    until it is unmapped), whatever the load's outcome; so a process that ends without closing its
    stores, or is killed, leaves nothing behind. Where the name cannot be removed while the file is
    open (Windows), a finalizer removes it when the graph goes or, at the latest, at interpreter exit.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        fd, self.path = tempfile.mkstemp(prefix="wasinn-ggml-", suffix=".gguf")
        self._finalizer = weakref.finalize(self, _unlink, self.path)  # also runs at exit (atexit)
        with os.fdopen(fd, "wb") as file:
            file.write(data)

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError:
            return  # still open where that forbids removal: the finalizer tries again later
        self._finalizer.detach()


def _largest(value: Any) -> int:
    """A hyperparameter GGUF stores as an integer or as one per layer: the largest (0 if none)."""
    if isinstance(value, list):
        return max((v for v in value if isinstance(v, int) and not isinstance(v, bool)), default=0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class MemoryShape:
    """What a llama_context of a model costs, from the model's hyperparameters: upper bounds of
    llama.cpp's allocations, charged to the context's budget before it makes them."""

    kv_bytes_per_token: int  # n_layer * (n_embd_k_gqa + n_embd_v_gqa) * 2 (an f16 cache)
    n_head: int
    n_vocab: int
    n_embd: int
    n_ff: int

    def kv_cache(self, n_ctx: int) -> int:
        return n_ctx * self.kv_bytes_per_token

    def compute(self, n_ctx: int, n_batch: int, n_ubatch: int, embedding: bool) -> int:
        """llama.cpp's compute buffers (f32) and kept outputs. Per micro-batch token, the larger of
        the attention scores of every head plus their mask over the whole context, and the logits
        (llama.cpp's allocator reuses the one's memory for the other), plus the layer activations;
        then the outputs kept (every token's embedding in embedding mode, else one token's logits).
        Checked against the sizes llama.cpp reports for vocabularies of 323 to 64000 tokens, 4 to 32
        heads, contexts of 256 to 32768 and micro-batches of 64 to 2048, with an eighth to spare."""
        per_token = max(n_ctx * (self.n_head + 1), self.n_vocab) + 2 * self.n_ff + 4 * self.n_embd
        outputs = (n_batch if embedding else 1) * (self.n_vocab + self.n_embd)
        total = 4 * (n_ubatch * per_token + outputs)
        return total + total // 8 + (1 << 20)


def _memory_shape(info: validate.GgufInfo, llama: Any, model: Any) -> MemoryShape:
    # The larger of what llama.cpp reports and what the file says (per-layer values at their
    # largest): an over-estimate never lets a context cost more than it was charged.
    meta, arch = info.metadata, info.architecture or "?"

    def key(name: str) -> int:
        return _largest(meta.get(f"{arch}.{name}"))

    n_layer = max(llama.llama_model_n_layer(model.model), key("block_count"), 1)
    n_embd = max(llama.llama_model_n_embd(model.model), key("embedding_length"), 1)
    n_head = max(llama.llama_model_n_head(model.model), key("attention.head_count"), 1)
    n_head_kv = max(llama.llama_model_n_head_kv(model.model), key("attention.head_count_kv")) or n_head
    head_k = key("attention.key_length") or max(n_embd // n_head, 1)
    head_v = key("attention.value_length") or max(n_embd // n_head, 1)
    n_ff = key("feed_forward_length") or 4 * n_embd
    return MemoryShape(kv_bytes_per_token=n_layer * n_head_kv * (head_k + head_v) * 2, n_head=n_head,
                       n_vocab=max(model.n_vocab(), info.n_vocab, 1), n_embd=n_embd, n_ff=n_ff)


@dataclass(eq=False)
class GraphState:
    model: Any  # llama_cpp._internals.LlamaModel
    path: str
    options: Options
    temp: GuestFile | None
    #: The context a ctx-size of 0 asks for: the model's declared context, capped by the embedder.
    n_ctx_model: int
    #: The longest context any context of this graph may have (Limits.max_context_tokens at most).
    n_ctx_limit: int
    n_embd: int
    pooling_declared: bool
    has_classifier: bool
    shape: MemoryShape
    limits: Limits
    #: A longer prompt cannot fit any context of this model: refused untokenized (see _prompt_bound).
    max_prompt_bytes: int = 1 << 62
    pieces: dict[int, bytes] = field(default_factory=dict)
    #: Tokens whose bytes never occur in UTF-8 (C0, C1, F5-FF): kept out of constrained output.
    not_utf8: list[int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    contexts: int = 0
    unloaded: bool = False
    freed: bool = False


@dataclass(eq=False)
class Generation:
    """One prompt's generation on a context: the prompt is evaluated, then one token per step."""

    tokens: Sequence[int]
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
    prompt_tokens: Sequence[int] = field(default_factory=list)
    too_long: int = 0  # the byte length of a prompt refused untokenized (0: none)
    stream: Generation | None = None
    last_piece: bytes = b""
    output: bytes = b""
    input_tokens: int = 0
    output_tokens: int = 0
    closed: bool = False


def _prompt_bound(info: validate.GgufInfo, n_ctx_limit: int) -> int:
    """The most prompt bytes that may fit the largest context a guest can ask for: every token stands
    for at most as many bytes as its longest text in the vocabulary ("<0x41>" or "▁the" are longer
    than the bytes they stand for), plus llama.cpp's rounding of ctx-size."""
    tokens = info.metadata.get("tokenizer.ggml.tokens")
    longest = max((len(t.encode("utf-8", "replace")) for t in tokens if isinstance(t, str)), default=1) \
        if isinstance(tokens, list) else 1
    return (n_ctx_limit + CTX_PAD) * max(longest, 1)


def _context_limits(n_ctx_train: int, limits: Limits) -> tuple[int, int, int]:
    """(the context length the model declares, the context a ctx-size of 0 gets, the longest context
    allowed). The declaration is the guest's; the embedder's max_context_tokens bounds both."""
    declared = n_ctx_train & 0xFFFFFFFF  # llama.cpp reads a u32 and reports it as an int32
    cap = limits.max_context_tokens
    n_ctx_model = min(declared, cap) if declared > 0 else min(MIN_CTX_LIMIT, cap)
    return declared, n_ctx_model, min(max(n_ctx_model, MIN_CTX_LIMIT), cap)


def normalize(vector: np.ndarray, kind: int) -> np.ndarray:
    """llama.cpp's common_embd_normalize, as WasmEdge applies it (float32 in and out, the sum in
    double, float32 products): -1 none, 0 the largest magnitude to 32760, 2 Euclidean, other p the
    p-norm (1: taxicab)."""
    values = np.asarray(vector, dtype=np.float32)
    total = 0.0
    if kind == -1:
        total = 1.0
    elif kind == 0:
        total = float(np.max(np.abs(values))) / 32760.0 if values.size else 0.0
    elif kind == 2:
        for square in (values * values).tolist():  # in order, as the C++ loop adds (float32 squares)
            total += square
        total = math.sqrt(total)
    else:
        for value in np.abs(values).tolist():
            total += math.pow(value, kind)
        total = math.pow(total, 1.0 / kind)
    scale = np.float32(1.0 / total) if total > 0.0 else np.float32(0.0)
    return values * scale


def embedding_json(n_embd: int, values: np.ndarray) -> bytes:
    """WasmEdge's embedding output: its keys and values with 10 significant digits (fmt's {:.10});
    JSON has no NaN or Infinity: those are null (a model whose arithmetic overflowed), logged."""
    parts = []
    broken = 0
    for value in values.tolist():
        if math.isfinite(value):
            parts.append(format(value, ".10g"))
        else:
            parts.append("null")
            broken += 1
    if broken:
        log.warning("ggml: the embedding holds %d values that are not finite (the model's arithmetic "
                    "overflowed): written as null", broken)
    return f'{{"n_embedding": {n_embd}, "embedding": [{",".join(parts)}]}}'.encode()


def _restore_llama_logger(llama_cpp: Any) -> None:
    llama_cpp.llama_log_set(llama_cpp.llama_log_callback(), ctypes.c_void_p(0))  # a NULL pointer: the default


class GgmlBackend:
    def __init__(self) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self.llama = llama_cpp
        self.internals = _internals
        self.version = runtime_version() or getattr(llama_cpp, "__version__", "?")
        self._penalties_take_n_vocab = "n_vocab" in inspect.signature(_internals.LlamaSampler.add_penalties).parameters
        # llama.cpp logs to stderr by default: route it to Python logging (debug) instead.
        self._grammars: dict[tuple[str, str], str] = {}
        self._log_callback = llama_cpp.llama_log_callback(self._on_llama_log)
        llama_cpp.llama_log_set(self._log_callback, ctypes.c_void_p(0))
        # A Llama freed while the interpreter shuts down (any Llama in the process, collected after
        # atexit) would call this Python callback from a dying interpreter: SIGSEGV at exit. So at
        # exit llama.cpp gets its own C logger back.
        atexit.register(_restore_llama_logger, llama_cpp)

    @staticmethod
    def _on_llama_log(level: int, text: bytes, data: Any) -> None:
        if llama_log.isEnabledFor(logging.DEBUG):
            message = text.decode("utf-8", "replace").rstrip()
            if message:
                llama_log.debug("%s", message)

    # -- graphs ----------------------------------------------------------------------------------
    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        options = update(Options(), model.config, where="load config")
        self.grammar_text(options)  # a bad grammar or schema is refused at load, as in WasmEdge
        if model.paths and len(model.paths) == 1:
            # the embedder's file: llama.cpp maps it, nothing is copied
            return self._load_file(model, str(model.paths[0]), options, None)
        temp = GuestFile(model.builders[0])
        try:
            return self._load_file(model, temp.path, options, temp)
        finally:
            temp.remove()  # loaded or refused, the name goes now (llama.cpp keeps the mapped data)

    def _load_file(self, model: ModelDescription, path: str, options: Options, temp: GuestFile | None) -> Graph:
        try:
            info = validate.read_file(path)
        except validate.GgufError as exc:
            raise _error(ErrorCode.INVALID_ARGUMENT, f"malformed GGUF model: {exc}") from None
        if _probe.wanted(trusted=model.name is not None):
            _probe.probe(path, hashlib.sha256(model.builders[0]).hexdigest() if temp else None,
                         model.limits.worker_memory_bytes)
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
        params.use_mlock = options.use_mlock
        params.check_tensors = options.check_tensors
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
        limits = model.limits
        declared, n_ctx_model, n_ctx_limit = _context_limits(llama_model.n_ctx_train(), limits)
        if declared > limits.max_context_tokens:
            log.info("ggml: the model declares a context of %d tokens; its contexts are capped at %d "
                     "(Limits.max_context_tokens)", declared, limits.max_context_tokens)
        state = GraphState(model=llama_model, path=path, options=options, temp=temp, n_ctx_model=n_ctx_model,
                           n_ctx_limit=n_ctx_limit, n_embd=llama_model.n_embd(),
                           pooling_declared=f"{arch}.pooling_type" in info.metadata,
                           has_classifier=any(name in info.tensors for name in CLASSIFIER_TENSORS),
                           shape=_memory_shape(info, self.llama, llama_model), limits=limits,
                           max_prompt_bytes=_prompt_bound(info, n_ctx_limit))
        try:  # a grammar llama.cpp cannot parse is refused at load, as in WasmEdge
            checked = self._grammar_sampler(state, options)
        except WasiNnError:
            llama_model.close()
            raise
        if checked is not None:
            self.llama.llama_sampler_free(checked)
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
            if state.temp is not None:
                state.temp.remove()

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

    def _llama_context(self, context: Context, cstate: ContextState) -> Any:
        """The context's llama_context for its current options (re-created when they change)."""
        options = cstate.options
        key = options.context_key()
        if cstate.llama_ctx is not None and cstate.ctx_key == key:
            return cstate.llama_ctx
        self._drop_llama_context(cstate)
        budget = context.budget
        budget.hold("kv-cache", 0)
        budget.hold("compute-buffers", 0)
        llama = self.llama
        graph = cstate.graph
        params = llama.llama_context_default_params()
        # Guest-chosen sizes are bounded by the embedder (Limits.max_context_tokens), never by the
        # guest's model; what they cost is charged to the context's budget before llama.cpp allocates.
        limit = graph.n_ctx_limit
        n_ctx = options.ctx_size or graph.n_ctx_model
        if n_ctx > limit:
            why = "Limits.max_context_tokens" if limit == graph.limits.max_context_tokens \
                else "the model's training context, or 4096"
            log.warning("ggml: ctx-size %d is more than this host allows (%s); using %d", n_ctx, why, limit)
            n_ctx = limit
        n_batch = min(options.batch_size, n_ctx)
        n_ubatch = min(n_batch, options.ubatch_size)
        n_cells = -(-n_ctx // CTX_PAD) * CTX_PAD
        # Raises TOO_LARGE, naming the limit, past the context's or the store's runtime-memory budget.
        if options.pooling_type == llama.LLAMA_POOLING_TYPE_RANK and options.embedding and not graph.has_classifier:
            raise _error(ErrorCode.INVALID_ARGUMENT, "pooling-type 4 (rank, reranking) needs a model with a classifier "
                                                     "head (cls.weight or cls.output.weight): this model has none")
        # llama.cpp's f16 cache is what shape.kv_cache counts; other types scale it (upper bound).
        kv_scale = max(CACHE_TYPES[options.cache_type_k], CACHE_TYPES[options.cache_type_v]) / 2
        budget.hold("kv-cache", math.ceil(graph.shape.kv_cache(n_cells) * kv_scale))
        budget.hold("compute-buffers", graph.shape.compute(n_cells, n_batch, n_ubatch, options.embedding))
        cores = os.cpu_count() or 1
        threads, threads_batch = options.n_threads()
        if max(threads, threads_batch) > cores:
            log.warning("ggml: threads %d is more than the %d cores here; using %d", options.threads, cores, cores)
            threads, threads_batch = min(threads, cores), min(threads_batch, cores)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_ubatch
        params.n_threads, params.n_threads_batch = threads, threads_batch
        params.embeddings = options.embedding
        # -1: the model's own, as WasmEdge (none for a model that declares none: the last token's)
        params.pooling_type = options.pooling_type
        params.attention_type = options.attention_type
        params.rope_scaling_type = options.rope_scaling_type
        params.rope_freq_base, params.rope_freq_scale = options.rope_freq_base, options.rope_freq_scale
        params.yarn_ext_factor, params.yarn_attn_factor = options.yarn_ext_factor, options.yarn_attn_factor
        params.yarn_beta_fast, params.yarn_beta_slow = options.yarn_beta_fast, options.yarn_beta_slow
        params.yarn_orig_ctx = options.yarn_orig_ctx
        params.type_k, params.type_v = options.cache_type_k, options.cache_type_v
        params.offload_kqv = not options.no_kv_offload
        if any(name == "flash_attn_type" for name, *_ in type(params)._fields_):
            # newer llama.cpp (llama-cpp-python 0.3.36): an enum whose default is auto, not off;
            # setting the old bool there would add a Python attribute and change nothing
            params.flash_attn_type = 1 if FLASH_ATTN[options.flash_attn] else 0
        else:
            params.flash_attn = FLASH_ATTN[options.flash_attn]
        try:
            cstate.llama_ctx = self.internals.LlamaContext(model=graph.model, params=params, verbose=False)
            cstate.n_batch = max(n_batch, 1)
            cstate.batch = self.internals.LlamaBatch(n_tokens=cstate.n_batch, embd=0, n_seq_max=1, verbose=False)
        except (ValueError, RuntimeError) as exc:
            self._drop_llama_context(cstate)
            budget.hold("kv-cache", 0)
            budget.hold("compute-buffers", 0)
            raise _error(ErrorCode.RUNTIME_ERROR, f"llama.cpp cannot create a context (ctx-size {n_ctx}): "
                                                  f"{exc}") from None
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
            # The previous prompt goes first; the tokenizer's memory is charged before it runs.
            cstate.prompt, cstate.prompt_tokens, cstate.too_long = b"", [], 0
            cstate.input_tokens, cstate.output_tokens = 0, 0
            budget = context.budget
            budget.hold("prompt", 0)
            budget.hold("prompt", size * (1 + TOKENIZE_BYTES_PER_BYTE + TOKENS_PER_BYTE * TOKEN_BYTES)
                        + EXTRA_TOKENS * TOKEN_BYTES)
            try:
                data = bytes(tensor.data)
                # Tokenized now, as WasmEdge does: guests read input_tokens (output 1) before compute.
                tokens = self._tokenize(cstate.graph, data) if data else array("i")
            except BaseException:
                budget.hold("prompt", 0)
                raise
            budget.hold("prompt", len(data) + len(tokens) * TOKEN_BYTES)  # what stays: the bytes and tokens
            cstate.prompt, cstate.prompt_tokens = data, tokens
            cstate.input_tokens = len(tokens)
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
        options = update(cstate.options, raw, where="metadata")
        # refused now, as WasmEdge's set_input refuses a bad json-schema
        checked = self._grammar_sampler(cstate.graph, options)
        if checked is not None:
            self.llama.llama_sampler_free(checked)
        cstate.options = options

    # -- generation --------------------------------------------------------------------------------
    def grammar_text(self, options: Options) -> str:
        """The GBNF the options ask for ("" for none): ``grammar`` checked, ``json-schema`` converted."""
        key = (options.grammar, options.json_schema)
        cached = self._grammars.get(key)
        if cached is None:
            if options.json_schema:
                cached = grammar.schema_to_gbnf(options.json_schema)
            else:
                grammar.check_gbnf(options.grammar)
                cached = options.grammar
            if len(self._grammars) >= 64:
                self._grammars.clear()
            self._grammars[key] = cached
        return cached

    def _grammar_sampler(self, graph: GraphState, options: Options) -> Any:
        """llama.cpp's grammar sampler for the options (None without a grammar); a grammar llama.cpp
        cannot parse is invalid_argument (llama-cpp-python would add the NULL it returns to the chain)."""
        text = self.grammar_text(options)
        if not text.strip():
            return None
        pointer = self.llama.llama_sampler_init_grammar(graph.model.vocab, text.encode("utf-8"), b"root")
        if not pointer:
            key = "json-schema" if options.json_schema else "grammar"
            raise _error(ErrorCode.INVALID_ARGUMENT, f"option {key}: llama.cpp cannot parse the grammar (or its "
                                                     f"root rule is missing or left-recursive)")
        return pointer

    def _sampler(self, graph: GraphState, options: Options) -> Any:
        # llama-cpp-python's Llama._init_sampler with WasmEdge's option names, so that a guest gets the
        # tokens Llama.generate gives; the samplers llama-cpp-python does not chain (DRY, XTC, dynamic
        # temperature) are added, at llama.cpp's common_sampler positions, only when asked for.
        llama = self.llama
        sampler = self.internals.LlamaSampler()
        # llama-cpp-python 0.3.36 (the pin) takes the vocabulary size for penalties and no longer
        # n_ctx_train for DRY; 0.3.16 the other way round (still accepted, for environments built
        # before the pin moved).
        vocab_first = [graph.model.n_vocab()] if self._penalties_take_n_vocab else []
        sampler.add_penalties(*vocab_first, options.last_n_penalty, options.repeat_penalty,
                              options.frequency_penalty, options.presence_penalty)
        if options.dry_multipier > 0:
            n_ctx_train = [] if self._penalties_take_n_vocab else [graph.model.n_ctx_train()]
            sampler.add_dry(graph.model, *n_ctx_train, options.dry_multipier, options.dry_base,
                            options.dry_allowed_length, options.dry_last_n_penalty, list(DRY_SEQ_BREAKERS))
        constrained = self._grammar_sampler(graph, options)
        if constrained is not None:
            llama.llama_sampler_chain_add(sampler.sampler, constrained)
            # llama.cpp's grammars match code points decoded leniently: a byte token F9 passes as the
            # lead byte of a 4-byte character, and the output is not UTF-8 (nor JSON).
            banned = self._not_utf8(graph)
            if banned:
                sampler.add_logit_bias(graph.model.n_vocab(), dict.fromkeys(banned, -math.inf))
        if options.temp == 0:  # WasmEdge clamps a negative temperature to 0
            sampler.add_greedy()
        elif options.mirostat == 1:
            sampler.add_mirostat(graph.model.n_vocab(), options.seed, MIROSTAT_TAU, options.mirostat_eta,
                                 MIROSTAT_M)
        elif options.mirostat == 2:
            sampler.add_mirostat_v2(options.seed, MIROSTAT_TAU, options.mirostat_eta)
        else:
            sampler.add_top_k(options.top_k)
            sampler.add_typical(options.typ_p, 1)
            sampler.add_top_p(options.top_p, 1)
            sampler.add_min_p(options.min_p, 1)
            if options.xtc_probability > 0:
                sampler.add_xtc(options.xtc_probability, options.xtc_threshold, 1, options.seed)
            if options.dynatemp_range > 0:
                sampler.add_temp_ext(options.temp, options.dynatemp_range, options.dynatemp_exponent)
            else:
                sampler.add_temp(options.temp)
            sampler.add_dist(options.seed)
        return sampler

    def _tokenize(self, graph: GraphState, text: bytes) -> array[int]:
        """The prompt's tokens, with a buffer sized by the prompt (llama-cpp-python's tokenize sizes
        it by the model's declared context: 8 GiB for a model that declares 2^31 tokens)."""
        llama, vocab = self.llama, graph.model.vocab
        add_bos = graph.model.add_bos_token()
        size = len(text) + EXTRA_TOKENS
        for _ in range(2):
            buffer = (llama.llama_token * size)()
            n = llama.llama_tokenize(vocab, text, len(text), buffer, size, add_bos, True)
            if n >= 0:
                return array("i", ctypes.string_at(buffer, n * TOKEN_BYTES))
            if -n > len(text) * TOKENS_PER_BYTE + EXTRA_TOKENS:
                break  # more than was charged: no tokenizer gives that many
            size = -n  # more tokens than bytes (invalid UTF-8): llama.cpp says exactly how many
        raise _error(ErrorCode.RUNTIME_ERROR, f"llama.cpp could not tokenize the prompt ({n} tokens)")

    @staticmethod
    def _prompt_tokens(cstate: ContextState) -> Sequence[int]:
        if cstate.too_long:
            raise _error(ErrorCode.PROMPT_TOO_LONG, f"the prompt is {cstate.too_long} bytes; no context of this "
                                                    f"model can hold more than {cstate.graph.max_prompt_bytes} "
                                                    f"bytes of prompt")
        if not cstate.prompt:
            raise _error(ErrorCode.INVALID_ARGUMENT, "no prompt: set input 0 first")
        return cstate.prompt_tokens

    def _decode(self, cstate: ContextState, tokens: Sequence[int], n_past: int) -> None:
        batch_size = cstate.n_batch
        for start in range(0, len(tokens), batch_size):
            chunk = tokens[start:start + batch_size]
            cstate.batch.set_batch(chunk, n_past=n_past + start, logits_all=False)
            try:
                cstate.llama_ctx.decode(cstate.batch)
            except RuntimeError as exc:
                raise _error(ErrorCode.CONTEXT_FULL, f"llama.cpp could not evaluate the tokens: {exc}") from None

    def _start(self, context: Context, cstate: ContextState) -> Generation:
        ctx = self._llama_context(context, cstate)
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
        return Generation(tokens=tokens, sampler=self._sampler(cstate.graph, options), n_past=len(tokens), n_ctx=n_ctx,
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
        if not cstate.options.ignore_eos and llama.llama_vocab_is_eog(cstate.graph.model.vocab, token):
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

    def _not_utf8(self, graph: GraphState) -> list[int]:
        """The tokens whose bytes hold one that never occurs in UTF-8, once per graph. The scan reads
        every piece into one buffer and keeps none of them: through ``piece`` it kept the whole
        vocabulary (29 MB of bytes objects for Gemma's 262144 tokens) for tokens never generated."""
        with graph.lock:
            if graph.not_utf8 is None:
                invalid = NOT_UTF8_BYTES
                vocab, to_piece = graph.model.vocab, self.llama.llama_token_to_piece
                buffer = ctypes.create_string_buffer(PIECE_BUFFER)
                banned = []
                for token in range(graph.model.n_vocab()):
                    n = to_piece(vocab, token, buffer, PIECE_BUFFER, 0, False)
                    if n < 0:  # a longer piece (a hostile vocabulary's): read alone, the buffer stays small
                        found = invalid.search(self._piece_bytes(graph, token, -n)) is not None
                    else:
                        found = invalid.search(buffer.raw, 0, n) is not None  # .raw: PIECE_BUFFER bytes
                    if found:
                        banned.append(token)
                graph.not_utf8 = banned
            return graph.not_utf8

    def piece(self, graph: GraphState, token: int) -> bytes:
        """The token's text bytes (what llama-cpp-python's ``detokenize([token])`` gives), cached per
        graph: llama_token_to_piece costs tens of microseconds through ctypes, a dict lookup does not."""
        cached = graph.pieces.get(token)
        if cached is not None:
            return cached
        piece = self._piece_bytes(graph, token, 64)
        graph.pieces[token] = piece  # at most one entry per vocabulary token
        return piece

    def _piece_bytes(self, graph: GraphState, token: int, size: int) -> bytes:
        vocab = graph.model.vocab
        buffer = ctypes.create_string_buffer(size)
        n = self.llama.llama_token_to_piece(vocab, token, buffer, size, 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self.llama.llama_token_to_piece(vocab, token, buffer, -n, 0, False)
        return buffer.raw[:max(n, 0)]

    def compute(self, context: Context) -> None:
        cstate: ContextState = context.state
        cstate.stream = None
        if cstate.options.embedding:
            cstate.output = self._embed(context, cstate)
            return
        gen = self._start(context, cstate)
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

    def _embed(self, context: Context, cstate: ContextState) -> bytes:
        ctx = self._llama_context(context, cstate)
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
        pooling = ctx.pooling_type()
        if pooling == llama.LLAMA_POOLING_TYPE_NONE:
            pointer = llama.llama_get_embeddings_ith(ctx.ctx, -1)  # the last token's, as WasmEdge returns
        else:
            pointer = llama.llama_get_embeddings_seq(ctx.ctx, 0)
        if not pointer:
            raise _error(ErrorCode.RUNTIME_ERROR, "llama.cpp returned no embedding")
        if pooling == llama.LLAMA_POOLING_TYPE_RANK:
            n_out = max(int(llama.llama_model_n_cls_out(cstate.graph.model.model)), 1)
            values = np.ctypeslib.as_array(pointer, shape=(n_out,)).astype(np.float32)  # scores, not normalised
        else:
            n_out = n_embd
            values = normalize(np.ctypeslib.as_array(pointer, shape=(n_embd,)), cstate.options.embd_normalize)
        ctx.kv_cache_clear()
        cstate.input_tokens, cstate.output_tokens = len(tokens), 0
        return embedding_json(n_out, values)

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
            cstate.stream = self._start(context, cstate)
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
