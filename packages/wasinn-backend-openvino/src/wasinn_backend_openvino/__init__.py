"""wasinn backend for OpenVINO: OpenVINO IR, ONNX and TFLite models on CPU, Intel GPU, NPU and AUTO.

Published as the ``openvino`` entry point of group ``wasinn.backends``; this module is the plugin.
Importing it does not import OpenVINO: the hooks do, on first use.
"""

from __future__ import annotations

from wasinn_backend_openvino.backend import (
    backend_info,
    can_handle,
    compute,
    devices,
    finalize_execution_context,
    get_output,
    init_execution_context,
    load,
    set_input,
    unload,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "backend_info",
    "can_handle",
    "compute",
    "devices",
    "finalize_execution_context",
    "get_output",
    "init_execution_context",
    "load",
    "set_input",
    "unload",
]
