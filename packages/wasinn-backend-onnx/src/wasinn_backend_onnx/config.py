"""The ``config`` object of a model (``load_by_name_with_config`` JSON, or a named model's config).

Every key is checked: a misspelt key that was silently ignored would leave the user believing a
setting was applied. The defaults aim at low latency on small machines: one intra-op thread per
available core, one inter-op thread, sequential execution, every graph optimisation, and no
spinning worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasinn_backend_onnx.providers import short_name

#: Accepted keys and what they default to (shown in error messages and the docs).
DEFAULTS: dict[str, str] = {
    "intra_op_num_threads": "the number of CPU cores available to the process",
    "inter_op_num_threads": "1",
    "graph_optimization_level": '"all"',
    "execution_mode": '"sequential"',
    "allow_spinning": "false",
    "providers": "chosen from the target and the hardware",
    "provider_options": "{}",
}
ACCEPTED_KEYS: tuple[str, ...] = tuple(DEFAULTS)

GRAPH_OPTIMIZATION_LEVELS: dict[str, str] = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}
EXECUTION_MODES: dict[str, str] = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}

#: More threads than this many per core never lowers latency, and a guest-supplied config must not
#: be able to make the host spawn thousands of threads.
MAX_THREADS_PER_CORE = 4


class ConfigError(ValueError):
    """A config the backend cannot accept (reported to the guest as ``invalid_argument``)."""


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A checked config. ``providers`` is ``None`` unless the config names them."""

    intra_op_num_threads: int
    inter_op_num_threads: int = 1
    graph_optimization_level: str = "all"
    execution_mode: str = "sequential"
    allow_spinning: bool = False
    providers: tuple[str, ...] | None = None
    provider_options: dict[str, dict[str, str]] = field(default_factory=dict)


def _threads(config: Mapping[str, Any], key: str, default: int, limit: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ConfigError(f"{key} must be an integer from 0 (let ONNX Runtime decide) to {limit}, got {value!r}")
    return value


def _choice(config: Mapping[str, Any], key: str, default: str, choices: Mapping[str, str]) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or value.lower() not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value.lower()


def resolve_provider(name: object, known: Sequence[str]) -> str:
    """A provider's full name from its full name or short alias (``cuda``, ``TensorRT``, ``cpu``)."""
    if isinstance(name, str):
        for provider in known:
            if name == provider or name.lower() == short_name(provider):
                return provider
    aliases = ", ".join(short_name(p) for p in known)
    raise ConfigError(f"unknown execution provider {name!r}; ONNX Runtime knows {aliases} "
                      f"(or their full names, e.g. CPUExecutionProvider)")


def _option_value(provider: str, key: str, value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    raise ConfigError(f"provider_options[{provider!r}][{key!r}] must be a string, number or boolean, got {value!r}")


#: Keys only the embedder's model config may set: provider options carry host paths for several
#: execution providers (TensorRT's trt_engine_cache_path, the OpenVINO EP's cache_dir, ...).
EMBEDDER_ONLY_KEYS = frozenset({"provider_options"})


def parse_config(config: Mapping[str, Any], cpu_cores: int, known_providers: Sequence[str],
                 guest_config: Mapping[str, Any] | None = None) -> SessionConfig:
    """Check ``config`` and fill in the defaults; :class:`ConfigError` says what is wrong.

    ``guest_config`` is the part of ``config`` a guest supplied (untrusted).
    """
    refused = sorted(EMBEDDER_ONLY_KEYS & set(guest_config or {}))
    if refused:
        raise ConfigError(f"a guest may not set {', '.join(refused)} (only the embedder's model config may)")
    unknown = sorted(str(key) for key in config if key not in DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)} for the onnx backend; "
                          f"accepted keys: {', '.join(ACCEPTED_KEYS)}")
    cores = max(cpu_cores, 1)
    limit = cores * MAX_THREADS_PER_CORE
    intra = _threads(config, "intra_op_num_threads", cores, limit)
    inter = _threads(config, "inter_op_num_threads", 1, limit)
    level = _choice(config, "graph_optimization_level", "all", GRAPH_OPTIMIZATION_LEVELS)
    mode = _choice(config, "execution_mode", "sequential", EXECUTION_MODES)
    # Spinning workers keep a core busy after each run: on a small or shared machine that steals
    # the CPU from the guest's own work between inferences (and from other tenants).
    spinning = config.get("allow_spinning", False)
    if not isinstance(spinning, bool):
        raise ConfigError(f"allow_spinning must be true or false, got {spinning!r}")

    providers: tuple[str, ...] | None = None
    if "providers" in config:
        raw = config["providers"]
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items:
            raise ConfigError(f"providers must be a provider name or a non-empty list of them, got {raw!r}")
        providers = tuple(resolve_provider(item, known_providers) for item in items)
        if len(set(providers)) != len(providers):
            raise ConfigError(f"providers lists a provider twice: {list(providers)}")

    options: dict[str, dict[str, str]] = {}
    raw_options = config.get("provider_options", {})
    if not isinstance(raw_options, Mapping):
        raise ConfigError(f"provider_options must be an object mapping provider names to objects, got {raw_options!r}")
    for name, values in raw_options.items():
        provider = resolve_provider(name, known_providers)
        if not isinstance(values, Mapping):
            raise ConfigError(f"provider_options[{name!r}] must be an object of option names to values")
        if providers is not None and provider not in providers:
            raise ConfigError(f"provider_options names {provider}, which is not in providers {list(providers)}")
        options[provider] = {str(k): _option_value(provider, str(k), v) for k, v in values.items()}
    return SessionConfig(intra, inter, level, mode, spinning, providers, options)
