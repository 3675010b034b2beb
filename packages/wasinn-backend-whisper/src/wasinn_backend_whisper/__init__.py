"""wasinn backend for whisper.cpp (through pywhispercpp): speech-to-text for wasi-nn guests written to
WasmEdge's Whisper conventions (encoding 9; input 0 = a WAV file's bytes, output 0 = the text).

Published as the ``whisper`` entry point of group ``wasinn.backends``. Importing this package does not
import whisper.cpp: the hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from wasinn.forwarding import forward_hooks
from wasinn_backend_whisper._info import FORMATS, TARGETS, backend_info, detect_format

__version__ = "0.1.0"

# Scoring is cheap: it never imports whisper.cpp.
_scoring = forward_hooks(__name__, "wasinn_backend_whisper.scoring", hooks=("can_handle",))
# The other hooks hand each call to the WhisperBackend instance.
_hooks = forward_hooks(__name__, "wasinn_backend_whisper.backend:WhisperBackend", hooks=(
    "load", "unload", "init_execution_context", "finalize_execution_context", "set_input", "compute", "get_output"))

__all__ = ["FORMATS", "TARGETS", "__version__", "backend_info", "detect_format", *_scoring.hooks, *_hooks.hooks]
