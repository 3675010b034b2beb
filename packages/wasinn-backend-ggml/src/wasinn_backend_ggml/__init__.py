"""wasinn backend for llama.cpp (through llama-cpp-python): GGUF language models for wasi-nn guests
written to WasmEdge's GGML conventions (LlamaEdge chat, API-server and embedding guests).

Published as the ``ggml`` entry point of group ``wasinn.backends``. Importing this package does
not import llama.cpp: the hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from wasinn.forwarding import forward_hooks
from wasinn_backend_ggml._info import FORMATS, TARGETS, backend_info

__version__ = "0.1.0"

# Scoring is cheap: it never imports llama.cpp.
_scoring = forward_hooks(__name__, "wasinn_backend_ggml.scoring", hooks=("can_handle",))
# The other hooks hand each call to the GgmlBackend instance.
_hooks = forward_hooks(__name__, "wasinn_backend_ggml.backend:GgmlBackend", hooks=(
    "load", "unload", "init_execution_context", "finalize_execution_context", "set_input", "compute", "get_output",
    "compute_single", "get_output_single", "fini_single"))

__all__ = ["FORMATS", "TARGETS", "__version__", "backend_info", *_scoring.hooks, *_hooks.hooks]
