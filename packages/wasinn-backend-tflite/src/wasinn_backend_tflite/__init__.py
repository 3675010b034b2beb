"""wasinn backend for TensorFlow Lite models, on LiteRT (``ai-edge-litert``) or ``tflite-runtime``.

Published as the ``tflite`` entry point of the ``wasinn.backends`` group. Importing this package
does not import the interpreter: that happens on the first load.
"""

from __future__ import annotations

from wasinn_backend_tflite._runtime import DELEGATES_ENV, INTERPRETER_ENV, allow_delegate
from wasinn_backend_tflite.backend import TFLiteBackend

__version__ = "0.1.0"

__all__ = ["DELEGATES_ENV", "INTERPRETER_ENV", "TFLiteBackend", "allow_delegate", "__version__"]

_backend = TFLiteBackend()
# The entry point names this module: its hook functions are the instance's methods.
backend_info = _backend.backend_info
can_handle = _backend.can_handle
load = _backend.load
unload = _backend.unload
init_execution_context = _backend.init_execution_context
finalize_execution_context = _backend.finalize_execution_context
set_input = _backend.set_input
compute = _backend.compute
get_output = _backend.get_output
