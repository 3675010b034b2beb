"""wasinn backend for OpenVINO: OpenVINO IR, ONNX and TFLite models on CPU, Intel GPU, NPU and AUTO.

Published as the ``openvino`` entry point of group ``wasinn.backends``; this module is the plugin.
Importing it imports neither OpenVINO nor the hooks' implementation: discovery (``wasinn backends``)
only calls ``backend_info``, which :mod:`._info` answers, and the other hooks import
:mod:`.backend` when first called.
"""

from __future__ import annotations

from wasinn.forwarding import forward_hooks
from wasinn_backend_openvino._info import backend_info

__version__ = "0.1.0"

# The other hooks hand each call to the module wasinn_backend_openvino.backend.
_hooks = forward_hooks(__name__, "wasinn_backend_openvino.backend", hooks=(
    "devices", "can_handle", "load", "unload", "init_execution_context", "finalize_execution_context", "set_input",
    "compute", "get_output"))

__all__ = ["__version__", "backend_info", *_hooks.hooks]
