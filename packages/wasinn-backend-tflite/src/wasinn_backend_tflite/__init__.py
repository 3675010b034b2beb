"""wasinn backend for TensorFlow Lite models, on LiteRT (``ai-edge-litert``) or ``tflite-runtime``.

Published as the ``tflite`` entry point of the ``wasinn.backends`` group. Importing this package
imports neither the interpreter (that happens on the first load) nor the hooks' implementation:
discovery (``wasinn backends``) only calls ``backend_info``, which :mod:`._info` answers, and the
other hooks import :mod:`.backend` when first called (and ``TFLiteBackend`` when first used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasinn.forwarding import forward_hooks, lazy_exports
from wasinn_backend_tflite._info import backend_info as backend_info
from wasinn_backend_tflite._runtime import DELEGATES_ENV, INTERPRETER_ENV, allow_delegate

if TYPE_CHECKING:
    from wasinn_backend_tflite.backend import TFLiteBackend

__version__ = "0.1.0"

__all__ = ["DELEGATES_ENV", "INTERPRETER_ENV", "TFLiteBackend", "allow_delegate", "__version__"]

# The other hooks hand each call to the TFLiteBackend instance.
forward_hooks(__name__, "wasinn_backend_tflite.backend:TFLiteBackend", hooks=(
    "can_handle", "load", "unload", "init_execution_context", "finalize_execution_context", "set_input", "compute",
    "get_output"))

lazy_exports(__name__, {"wasinn_backend_tflite.backend": ("TFLiteBackend",)})
