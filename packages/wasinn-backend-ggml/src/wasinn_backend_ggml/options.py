"""WasmEdge GGML option keys -> llama.cpp parameters.

Guests send options as JSON: the config of ``load_by_name_with_config`` (at load) and input 1 of
``set_input`` (mid-session, updating the context's options). Keys and meanings follow WasmEdge's
GGML plugin; unknown keys are logged, never fatal (guests written for newer WasmEdge send keys this
backend does not know). A known key with a value of the wrong type is ``invalid_argument``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from wasinn import ErrorCode, WasiNnError

log = logging.getLogger("wasinn.ggml")

#: llama.cpp's LLAMA_DEFAULT_SEED: a random seed per generation.
DEFAULT_SEED = 0xFFFFFFFF


@dataclass(frozen=True)
class Options:
    # model (read at load; a later change is logged as taking effect at the next load only)
    n_gpu_layers: int = 0
    main_gpu: int = 0
    tensor_split: str = ""
    use_mmap: bool = True
    use_mlock: bool = False
    check_tensors: bool = False
    # context (a change re-creates the context's llama_context)
    ctx_size: int = 4096
    batch_size: int = 512
    ubatch_size: int = 512
    threads: int = 0  # 0: llama-cpp-python's default (half the cores; all of them for prompts)
    threads_batch: int = 0  # 0: as threads when that is set, else all the cores
    embedding: bool = False
    pooling_type: int = -1  # llama_pooling_type; -1: the model's own
    attention_type: int = -1
    rope_scaling_type: int = -1
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    yarn_ext_factor: float = -1.0
    yarn_attn_factor: float = 1.0
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    yarn_orig_ctx: int = 0
    flash_attn: str = "off"
    cache_type_k: int = 1  # GGML_TYPE_F16
    cache_type_v: int = 1
    no_kv_offload: bool = False
    # generation
    n_predict: int = -1  # -1: until end of sequence or a full context
    reverse_prompt: str = ""
    temp: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    typ_p: float = 1.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    last_n_penalty: int = 64
    mirostat: int = 0
    mirostat_eta: float = 0.1
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    dry_multipier: float = 0.0  # WasmEdge's spelling of dry-multiplier
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_last_n_penalty: int = -1
    ignore_eos: bool = False
    #: GBNF text (``grammar``) or a JSON schema (``json-schema``): the later one given wins, as in
    #: WasmEdge (both set llama.cpp's one sampling grammar).
    grammar: str = ""
    json_schema: str = ""
    seed: int = DEFAULT_SEED
    embd_normalize: int = 2  # common_embd_normalize: -1 none, 0 max-abs (int16), 1 taxicab, 2 L2, p>2 p-norm
    stream_stdout: bool = False
    enable_log: bool = False
    enable_debug_log: bool = False

    def n_threads(self) -> tuple[int, int]:
        """(generation threads, prompt threads), as llama-cpp-python chooses them by default."""
        cores = os.cpu_count() or 1
        threads = self.threads if self.threads > 0 else max(cores // 2, 1)
        batch = self.threads_batch if self.threads_batch > 0 else (self.threads if self.threads > 0 else cores)
        return threads, batch

    @property
    def log_timings(self) -> bool:
        """Whether to log prompt and generation timings (WasmEdge: either log option)."""
        return self.enable_log or self.enable_debug_log

    def context_key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in CONTEXT_FIELDS)


MODEL_KEYS = ("n_gpu_layers", "main_gpu", "tensor_split", "use_mmap", "use_mlock", "check_tensors")
CONTEXT_FIELDS = ("ctx_size", "batch_size", "ubatch_size", "threads", "threads_batch", "embedding", "pooling_type",
                  "attention_type", "rope_scaling_type", "rope_freq_base", "rope_freq_scale", "yarn_ext_factor",
                  "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_orig_ctx", "flash_attn",
                  "cache_type_k", "cache_type_v", "no_kv_offload")
_KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
_TYPES: dict[str, type] = {f.name: _KINDS[str(f.type)] for f in fields(Options)}

#: KV cache types a guest may choose (ggml_type -> bytes per element, at most): the float types and
#: the quantizations llama.cpp's KV cache supports. Any other number is invalid_argument.
CACHE_TYPES = {0: 4.0, 1: 2.0, 30: 2.0, 8: 34 / 32, 2: 18 / 32, 3: 20 / 32, 6: 22 / 32, 7: 24 / 32, 20: 18 / 32}
CACHE_TYPE_NAMES = {0: "f32", 1: "f16", 30: "bf16", 8: "q8_0", 2: "q4_0", 3: "q4_1", 6: "q5_0", 7: "q5_1",
                    20: "iq4_nl"}
#: WasmEdge's flash-attn spellings -> whether flash attention is on ("auto" is off, as llama-cpp-python's
#: Llama defaults to; llama.cpp's own default, auto, may turn it on and change results slightly).
FLASH_ATTN = {"on": True, "enabled": True, "off": False, "disabled": False, "auto": False}


@dataclass(frozen=True)
class Key:
    """One key of WasmEdge's GGML option parser (``GGML/metadata/metadata_parser.cpp``): the
    Options field that honours it (None: ignored, ``note`` says why) and the llama.cpp parameter."""

    field: str | None
    llama: str
    note: str


def _h(field_name: str, llama: str, note: str = "") -> Key:
    return Key(field_name, llama, note)


def _i(llama: str, note: str) -> Key:
    return Key(None, llama, note)


_ONE_SEQ = "one sequence per wasi-nn context (contexts are the parallelism)"
_NO_FILES = "names a host file or URL: a guest never chooses host files, and there is no network"
_CLI = "a llama.cpp command-line tool's setting, no meaning for a wasi-nn context"
_SERVER = "llama-server's setting: wasinn is not an HTTP server"
_CPU = "CPU scheduling is the host's (threads only)"
_SPEC = "speculative decoding needs a draft model, which WasmEdge loads only from a file path"
_TTS = "text-to-speech (a vocoder model from a file path) is not supported"

#: Every key WasmEdge's GGML plugin parses, in its parser's order. The docs' table is generated from
#: this (``python -m wasinn_backend_ggml.options``; a test checks docs/backends/ggml.md).
WASMEDGE_KEYS: dict[str, Key] = {
    "enable-log": _h("enable_log", "-", "log prompt and generation timings"),
    "enable-debug-log": _h("enable_debug_log", "-", "as enable-log"),
    "main-gpu": _h("main_gpu", "llama_model_params.main_gpu", "model-level (load); ignored on a CPU-only build"),
    "n-gpu-layers": _h("n_gpu_layers", "llama_model_params.n_gpu_layers",
                       "model-level (load); a CPU-only build runs every layer on the CPU (logged)"),
    "cpu-moe": _i("tensor_buft_overrides", "llama-cpp-python cannot set tensor buffer overrides; on the CPU "
                  "every expert is on the CPU already"),
    "n-cpu-moe": _i("tensor_buft_overrides", "as cpu-moe"),
    "tensor-split": _h("tensor_split", "llama_model_params.tensor_split", "model-level; logged as ignored: one "
                       "device"),
    "embedding": _h("embedding", "llama_context_params.embeddings", "compute returns the prompt's embedding"),
    "split-mode": _i("llama_model_params.split_mode", "a single device is used"),
    "mmproj": _i("mtmd / clip", "vision: a non-empty value is refused (unsupported_operation): a host path "
                 "chosen by the guest; not implemented yet (docs: Vision)"),
    "tts": _i("-", _TTS),
    "model-vocoder": _i("-", _TTS),
    "tts-output-file": _i("-", _TTS),
    "tts-speaker-file": _i("-", _TTS),
    "ctx-size": _h("ctx_size", "llama_context_params.n_ctx", "capped by Limits.max_context_tokens; charged"),
    "batch-size": _h("batch_size", "llama_context_params.n_batch"),
    "ubatch-size": _h("ubatch_size", "llama_context_params.n_ubatch"),
    "n-keep": _i("common_params.n_keep", "no context shift: a full context is ContextFull (101), as in WasmEdge"),
    "n-chunks": _i("common_params.n_chunks", "perplexity tool"),
    "n-parallel": _i("common_params.n_parallel", _ONE_SEQ),
    "n-sequences": _i("common_params.n_sequences", _ONE_SEQ),
    "grp-attn-n": _i("common_params.grp_attn_n", "self-extend is a llama.cpp main-example feature, not in "
                     "llama_context_params"),
    "grp-attn-w": _i("common_params.grp_attn_w", "as grp-attn-n"),
    "n-print": _i("common_params.n_print", _CLI),
    "rope-freq-base": _h("rope_freq_base", "llama_context_params.rope_freq_base", "0: the model's"),
    "rope-freq-scale": _h("rope_freq_scale", "llama_context_params.rope_freq_scale", "0: the model's"),
    "yarn-ext-factor": _h("yarn_ext_factor", "llama_context_params.yarn_ext_factor"),
    "yarn-attn-factor": _h("yarn_attn_factor", "llama_context_params.yarn_attn_factor"),
    "yarn-beta-fast": _h("yarn_beta_fast", "llama_context_params.yarn_beta_fast"),
    "yarn-beta-slow": _h("yarn_beta_slow", "llama_context_params.yarn_beta_slow"),
    "yarn-orig-ctx": _h("yarn_orig_ctx", "llama_context_params.yarn_orig_ctx"),
    "mask-valid": _i("cpuparams.mask_valid", _CPU),
    "priority": _i("cpuparams.priority", _CPU),
    "strict-cpu": _i("cpuparams.strict_cpu", _CPU),
    "poll": _i("cpuparams.poll", _CPU),
    "mask-valid-batch": _i("cpuparams_batch.mask_valid", _CPU),
    "priority-batch": _i("cpuparams_batch.priority", _CPU),
    "strict-cpu-batch": _i("cpuparams_batch.strict_cpu", _CPU),
    "poll-batch": _i("cpuparams_batch.poll", _CPU),
    "numa": _i("llama_numa_init", "process-wide, the embedder's choice"),
    "rope-scaling-type": _h("rope_scaling_type", "llama_context_params.rope_scaling_type"),
    "pooling-type": _h("pooling_type", "llama_context_params.pooling_type",
                       "-1 the model's, 0 none (the last token's embedding), 1 mean, 2 cls, 3 last; 4 rank only "
                       "for a model with a classifier head"),
    "attention-type": _h("attention_type", "llama_context_params.attention_type"),
    "threads": _h("threads", "llama_context_params.n_threads", "at most the cores"),
    "threads-batch": _h("threads_batch", "llama_context_params.n_threads_batch", "at most the cores"),
    "n-prev": _i("sampling.n_prev", "only for llama.cpp's common_sampler's text of previous tokens"),
    "n-probs": _i("sampling.n_probs", "WasmEdge returns no probabilities"),
    "min-keep": _i("sampling.min_keep", "llama-cpp-python keeps 1, as llama.cpp's default"),
    "top-k": _h("top_k", "llama_sampler_init_top_k"),
    "min-p": _h("min_p", "llama_sampler_init_min_p"),
    "xtc-probability": _h("xtc_probability", "llama_sampler_init_xtc", "> 0 adds the XTC sampler"),
    "xtc-threshold": _h("xtc_threshold", "llama_sampler_init_xtc"),
    "typ-p": _h("typ_p", "llama_sampler_init_typical"),
    "dynatemp-range": _h("dynatemp_range", "llama_sampler_init_temp_ext", "> 0: dynamic temperature"),
    "dynatemp-exponent": _h("dynatemp_exponent", "llama_sampler_init_temp_ext"),
    "last-n-penalty": _h("last_n_penalty", "llama_sampler_init_penalties(penalty_last_n)"),
    "temp": _h("temp", "llama_sampler_init_temp", "negative is 0 (greedy), as WasmEdge clamps it"),
    "top-p": _h("top_p", "llama_sampler_init_top_p"),
    "repeat-penalty": _h("repeat_penalty", "llama_sampler_init_penalties"),
    "presence-penalty": _h("presence_penalty", "llama_sampler_init_penalties"),
    "frequency-penalty": _h("frequency_penalty", "llama_sampler_init_penalties"),
    "dry-multipier": _h("dry_multipier", "llama_sampler_init_dry", "WasmEdge's spelling; > 0 adds DRY"),
    "dry-base": _h("dry_base", "llama_sampler_init_dry"),
    "dry-allowed-length": _h("dry_allowed_length", "llama_sampler_init_dry"),
    "dry-last-n-penalty": _h("dry_last_n_penalty", "llama_sampler_init_dry(penalty_last_n)",
                             "DRY's window (WasmEdge writes it into the repetition penalty's window instead)"),
    "mirostat": _h("mirostat", "llama_sampler_init_mirostat / _v2", "1 or 2; tau 5.0 (llama.cpp's default)"),
    "mirostat-eta": _h("mirostat_eta", "llama_sampler_init_mirostat"),
    "ignore-eos": _h("ignore_eos", "-", "end-of-generation tokens do not end the generation"),
    "no-perf-sampling": _i("sampling.no_perf", "performance counters are not reported"),
    "timing-per-token": _i("sampling.timing_per_token", "performance counters are not reported"),
    "grammar": _h("grammar", "llama_sampler_init_grammar", "GBNF; the output follows it"),
    "json-schema": _h("json_schema", "llama_sampler_init_grammar",
                      "converted to GBNF (strict JSON strings: no raw control characters)"),
    "seed": _h("seed", "llama_sampler_init_dist(seed)"),
    "n-max-speculative": _i("speculative.n_max", _SPEC),
    "n-min-speculative": _i("speculative.n_min", _SPEC),
    "n-gpu-layers-speculative": _i("speculative.n_gpu_layers", _SPEC),
    "p-split-speculative": _i("speculative.p_split", _SPEC),
    "p-min-speculative": _i("speculative.p_min", _SPEC),
    "n-ctx-speculative": _i("-", "removed from llama.cpp (WasmEdge warns too)"),
    "hf-repo-vocoder": _i("-", _NO_FILES),
    "hf-file-vocoder": _i("-", _NO_FILES),
    "model-url-vocoder": _i("-", _NO_FILES),
    "stream-stdout": _h("stream_stdout", "-", "each token also on the host's stdout during compute"),
    "n-predict": _h("n_predict", "-", "tokens to generate at most; -1 until the end"),
    "reverse-prompt": _h("reverse_prompt", "-", "stop after the text that ends with it"),
    "image": _i("mtmd", "vision: a non-empty value is refused, as mmproj"),
    "always-regenerate-image-embd": _i("-", "vision is not supported"),
    "model-alias": _i("common_params.model_alias", _SERVER),
    "model-url": _i("-", _NO_FILES),
    "hf-token": _i("-", _NO_FILES),
    "hf-repo": _i("-", _NO_FILES),
    "hf-file": _i("-", _NO_FILES),
    "prompt-file": _i("-", _NO_FILES),
    "path-prompt-cache": _i("-", _NO_FILES),
    "input-prefix": _i("common_params.input_prefix", "interactive mode of llama.cpp's CLI"),
    "input-suffix": _i("common_params.input_suffix", "interactive mode of llama.cpp's CLI"),
    "lookup-cache-static": _i("-", _NO_FILES),
    "lookup-cache-dynamic": _i("-", _NO_FILES),
    "logits-file": _i("-", _NO_FILES),
    "lora-init-without-apply": _i("-", "LoRA adapters are files: not supported"),
    "verbosity": _i("common_params.verbosity", "use enable-log / enable-debug-log"),
    "control-vector-layer-start": _i("-", "control vectors are files: not supported"),
    "control-vector-layer-end": _i("-", "control vectors are files: not supported"),
    "ppl-stride": _i("-", _CLI), "ppl-output-type": _i("-", _CLI),
    "hellaswag": _i("-", _CLI), "hellaswag-tasks": _i("-", _CLI),
    "winogrande": _i("-", _CLI), "winogrande-tasks": _i("-", _CLI),
    "multiple-choice": _i("-", _CLI), "multiple-choice-tasks": _i("-", _CLI),
    "kl-divergence": _i("-", _CLI), "usage": _i("-", _CLI), "use-color": _i("-", _CLI),
    "special": _i("common_params.special", "tokens are returned as llama-cpp-python detokenizes them"),
    "interactive": _i("-", _CLI), "interactive-first": _i("-", _CLI),
    "prompt-cache-all": _i("-", _NO_FILES), "prompt-cache-ro": _i("-", _NO_FILES),
    "escape": _i("-", _CLI), "multiline-input": _i("-", _CLI), "simple-io": _i("-", _CLI),
    "cont-batching": _i("-", _SERVER),
    "flash-attn": _h("flash_attn", "llama_context_params.flash_attn", "on / off / auto (auto is off, "
                     "llama-cpp-python's default)"),
    "no-perf": _i("llama_context_params.no_perf", "performance counters are not reported"),
    "ctx-shift": _i("common_params.ctx_shift", "no context shift, as WasmEdge: a full context is ContextFull"),
    "input-prefix-bos": _i("-", _CLI),
    "use-mlock": _h("use_mlock", "llama_model_params.use_mlock", "model-level (load)"),
    "use-mmap": _h("use_mmap", "llama_model_params.use_mmap", "model-level (load)"),
    "load-mode": _i("llama_model_params.load_mode", "bound from llama-cpp-python 0.3.36 on, not honoured yet; "
                                                   "use use-mmap / use-mlock"),
    "verbose-prompt": _i("-", _CLI), "display-prompt": _i("-", _CLI),
    "no-kv-offload": _h("no_kv_offload", "llama_context_params.offload_kqv", "no effect on the CPU"),
    "warmup": _i("-", "llama-cpp-python does no warm-up run"),
    "check-tensors": _h("check_tensors", "llama_model_params.check_tensors", "model-level (load)"),
    "cache-type-k": _h("cache_type_k", "llama_context_params.type_k",
                       "a ggml_type number: f32 0, f16 1, bf16 30, q8_0 8, q4_0 2, q4_1 3, q5_0 6, q5_1 7, "
                       "iq4_nl 20"),
    "cache-type-v": _h("cache_type_v", "llama_context_params.type_v",
                       "as cache-type-k; a quantized V cache needs flash-attn on"),
    "embd-normalize": _h("embd_normalize", "common_embd_normalize",
                         "-1 none, 0 max-abs to int16, 1 taxicab, 2 L2 (the default), p > 2 p-norm"),
    "embd-out": _i("common_params.embd_out", "embedding tool's output format"),
    "embd-sep": _i("common_params.embd_sep", "embedding tool's separator: one text per compute"),
    "reranking": _h("pooling_type", "llama_context_params.pooling_type = RANK",
                    "embedding with rank pooling (a model with a classifier head)"),
    "port": _i("-", _SERVER), "timeout-read": _i("-", _SERVER), "timeout-write": _i("-", _SERVER),
    "n-threads-http": _i("-", _SERVER), "n-cache-reuse": _i("-", _SERVER), "hostname": _i("-", _SERVER),
    "public-path": _i("-", _SERVER),
    "chat-template": _i("-", "guests apply their prompt templates themselves (LlamaEdge does)"),
    "enable-chat-template": _i("-", "guests apply their prompt templates themselves"),
    "ssl-file-key": _i("-", _SERVER), "ssl-file-cert": _i("-", _SERVER), "webui": _i("-", _SERVER),
    "endpoint-slots": _i("-", _SERVER), "endpoint-props": _i("-", _SERVER), "endpoint-metrics": _i("-", _SERVER),
    "log-json": _i("-", _SERVER), "slot-save-path": _i("-", _NO_FILES),
    "slot-prompt-similarity": _i("-", _SERVER),
    "is-pp-shared": _i("-", _CLI), "n-pp": _i("-", _CLI), "n-tg": _i("-", _CLI), "n-pl": _i("-", _CLI),
    "context-files": _i("-", _NO_FILES), "chunk-size": _i("-", _CLI), "chunk-separator": _i("-", _CLI),
    "n-junk": _i("-", _CLI), "i-pos": _i("-", _CLI), "out-file": _i("-", _NO_FILES),
    "n-out-freq": _i("-", _CLI), "n-save-freq": _i("-", _CLI), "i-chunk": _i("-", _CLI),
    "process-output": _i("-", _CLI), "compute-ppl": _i("-", _CLI), "n-pca-batch": _i("-", _CLI),
    "n-pca-iterations": _i("-", _CLI), "cvector-dimre-method": _i("-", _CLI),
    "cvector-positive-file": _i("-", _NO_FILES), "cvector-negative-file": _i("-", _NO_FILES),
    "spm-infill": _i("-", _CLI), "batched-bench-output-jsonl": _i("-", _CLI),
}
#: Vision: refused (unsupported_operation) when given a value, rather than answered without the image.
VISION_KEYS = ("mmproj", "image")
VISION_REFUSAL = ("vision (a multimodal projector and an image) is not supported by wasinn yet: WasmEdge's mmproj "
                  "and image are host file paths chosen by the guest, which wasinn does not open, and images "
                  "decoded inside llama.cpp are not yet bounded against hostile files (llama-cpp-python's mtmd "
                  "bindings could run it on a raw context)")
_FIELD_KEYS = {key.replace("-", "_"): key for key, k in WASMEDGE_KEYS.items() if k.field}


def markdown_table() -> str:
    """The options table of docs/backends/ggml.md, from :data:`WASMEDGE_KEYS`."""
    defaults = Options()
    lines = ["| key | status | llama.cpp | default | notes |", "|---|---|---|---|---|"]
    for key, spec in WASMEDGE_KEYS.items():
        if spec.field is None:
            lines.append(f"| `{key}` | ignored | `{spec.llama}` | | {spec.note} |")
        else:
            default = "" if key == "reranking" else json.dumps(getattr(defaults, spec.field))
            lines.append(f"| `{key}` | honoured | `{spec.llama}` | `{default}` | {spec.note} |")
    honoured = sum(1 for k in WASMEDGE_KEYS.values() if k.field)
    lines.append("")
    lines.append(f"{len(WASMEDGE_KEYS)} keys: {honoured} honoured, {len(WASMEDGE_KEYS) - honoured} ignored "
                 f"(logged once per update, with the reason).")
    return "\n".join(lines)


def _convert(key: str, kind: type, value: Any) -> Any:
    # Python's json accepts NaN, Infinity and integers of any size: none of them is a usable option.
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or (isinstance(value, float) and not math.isfinite(value)) or value != int(value):
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: expected an integer, got {_short(value)}")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: expected a finite number, "
                                                          f"got {_short(value)}")
        return float(value)
    if not isinstance(value, str):
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: expected a string, got {_short(value)}")
    try:
        value.encode("utf-8")  # JSON allows lone surrogates ("\ud800"); llama.cpp needs UTF-8 bytes
    except UnicodeEncodeError:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: the string is not valid Unicode "
                                                      f"(a lone surrogate)") from None
    return value


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


_LIMITS = {"ctx_size": (0, 1 << 20), "batch_size": (1, 1 << 16), "ubatch_size": (1, 1 << 16),
           "threads": (0, 1024), "threads_batch": (0, 1024), "n_gpu_layers": (-1, 1 << 16), "main_gpu": (0, 1024),
           "n_predict": (-2, 1 << 30), "seed": (0, 0xFFFFFFFF), "top_k": (0, 1 << 24),
           "last_n_penalty": (-1, 1 << 20), "mirostat": (0, 2), "pooling_type": (-1, 4), "attention_type": (-1, 1),
           "rope_scaling_type": (-1, 3), "yarn_orig_ctx": (0, 1 << 20), "embd_normalize": (-1, 64),
           "dry_allowed_length": (0, 1 << 20), "dry_last_n_penalty": (-1, 1 << 20),
           "cache_type_k": (0, 255), "cache_type_v": (0, 255)}
#: WasmEdge clamps these at 0 (std::max(0.0, value)).
_CLAMPED = ("temp", "top_p", "repeat_penalty", "presence_penalty", "frequency_penalty")
#: A grammar or JSON schema is a few kilobytes; llama.cpp's parsers recurse and expand repetitions.
MAX_GRAMMAR_BYTES = 64 * 1024


def update(options: Options, raw: Mapping[str, Any], *, where: str) -> Options:
    """``options`` with the WasmEdge keys of ``raw`` applied (``where`` names the source for logs)."""
    changes: dict[str, Any] = {}
    unknown: list[str] = []
    ignored: list[str] = []
    try:
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            spec = WASMEDGE_KEYS.get(str(key))
            if key in VISION_KEYS and value not in ("", None, False):
                # Answering a vision prompt without its image would be a silently wrong answer.
                raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"option {key}: {VISION_REFUSAL}")
            if spec is not None and spec.field is None:
                ignored.append(str(key))
                continue
            if key == "reranking":
                if _convert("reranking", bool, value):  # WasmEdge: embedding with rank pooling
                    changes.update(embedding=True, pooling_type=4)
                continue
            if name not in _TYPES:
                unknown.append(str(key))
                continue
            converted = _convert(str(key), _TYPES[name], value)
            low, high = _LIMITS.get(name, (None, None))
            if low is not None and high is not None and not low <= converted <= high:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT,
                                  f"option {key}: {_short(converted)} is outside {low}..{high}")
            if name in _CLAMPED:
                converted = max(0.0, converted)
            elif name in ("cache_type_k", "cache_type_v") and converted not in CACHE_TYPES:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: {converted} is not a KV cache type "
                                                              f"(one of {sorted(CACHE_TYPES)})")
            elif name == "flash_attn" and converted not in FLASH_ATTN:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: {_short(converted)} is not one of "
                                                              f"on, off, auto")
            elif name in ("grammar", "json_schema"):
                if len(converted.encode("utf-8")) > MAX_GRAMMAR_BYTES:
                    raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"option {key}: more than {MAX_GRAMMAR_BYTES} "
                                                                  f"bytes")
                # one sampling grammar, as in WasmEdge: the one given later replaces the other
                changes["json_schema" if name == "grammar" else "grammar"] = ""
            changes[name] = converted
    finally:
        if unknown:
            _log_unknown(unknown, where)
        if ignored:
            _log_ignored(ignored, where)
    if "grammar" in changes and "json_schema" in changes and raw.get("json-schema", raw.get("json_schema")):
        changes["grammar"] = ""  # WasmEdge parses json-schema after grammar: the schema wins
    if changes.get("n_predict", 0) < -1:
        changes["n_predict"] = -1  # llama.cpp's -2 ("until the context fills") is -1 here
    return replace(options, **changes)


def _log_ignored(keys: list[str], where: str) -> None:
    shown = keys[:MAX_LOGGED_KEYS]
    reasons = "; ".join(f"{key}: {WASMEDGE_KEYS[key].note}" for key in shown)
    more = f" and {len(keys) - MAX_LOGGED_KEYS} more" if len(keys) > MAX_LOGGED_KEYS else ""
    log.warning("ggml: WasmEdge option%s ignored (%s): %s%s", "s" if len(keys) > 1 else "", where, reasons, more)


#: Unknown keys named in the log line; a guest's metadata may hold any number of them.
MAX_LOGGED_KEYS = 8


def _log_unknown(unknown: list[str], where: str) -> None:
    # One line per update, however many keys the guest sent: a guest must not flood the host's log.
    names = ", ".join(_short(key) for key in unknown[:MAX_LOGGED_KEYS])
    more = f" and {len(unknown) - MAX_LOGGED_KEYS} more" if len(unknown) > MAX_LOGGED_KEYS else ""
    log.warning("ggml: unknown option%s %s%s (%s) ignored", "s" if len(unknown) > 1 else "", names, more, where)


if __name__ == "__main__":  # python -m wasinn_backend_ggml.options: the docs' options table
    print(markdown_table())
