"""The whisper.cpp backend: WasmEdge's Whisper conventions on pywhispercpp.

* ``load``: the model file's bytes (or a named model's file), validated by :mod:`.validate`; a guest's
  bytes are first loaded and run in a child process (:mod:`._probe`); whisper.cpp reads them from
  memory (no temporary file). A second builder, or a load config, is WasmEdge's JSON options.
* A graph is one ``whisper_context``; its decoding state is the context's, so the graph's calls are
  serialised (``concurrent_contexts=False``).
* Inputs: 0 = a WAV file's bytes (any declared type and dims: WasmEdge's example says f32
  ``[1, bytes]``), 1 = JSON options, which reset the context's options to the graph's first.
* ``compute`` = ``whisper_full`` (``whisper_full_parallel`` with ``processors`` > 1, each extra processor's
  whisper.cpp state held on the context's budget first); output 0 = the segments as WasmEdge prints
  them: ``[HH:MM:SS.mmm --> HH:MM:SS.mmm]  text`` a line each.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wasinn import (
    Context,
    ErrorCode,
    ExecutionTarget,
    Graph,
    Hardware,
    ModelDescription,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
)
from wasinn_backend_whisper import _probe, validate, wav
from wasinn_backend_whisper.options import Options, check, parse, threads_here, update

log = logging.getLogger("wasinn.whisper")
cpp_log = logging.getLogger("wasinn.whisper.cpp")

INPUTS = (TensorSpec("audio", TensorType.F32, None, any_length=True),
          TensorSpec("metadata", TensorType.U8, (None,), any_length=True, optional=True))
OUTPUTS = (TensorSpec("text", TensorType.U8, (None,)),)
EMPTY = np.zeros(0, np.uint8)
GGML_LOG_ERROR = 4
#: Host memory per audio sample on top of the float samples: the log-mel spectrogram (n_mels floats
#: per 160 samples) and whisper.cpp's resampled copies, rounded up.
MEL_BYTES_PER_SAMPLE = 4
#: whisper.cpp reports each buffer of a new decoding state as it allocates it ("whisper_init_state: kv
#: cross size = 0.39 MB", "... compute buffer (decode) = 14.90 MB"): what one more processor costs.
STATE_SIZE_LINE = re.compile(r"whisper_init_state: (kv [a-z]+ +size|compute buffer \([a-z]+\)) *= *([0-9.]+) MB")
#: The self-attention cache grows with the decoders (beam-size / best-of, at most 8) in whisper_full.
KV_SELF_DECODERS = 8


def _invalid(message: str) -> WasiNnError:
    return WasiNnError(ErrorCode.INVALID_ARGUMENT, message)


def timestamp(t: int) -> str:
    """whisper.cpp's time (units of 10 ms) as WasmEdge prints it: ``HH:MM:SS.mmm``."""
    msec = t * 10
    hours, msec = divmod(msec, 3_600_000)
    minutes, msec = divmod(msec, 60_000)
    seconds, msec = divmod(msec, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{msec:03d}"


def speaker(channels: list[np.ndarray], t0: int, t1: int) -> str:
    """WasmEdge's diarization guess: which channel is louder over the segment."""
    n = len(channels[0])
    i0 = max(0, min(n - 1, t0 * 16000 // 100))
    i1 = max(0, min(n - 1, t1 * 16000 // 100))
    # Summed in double and in order, as WasmEdge's loop does (so a near tie falls the same way).
    e0, e1 = (float(np.cumsum(np.abs(c[i0:i1]), dtype=np.float64)[-1]) if i1 > i0 else 0.0 for c in channels[:2])
    who = "0" if e0 > 1.1 * e1 else "1" if e1 > 1.1 * e0 else "?"
    return f"(speaker {who})"


def state_bytes(lines: list[str], info: validate.WhisperInfo) -> int:
    """What one more whisper.cpp decoding state costs, from whisper.cpp's own report of the graph's
    first one (the self-attention cache counted for the most decoders); from the hyperparameters if
    the report is missing (f16 caches, compute buffers as large as the caches)."""
    total = 0.0
    for line in lines:
        for what, mb in STATE_SIZE_LINE.findall(line):
            total += float(mb) * (KV_SELF_DECODERS if what.startswith("kv self") else 1)
    if total:
        return int(total * 1e6) + 1
    hp = info.hparams
    kv_cross = 2 * 2 * hp["n_text_layer"] * hp["n_audio_ctx"] * hp["n_text_state"]
    kv_self = 2 * 2 * hp["n_text_layer"] * hp["n_text_ctx"] * hp["n_text_state"] * KV_SELF_DECODERS
    return 2 * (kv_cross + kv_self)


@dataclass(eq=False)
class GraphState:
    ctx: Any  # _pywhispercpp.whisper_context
    info: validate.WhisperInfo
    options: Options
    buffer: Any  # the ctypes buffer the model was read from (freed after whisper_free)
    state_bytes: int = 0  # one more decoding state (whisper_full_parallel's per processor)
    lock: threading.Lock = field(default_factory=threading.Lock)
    contexts: int = 0
    unloaded: bool = False
    freed: bool = False


@dataclass(eq=False)
class ContextState:
    graph: GraphState
    options: Options
    pcm: np.ndarray | None = None
    channels: list[np.ndarray] = field(default_factory=list)
    output: bytes = b""
    closed: bool = False


class WhisperBackend:
    def __init__(self) -> None:
        import _pywhispercpp

        self.pw = _pywhispercpp
        self._errors: list[str] | None = None
        self._sizes: list[str] = []
        self._log_lock = threading.Lock()
        # whisper.cpp logs to stderr by default: route it to Python logging. A Python callback still
        # installed when the interpreter finalizes aborts the process: removed at exit.
        self.pw.whisper_log_set(self._on_log)
        atexit.register(self.pw.whisper_log_set, None)
        capsule = ctypes.pythonapi.PyCapsule_New
        capsule.restype = ctypes.py_object
        capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self._capsule = capsule

    def _on_log(self, level: int, text: str) -> None:
        errors = self._errors
        if errors is not None:
            if level == GGML_LOG_ERROR:
                errors.append(str(text).strip())
            elif "whisper_init_state" in text:
                self._sizes.append(str(text))
        if cpp_log.isEnabledFor(logging.DEBUG):
            message = str(text).rstrip()
            if message and message != ".":
                cpp_log.debug("%s", message)

    # -- graphs ----------------------------------------------------------------------------------
    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        options = Options()
        if model.config:
            # The embedder's part first (it may set embedder-only keys), then the guest's over it.
            guest = dict(model.guest_config)
            own = {key: value for key, value in model.config.items() if key not in guest}
            options = update(options, own, "load config", embedder=True)
            if guest:
                options = update(options, guest, "load config")
        if len(model.builders) > 1:  # WasmEdge: builder 1 holds the options
            options = update(options, parse(model.builders[1], "builder 1 (options)"), "builder 1 (options)")
        data = model.builders[0]
        try:
            info = validate.validate(data)
        except validate.WhisperFormatError as exc:
            raise _invalid(f"malformed whisper.cpp model: {exc}") from None
        if model.target not in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"this whisper.cpp build runs on the CPU only, "
                                                               f"not a {model.target.value}")
        if _probe.wanted(trusted=model.name is not None):
            _probe.probe(data, hashlib.sha256(data).hexdigest(), model.limits.worker_memory_bytes)
        buffer = ctypes.create_string_buffer(data, len(data))
        params = self.pw.whisper_context_default_params()
        params.use_gpu = False
        with self._log_lock:
            self._errors, self._sizes = [], []
            try:
                ctx = self.pw.whisper_init_from_buffer_with_params(
                    self._capsule(ctypes.addressof(buffer), None, None), len(data), params)
                errors, sizes = self._errors, self._sizes
            finally:
                self._errors, self._sizes = None, []
        # whisper.cpp returns NULL for a model it cannot read, and the binding wraps it in an object
        # with no way to tell: any further call would crash. Its error log line is the tell.
        if errors:
            if ctx is not None:
                log.debug("whisper: load failed (%s); the context is not used", errors[-1][:200])
            raise _invalid(f"whisper.cpp cannot load the model: {errors[-1][:200]}")
        state = GraphState(ctx=ctx, info=info, options=options, buffer=buffer,
                           state_bytes=state_bytes(sizes, info))
        try:
            state.options = self._language(state, options, "load")
        except WasiNnError:
            self._free(state)
            raise
        log.info("whisper: loaded a %s model (%s, %d tensors) on the CPU", info.model_type,
                 "multilingual" if info.multilingual else "English-only", len(info.tensors))
        return Graph(inputs=INPUTS, outputs=OUTPUTS, device="cpu", state=state)

    def _language(self, graph: GraphState, options: Options, where: str) -> Options:
        """WasmEdge's handleTranslationConfig: a known language; an English-only model transcribes
        English and does not translate; detect-language means language "auto"."""
        import dataclasses

        if options.language != "auto" and self.pw.whisper_lang_id(options.language) == -1:
            raise _invalid(f"{where}: unknown language {options.language[:40]!r}")
        if not graph.info.multilingual and (options.language != "en" or options.translate):
            if options.enable_log:
                log.info("whisper: the model is not multilingual: language and translate ignored")
            options = dataclasses.replace(options, language="en", translate=False)
        if options.detect_language:
            options = dataclasses.replace(options, language="auto")
        return options

    def unload(self, graph: Graph) -> None:
        state: GraphState = graph.state
        with state.lock:
            state.unloaded = True
            if state.contexts == 0:
                self._free(state)

    def _free(self, state: GraphState) -> None:
        if not state.freed:
            state.freed = True
            self.pw.whisper_free(state.ctx)
            state.buffer = None

    # -- contexts ----------------------------------------------------------------------------------
    def init_execution_context(self, graph: Graph) -> Context:
        state: GraphState = graph.state
        with state.lock:
            if state.freed:
                raise _invalid("the graph was unloaded")
            state.contexts += 1
        return Context(graph=graph, state=ContextState(graph=state, options=state.options))

    def finalize_execution_context(self, context: Context) -> None:
        cstate: ContextState = context.state
        if cstate.closed:
            return
        cstate.closed = True
        cstate.pcm, cstate.channels, cstate.output = None, [], b""
        with cstate.graph.lock:
            cstate.graph.contexts -= 1
            if cstate.graph.unloaded and cstate.graph.contexts == 0:
                self._free(cstate.graph)

    # -- inputs ------------------------------------------------------------------------------------
    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        cstate: ContextState = context.state
        if index == 1:
            # WasmEdge: the graph's options first, then these (not added to the last metadata's).
            doc = parse(bytes(tensor.data), "metadata (input 1)")
            options = update(cstate.graph.options, doc, "metadata (input 1)")
            cstate.options = self._language(cstate.graph, options, "metadata (input 1)")
            return
        if index != 0:
            raise _invalid(f"input {index}: the Whisper backend takes 0 (WAV audio) and 1 (options)")
        if len(tensor.shape) != 2 or tensor.shape[0] != 1:
            # WasmEdge's check; the type is not looked at (its example declares the bytes as f32).
            raise _invalid(f"input 0 must have dims [1, N] (WasmEdge's convention), not {list(tensor.shape)}")
        try:
            parsed = wav.parse(memoryview(tensor.data).cast("B"))
        except wav.WavError as exc:
            raise _invalid(f"input 0: {exc}") from None
        # Counted before it is allocated: float samples (mono, and per channel for diarize) and the mel.
        per_sample = 4 * (1 + (2 if cstate.options.diarize and parsed.channels == 2 else 0)) + MEL_BYTES_PER_SAMPLE
        context.budget.hold("audio", parsed.frames * per_sample)
        cstate.pcm, cstate.channels = None, []
        cstate.pcm, cstate.channels = wav.to_float(parsed, stereo=cstate.options.diarize)
        cstate.output = b""

    # -- compute -----------------------------------------------------------------------------------
    def _params(self, options: Options, threads: int, n_audio_ctx: int) -> Any:
        pw = self.pw
        if options.audio_ctx > n_audio_ctx:
            raise _invalid(f"audio-ctx {options.audio_ctx} is more than the model's {n_audio_ctx}")
        params = pw.whisper_full_default_params(pw.WHISPER_SAMPLING_BEAM_SEARCH)
        params.strategy = pw.WHISPER_SAMPLING_BEAM_SEARCH if options.beam_size > 1 else pw.WHISPER_SAMPLING_GREEDY
        params.n_threads = threads
        params.n_max_text_ctx = min(options.max_context, 1 << 30)
        params.offset_ms = options.offset_t
        params.duration_ms = options.duration
        params.print_progress = False
        params.print_realtime = False
        params.thold_pt = options.word_threshold
        params.max_len = options.max_len
        params.token_timestamps = options.max_len > 0
        params.split_on_word = options.split_on_word
        params.translate = options.translate
        params.language = options.language
        params.detect_language = options.detect_language
        params.initial_prompt = options.prompt
        params.temperature_inc = options.temperature_inc
        params.temperature = options.temperature
        params.entropy_thold = options.entropy_threshold
        params.logprob_thold = options.logprob_threshold
        params.greedy = {"best_of": options.best_of}
        params.beam_search = {"beam_size": options.beam_size, "patience": -1.0}
        params.print_timestamps = not options.no_timestamps
        params.no_timestamps = options.no_timestamps
        params.audio_ctx = options.audio_ctx
        return params

    def compute(self, context: Context) -> None:
        cstate: ContextState = context.state
        if cstate.pcm is None:
            raise _invalid("no audio: set input 0 (a WAV file's bytes) first")
        options = cstate.options
        check(options, "options")
        graph = cstate.graph
        threads, processors = threads_here(options)
        params = self._params(options, threads, graph.info.hparams["n_audio_ctx"])
        pcm = cstate.pcm
        cstate.output = b""
        with graph.lock:
            if graph.freed:
                raise _invalid("the graph was unloaded")
            if processors > 1:
                # whisper_full_parallel makes a decoding state per extra processor for the call: counted
                # before it is allocated, given back after.
                context.budget.hold("parallel-states", (processors - 1) * graph.state_bytes)
                try:
                    status = self.pw.whisper_full_parallel(graph.ctx, params, pcm, len(pcm), processors)
                finally:
                    context.budget.hold("parallel-states", 0)
            else:
                status = self.pw.whisper_full(graph.ctx, params, pcm, len(pcm))
            if status != 0:
                raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"whisper.cpp failed to process the audio ({status})")
            cstate.output = self._text(graph, options, cstate.channels)

    def _text(self, graph: GraphState, options: Options, channels: list[np.ndarray]) -> bytes:
        """The segments as WasmEdge's new-segment callback writes them."""
        pw, ctx = self.pw, graph.ctx
        out = bytearray()
        for i in range(pw.whisper_full_n_segments(ctx)):
            t0 = t1 = 0
            if not options.no_timestamps:
                t0 = pw.whisper_full_get_segment_t0(ctx, i)
                t1 = pw.whisper_full_get_segment_t1(ctx, i)
                out += f"[{timestamp(t0)} --> {timestamp(t1)}] ".encode()
            if options.diarize and len(channels) == 2:
                out += speaker(channels, t0, t1).encode()
            out += pw.whisper_full_get_segment_text(ctx, i)
            if not options.no_timestamps or options.diarize:
                out += b"\n"
        return bytes(out)

    # -- outputs -----------------------------------------------------------------------------------
    def get_output(self, context: Context, index: int) -> np.ndarray:
        cstate: ContextState = context.state
        # WasmEdge returns the text whatever the index.
        return np.frombuffer(cstate.output, np.uint8) if cstate.output else EMPTY
