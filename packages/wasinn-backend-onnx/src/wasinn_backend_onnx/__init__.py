"""wasinn backend for ONNX Runtime: serves ONNX (and ORT-format) models to wasi-nn guests.

Published as the ``onnx`` entry point of group ``wasinn.backends``. Importing this package does
not import onnxruntime; the hooks do, when first called.
"""

from __future__ import annotations

from wasinn_backend_onnx.backend import FORMATS, ORT_FORMAT, OnnxBackend
from wasinn_backend_onnx.config import ACCEPTED_KEYS, ConfigError, SessionConfig, parse_config
from wasinn_backend_onnx.providers import GPU_PROVIDERS, TPU_PROVIDERS, Plan, list_devices, plan_providers

__version__ = "0.1.0"

_backend = OnnxBackend()
# The entry point names this module: its hooks are the instance's, exposed as module attributes.
backend_info = _backend.backend_info
detect_format = _backend.detect_format
devices = _backend.devices
can_handle = _backend.can_handle
load = _backend.load
unload = _backend.unload
init_execution_context = _backend.init_execution_context
finalize_execution_context = _backend.finalize_execution_context
set_input = _backend.set_input
compute = _backend.compute
get_output = _backend.get_output

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
