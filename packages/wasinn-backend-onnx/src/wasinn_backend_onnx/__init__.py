"""wasinn backend for ONNX Runtime: serves ONNX (and ORT-format) models to wasi-nn guests.

Published as the ``onnx`` entry point of group ``wasinn.backends``. Importing this package does
not import onnxruntime, nor the backend's own implementation: discovery (``wasinn backends``)
imports it only to call ``backend_info``, which :mod:`._info` answers. The other hooks import
:mod:`.backend` when first called, and so do the names below when first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wasinn.hookspecs import hookimpl
from wasinn.plugins import deferred
from wasinn_backend_onnx._info import FORMATS, ORT_FORMAT, backend_info, detect_format

if TYPE_CHECKING:
    import numpy as np

    from wasinn import Context, Decline, Device, Graph, Hardware, ModelDescription, Score, Tensor
    from wasinn_backend_onnx.backend import OnnxBackend
    from wasinn_backend_onnx.config import ACCEPTED_KEYS, ConfigError, SessionConfig, parse_config
    from wasinn_backend_onnx.providers import GPU_PROVIDERS, TPU_PROVIDERS, Plan, list_devices, plan_providers

__version__ = "0.1.0"

# Imported on first use (PEP 562).
_LAZY = {
    "OnnxBackend": "wasinn_backend_onnx.backend",
    "ACCEPTED_KEYS": "wasinn_backend_onnx.config", "ConfigError": "wasinn_backend_onnx.config",
    "SessionConfig": "wasinn_backend_onnx.config", "parse_config": "wasinn_backend_onnx.config",
    "GPU_PROVIDERS": "wasinn_backend_onnx.providers", "TPU_PROVIDERS": "wasinn_backend_onnx.providers",
    "Plan": "wasinn_backend_onnx.providers", "list_devices": "wasinn_backend_onnx.providers",
    "plan_providers": "wasinn_backend_onnx.providers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _load_backend() -> OnnxBackend:
    from wasinn_backend_onnx.backend import OnnxBackend

    return OnnxBackend()


_backend = deferred(_load_backend)


# The entry point names this module: its hooks are these functions, which hand each call to the
# OnnxBackend instance (backend_info and detect_format come from ._info, above).
@hookimpl
def devices() -> Sequence[Device]:
    return _backend().devices()


@hookimpl
def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    return _backend().can_handle(model, hw)


@hookimpl
def load(model: ModelDescription, hw: Hardware) -> Graph:
    return _backend().load(model, hw)


@hookimpl
def unload(graph: Graph) -> None:
    _backend().unload(graph)


@hookimpl
def init_execution_context(graph: Graph) -> Context:
    return _backend().init_execution_context(graph)


@hookimpl
def finalize_execution_context(context: Context) -> None:
    _backend().finalize_execution_context(context)


@hookimpl
def set_input(context: Context, index: int, tensor: Tensor) -> None:
    _backend().set_input(context, index, tensor)


@hookimpl
def compute(context: Context) -> None:
    _backend().compute(context)


@hookimpl
def get_output(context: Context, index: int) -> np.ndarray:
    return _backend().get_output(context, index)


__all__ = [
    "ACCEPTED_KEYS",
    "FORMATS",
    "GPU_PROVIDERS",
    "ORT_FORMAT",
    "TPU_PROVIDERS",
    "ConfigError",
    "OnnxBackend",
    "Plan",
    "SessionConfig",
    "__version__",
    "backend_info",
    "can_handle",
    "compute",
    "detect_format",
    "devices",
    "finalize_execution_context",
    "get_output",
    "init_execution_context",
    "list_devices",
    "load",
    "parse_config",
    "plan_providers",
    "set_input",
    "unload",
]
