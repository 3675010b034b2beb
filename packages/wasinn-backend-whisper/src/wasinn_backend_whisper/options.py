"""WasmEdge's Whisper options: the keys, the defaults, and how a JSON config updates them.

The keys and defaults are WasmEdge's (plugins/wasi_nn/wasinn_whisper.h); the JSON types are checked as
its simdjson reads them (a bool is a bool, a count a non-negative integer). wasinn adds bounds where a
guest-chosen number would cost the host: threads and processors at most the cores here, beam-size
and best-of at most whisper.cpp's 8 decoders, times within a C int, a prompt of at most 4 KiB.

One key is the embedder's only (a named model's ``register_model`` config / ``--nn-preload`` config):
``temperature-inc``, the fallback step WasmEdge fixes at 0.2 (0 turns the fallback off: a greedy,
temperature-0 decode then does the same work every call, which the benchmark wants). From a guest it
is logged and ignored, as WasmEdge ignores a key it does not know.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from wasinn import ErrorCode, WasiNnError

log = logging.getLogger("wasinn.whisper")

MAX_DECODERS = 8  # WHISPER_MAX_DECODERS
MAX_INT = (1 << 31) - 1
MAX_PROMPT_BYTES = 4096
#: Options are a few keys: the cap on a config or a metadata input (parsing JSON costs several times
#: its size in host memory).
MAX_METADATA_BYTES = 1 << 20
#: Keys WasmEdge reads that make it write files on the host (named by the guest): never here.
FILE_KEYS = ("output-srt", "output-lrc", "output-json", "output-json-full", "output-file")


def cores() -> int:
    """The CPU cores here: the bound on a guest's threads and processors."""
    return os.cpu_count() or 1


def default_threads() -> int:
    return min(4, cores())


@dataclass(frozen=True)
class Options:
    enable_log: bool = False
    enable_debug_log: bool = False
    threads: int = dataclasses.field(default_factory=default_threads)
    processors: int = 1
    offset_t: int = 0
    duration: int = 0
    max_context: int = 16384
    max_len: int = 0
    split_on_word: bool = False
    translate: bool = False
    language: str = "en"
    detect_language: bool = False
    temperature: float = 0.0
    prompt: str = ""
    best_of: int = 5
    beam_size: int = 5
    no_timestamps: bool = False
    audio_ctx: int = 0
    diarize: bool = False
    offset_n: int = 0
    # Not guest keys: WasmEdge's fixed sampling parameters.
    word_threshold: float = 0.01
    entropy_threshold: float = 2.40
    logprob_threshold: float = -1.00
    temperature_inc: float = 0.2


BOOL_KEYS = ("enable-log", "enable-debug-log", "split-on-word", "translate", "detect-language", "no-timestamps",
             "diarize")
UINT_KEYS = ("threads", "processors", "offset-t", "duration", "max-len", "best-of", "beam-size", "audio-ctx",
             "offset-n")
#: Keys only the embedder's config may set.
EMBEDDER_KEYS = ("temperature-inc",)
KNOWN = (*BOOL_KEYS, *UINT_KEYS, "max-context", "language", "temperature", "prompt", *FILE_KEYS, *EMBEDDER_KEYS)


def _invalid(message: str) -> WasiNnError:
    return WasiNnError(ErrorCode.INVALID_ARGUMENT, message)


def parse(text: bytes | str, where: str) -> dict[str, Any]:
    """A JSON object from a config or input 1. Not JSON is invalid_encoding, as in WasmEdge."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_METADATA_BYTES:
        raise _invalid(f"{where} of {len(raw)} bytes is too long (at most {MAX_METADATA_BYTES})")
    try:
        doc = json.loads(raw.rstrip(b"\0").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WasiNnError(ErrorCode.INVALID_ENCODING, f"{where} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid(f"{where} must be a JSON object")
    return doc


def update(options: Options, doc: dict[str, Any], where: str, *, embedder: bool = False) -> Options:
    """``options`` with the keys of ``doc`` applied (WasmEdge's parseMetadata, with wasinn's bounds).
    ``embedder``: ``doc`` is the embedder's config, which may also set :data:`EMBEDDER_KEYS`."""
    changes: dict[str, Any] = {}
    for key, value in doc.items():
        field = str(key).replace("-", "_")
        if key in BOOL_KEYS:
            if not isinstance(value, bool):
                raise _invalid(f"{where}: {key} must be true or false")
            changes[field] = value
        elif key in UINT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _invalid(f"{where}: {key} must be a non-negative integer")
            changes[field] = value
        elif key == "max-context":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _invalid(f"{where}: max-context must be an integer")
            if value >= 0:  # WasmEdge ignores a negative one
                changes["max_context"] = value
        elif key == "temperature":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _invalid(f"{where}: temperature must be a number")
            changes["temperature"] = float(value)
        elif key in ("language", "prompt"):
            if not isinstance(value, str):
                raise _invalid(f"{where}: {key} must be a string")
            changes[field] = value
        elif key in EMBEDDER_KEYS:
            if not embedder:
                log.warning("whisper: %s is the embedder's setting, not a guest's: ignored", key)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise _invalid(f"{where}: {key} must be a number from 0 to 1")
            else:
                changes[field] = float(value)
        elif key in FILE_KEYS:
            # WasmEdge writes <output-file>.srt/.lrc/.json on the host: a guest names no host file here.
            log.warning("whisper: %s ignored: this host writes no files for a guest (output 0 holds the text)",
                        str(key)[:40])
        else:
            log.warning("whisper: unknown option %r ignored", str(key)[:40])
    result = dataclasses.replace(options, **changes)
    check(result, where)
    return result


def check(options: Options, where: str) -> None:
    """wasinn's bounds on guest-chosen sizes (after WasmEdge's own type checks)."""
    for name in ("offset_t", "duration", "max_len", "audio_ctx", "offset_n"):
        if getattr(options, name) > MAX_INT:
            raise _invalid(f"{where}: {name.replace('_', '-')} {getattr(options, name)} is more than {MAX_INT}")
    if options.beam_size > MAX_DECODERS or options.best_of > MAX_DECODERS:
        raise _invalid(f"{where}: beam-size {options.beam_size} / best-of {options.best_of}: whisper.cpp runs at "
                       f"most {MAX_DECODERS} decoders")
    if len(options.prompt.encode("utf-8", "replace")) > MAX_PROMPT_BYTES:
        raise _invalid(f"{where}: prompt is longer than {MAX_PROMPT_BYTES} bytes")
    if "\0" in options.language or "\0" in options.prompt:
        raise _invalid(f"{where}: language and prompt hold no NUL characters")
    if options.temperature != options.temperature or abs(options.temperature) > 1e6:
        raise _invalid(f"{where}: temperature {options.temperature} is not a usable number")


def threads_here(options: Options) -> tuple[int, int]:
    """(threads, processors) bounded by the cores here, logged when cut."""
    here = cores()
    threads = min(max(options.threads, 1), here)
    processors = min(max(options.processors, 1), here)
    if (threads, processors) != (options.threads, options.processors):
        log.warning("whisper: threads %d / processors %d asked for; %d core(s) here: using %d / %d",
                    options.threads, options.processors, here, threads, processors)
    return threads, processors


def to_json(options: Options) -> str:
    return json.dumps({f.name.replace("_", "-"): getattr(options, f.name) for f in dataclasses.fields(options)})
