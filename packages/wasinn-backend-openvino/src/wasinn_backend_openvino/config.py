"""The backend's configuration keys: parsed and checked without importing OpenVINO.

A model's config (``load_by_name_with_config`` JSON, or the named model's config) may hold::

    {"device": "AUTO", "precision": "bf16", "cache_dir": "/var/cache/models", "num_threads": 4,
     "performance_hint": "THROUGHPUT", "num_streams": 2, "properties": {"ENABLE_CPU_PINNING": false}}

Every key is optional; any other top-level key is an ``invalid_argument``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasinn import ErrorCode, WasiNnError

#: Overrides the default cache directory of named models; set it to "" to turn that default off.
CACHE_ENV = "WASINN_OPENVINO_CACHE_DIR"

CONFIG_KEYS = frozenset({
    "device",
    "precision",
    "INFERENCE_PRECISION_HINT",
    "cache_dir",
    "num_threads",
    "performance_hint",
    "num_streams",
    "properties",
})

_PRECISIONS = {
    "f32": "f32", "fp32": "f32", "float32": "f32",
    "bf16": "bf16", "bfloat16": "bf16",
    "f16": "f16", "fp16": "f16", "float16": "f16",
}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
DEFAULT_PRECISION = "f32"
DEFAULT_PERFORMANCE_HINT = "LATENCY"

# The cache directory has its own key (it also decides where model copies go, see backend.py).
_RESERVED_PROPERTIES = {"CACHE_DIR": "cache_dir"}


def _bad(message: str) -> WasiNnError:
    return WasiNnError(ErrorCode.INVALID_ARGUMENT, f"openvino config: {message}")


@dataclass(frozen=True, slots=True)
class Settings:
    """A checked config. ``precision_explicit`` is False when the f32 default applies."""

    device: str | None = None
    precision: str = DEFAULT_PRECISION
    precision_explicit: bool = False
    cache_dir: Path | None = None
    num_threads: int | None = None
    performance_hint: str | None = None  # None: LATENCY, sent only where the device knows it
    num_streams: int | str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def default_cache_dir() -> Path | None:
    """Where named models' compiled blobs go unless the config says otherwise.

    ``$WASINN_OPENVINO_CACHE_DIR`` (empty: no default cache), else
    ``$XDG_CACHE_HOME/wasinn/openvino``, else ``~/.cache/wasinn/openvino``.
    """
    override = os.environ.get(CACHE_ENV)
    if override is not None:
        return Path(override).expanduser() if override.strip() else None
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "wasinn" / "openvino"


def _precision(value: object, key: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in _PRECISIONS:
        raise _bad(f"{key} must be one of f32, bf16, f16 (got {value!r})")
    return _PRECISIONS[value.strip().lower()]


def _positive_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"{key} must be a positive integer (got {value!r})")
    return value


def _property_value(key: str, value: object) -> object:
    if isinstance(value, str | int | float | bool):
        return value
    # DEVICE_PROPERTIES and friends nest one level: {"CPU": {"NUM_STREAMS": 2}}.
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _property_value(f"{key}.{k}", v) for k, v in value.items()}
    raise _bad(f"properties.{key} must be a string, number, boolean or object (got {type(value).__name__})")


#: Keys a guest may not set through load_by_name_with_config: a host path, or raw properties that
#: could name one. Only the embedder's own config (a named model's) may use them.
EMBEDDER_ONLY_KEYS = frozenset({"cache_dir", "properties"})


def parse_settings(config: Mapping[str, Any], *, named: bool,
                   guest_config: Mapping[str, Any] | None = None) -> Settings:
    """Check ``config`` and fill in the defaults. ``named``: the model has a name (cache on by default).

    ``guest_config`` is the part of ``config`` that came from the guest (untrusted).
    """
    unknown = sorted(str(k) for k in config if k not in CONFIG_KEYS)
    if unknown:
        raise _bad(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})")
    refused = sorted(EMBEDDER_ONLY_KEYS & set(guest_config or {}))
    if refused:
        raise _bad(f"a guest may not set {', '.join(refused)} (only the embedder's model config may)")

    device = config.get("device")
    if device is not None and (not isinstance(device, str) or not device.strip()):
        raise _bad(f"device must be an OpenVINO device name such as CPU, GPU, NPU or AUTO (got {device!r})")

    raw = config.get("properties", {})
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and k for k in raw):
        raise _bad("properties must be an object of OpenVINO property names to values")
    for key, own in _RESERVED_PROPERTIES.items():
        if key in raw:
            raise _bad(f"set {key} with the {own!r} key, not under properties")
    properties = {k: _property_value(k, v) for k, v in raw.items()}

    # Precision may be given three ways; they must agree.
    given = {key: _precision(value, key) for key, value in (
        ("precision", config.get("precision")),
        ("INFERENCE_PRECISION_HINT", config.get("INFERENCE_PRECISION_HINT")),
        ("properties.INFERENCE_PRECISION_HINT", properties.pop("INFERENCE_PRECISION_HINT", None)),
    ) if value is not None}
    if len(set(given.values())) > 1:
        raise _bad("conflicting precisions: " + ", ".join(f"{k}={v}" for k, v in given.items()))
    precision = next(iter(given.values()), DEFAULT_PRECISION)

    if "cache_dir" in config:
        value = config["cache_dir"]
        if value is not None and not isinstance(value, str):
            raise _bad(f"cache_dir must be a path, null or \"\" (got {value!r})")
        cache_dir = Path(value).expanduser() if value else None
    else:
        cache_dir = default_cache_dir() if named else None

    num_threads = config.get("num_threads")
    if num_threads is not None:
        num_threads = _positive_int(num_threads, "num_threads")

    hint = config.get("performance_hint")
    if hint is not None and (not isinstance(hint, str) or hint.strip().upper() not in PERFORMANCE_HINTS):
        raise _bad(f"performance_hint must be one of {', '.join(PERFORMANCE_HINTS)} (got {hint!r})")

    streams = config.get("num_streams")
    if streams is not None:
        if isinstance(streams, str) and streams.strip().upper() == "AUTO":
            streams = "AUTO"
        else:
            streams = _positive_int(streams, "num_streams")

    return Settings(
        device=device.strip().upper() if device is not None else None,
        precision=precision,
        precision_explicit=bool(given),
        cache_dir=cache_dir,
        num_threads=num_threads,
        performance_hint=hint.strip().upper() if hint is not None else None,
        num_streams=streams,
        properties=properties,
    )


def compile_properties(settings: Settings, supported: frozenset[str] | None) -> dict[str, Any]:
    """The properties for ``compile_model`` (without CACHE_DIR).

    ``supported`` is the device's SUPPORTED_PROPERTIES, or ``None`` for a virtual device (AUTO,
    HETERO, ...), which passes what it does not know on to the devices it picks. Defaults are
    only sent where the device knows them (an NPU may not take a precision hint); what the user
    asked for is always sent, so that OpenVINO can refuse it.
    """

    def wanted(key: str, explicit: bool) -> bool:
        return explicit or supported is None or key in supported

    properties: dict[str, Any] = {}
    if wanted("INFERENCE_PRECISION_HINT", settings.precision_explicit):
        properties["INFERENCE_PRECISION_HINT"] = settings.precision
    hint = settings.performance_hint or DEFAULT_PERFORMANCE_HINT
    if wanted("PERFORMANCE_HINT", settings.performance_hint is not None):
        properties["PERFORMANCE_HINT"] = hint
    effective_hint = str(settings.properties.get("PERFORMANCE_HINT", hint)).upper()
    if settings.num_streams is not None:
        properties["NUM_STREAMS"] = str(settings.num_streams)
    elif (effective_hint == "LATENCY" and "NUM_STREAMS" not in settings.properties
          and supported is not None and "NUM_STREAMS" in supported):
        # One stream: each infer request runs on all the threads, as a latency-bound guest wants.
        properties["NUM_STREAMS"] = "1"
    if settings.num_threads is not None:
        properties["INFERENCE_NUM_THREADS"] = settings.num_threads
    properties.update(settings.properties)
    return properties
