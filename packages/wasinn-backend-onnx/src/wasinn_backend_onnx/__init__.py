"""wasinn backend for ONNX Runtime: serves ONNX (and ORT-format) models to wasi-nn guests.

Published as the ``onnx`` entry point of group ``wasinn.backends``. Importing this package does
not import onnxruntime, nor the backend's own implementation: discovery (``wasinn backends``)
imports it only to call ``backend_info``, which :mod:`._info` answers. The other hooks import
:mod:`.backend` when first called, and so do the names below when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasinn.forwarding import forward_hooks, lazy_exports
from wasinn_backend_onnx._info import FORMATS, ORT_FORMAT, backend_info, detect_format

if TYPE_CHECKING:
    from wasinn_backend_onnx.backend import OnnxBackend
    from wasinn_backend_onnx.config import ACCEPTED_KEYS, ConfigError, SessionConfig, parse_config
    from wasinn_backend_onnx.providers import GPU_PROVIDERS, TPU_PROVIDERS, Plan, list_devices, plan_providers

__version__ = "0.1.0"

# The other hooks hand each call to the OnnxBackend instance.
_hooks = forward_hooks(__name__, "wasinn_backend_onnx.backend:OnnxBackend", hooks=(
    "devices", "can_handle", "load", "unload", "init_execution_context", "finalize_execution_context", "set_input",
    "compute", "get_output"))

lazy_exports(__name__, {
    "wasinn_backend_onnx.backend": ("OnnxBackend",),
    "wasinn_backend_onnx.config": ("ACCEPTED_KEYS", "ConfigError", "SessionConfig", "parse_config"),
    "wasinn_backend_onnx.providers": ("GPU_PROVIDERS", "TPU_PROVIDERS", "Plan", "list_devices", "plan_providers"),
})

__all__ = ["ACCEPTED_KEYS", "FORMATS", "GPU_PROVIDERS", "ORT_FORMAT", "TPU_PROVIDERS", "ConfigError", "OnnxBackend",
           "Plan", "SessionConfig", "__version__", "backend_info", "detect_format", "list_devices", "parse_config",
           "plan_providers", *_hooks.hooks]
