"""WasmEdge GGML option keys -> llama.cpp parameters.

Guests send options as JSON: the config of ``load_by_name_with_config`` (at load) and input 1 of
``set_input`` (mid-session, updating the context's options). Keys and meanings follow WasmEdge's
GGML plugin; unknown keys are logged, never fatal (guests written for newer WasmEdge send keys this
backend does not know). A known key with a value of the wrong type is ``invalid_argument``.
"""

from __future__ import annotations

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
    # context (a change re-creates the context's llama_context)
    ctx_size: int = 4096
    batch_size: int = 512
    ubatch_size: int = 512
    threads: int = 0  # 0: llama-cpp-python's default (half the cores; all of them for prompts)
    embedding: bool = False
    # generation
    n_predict: int = -1  # -1: until end of sequence or a full context
    reverse_prompt: str = ""
    temp: float = 0.8
    top_p: float = 0.95
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = DEFAULT_SEED
    stream_stdout: bool = False
    enable_log: bool = False
    enable_debug_log: bool = False

    def n_threads(self) -> tuple[int, int]:
        """(generation threads, prompt threads), as llama-cpp-python chooses them by default."""
        if self.threads > 0:
            return self.threads, self.threads
        cores = os.cpu_count() or 1
        return max(cores // 2, 1), cores

    @property
    def log_timings(self) -> bool:
        """Whether to log prompt and generation timings (WasmEdge: either log option)."""
        return self.enable_log or self.enable_debug_log

    def context_key(self) -> tuple[Any, ...]:
        return (self.ctx_size, self.batch_size, self.ubatch_size, self.threads, self.embedding)


MODEL_KEYS = ("n_gpu_layers", "main_gpu", "tensor_split", "use_mmap")
_KINDS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
_TYPES: dict[str, type] = {f.name: _KINDS[str(f.type)] for f in fields(Options)}
#: Keys WasmEdge's plugin reads that this backend cannot honour: logged as ignored, saying so.
UNSUPPORTED = {
    "mmproj": "multimodal projectors (llava) are not supported",
    "image": "multimodal input is not supported",
    "grammar": "grammars are not supported: output is unconstrained",
    "json-schema": "JSON schemas are not supported: output is unconstrained",
    "split-mode": "a single device is used",
}


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
           "threads": (0, 1024), "n_gpu_layers": (-1, 1 << 16), "main_gpu": (0, 1024),
           "n_predict": (-2, 1 << 30), "seed": (0, 0xFFFFFFFF)}


def update(options: Options, raw: Mapping[str, Any], *, where: str) -> Options:
    """``options`` with the WasmEdge keys of ``raw`` applied (``where`` names the source for logs)."""
    changes: dict[str, Any] = {}
    unknown: list[str] = []
    try:
        for key, value in raw.items():
            name = str(key).replace("-", "_")
            if key in UNSUPPORTED:
                log.warning("ggml: option %s (%s) ignored: %s", key, where, UNSUPPORTED[key])
                continue
            if name not in _TYPES:
                unknown.append(str(key))
                continue
            converted = _convert(str(key), _TYPES[name], value)
            low, high = _LIMITS.get(name, (None, None))
            if low is not None and high is not None and not low <= converted <= high:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT,
                                  f"option {key}: {_short(converted)} is outside {low}..{high}")
            changes[name] = converted
    finally:
        if unknown:
            _log_unknown(unknown, where)
    if changes.get("n_predict", 0) < -1:
        changes["n_predict"] = -1  # llama.cpp's -2 ("until the context fills") is -1 here
    return replace(options, **changes)


#: Unknown keys named in the log line; a guest's metadata may hold any number of them.
MAX_LOGGED_KEYS = 8


def _log_unknown(unknown: list[str], where: str) -> None:
    # One line per update, however many keys the guest sent: a guest must not flood the host's log.
    names = ", ".join(_short(key) for key in unknown[:MAX_LOGGED_KEYS])
    more = f" and {len(unknown) - MAX_LOGGED_KEYS} more" if len(unknown) > MAX_LOGGED_KEYS else ""
    log.warning("ggml: unknown option%s %s%s (%s) ignored", "s" if len(unknown) > 1 else "", names, more, where)
