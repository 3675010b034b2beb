"""wasinn backend for PyTorch: serves TorchScript and torch.export (.pt2) models to wasi-nn guests.

Published as the ``pytorch`` entry point of group ``wasinn.backends``. Importing this package does
not import torch (about a second): discovery calls ``backend_info``, which :mod:`._info` answers,
and the other hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from wasinn.forwarding import forward_hooks
from wasinn_backend_pytorch._info import FORMATS, TENSOR_TYPES, backend_info

__version__ = "0.1.0"

# The other hooks hand each call to the TorchBackend instance.
_hooks = forward_hooks(__name__, "wasinn_backend_pytorch.backend:TorchBackend", hooks=(
    "devices", "can_handle", "load", "unload", "init_execution_context", "finalize_execution_context", "set_input",
    "compute", "get_output"))

__all__ = ["FORMATS", "TENSOR_TYPES", "__version__", "backend_info", *_hooks.hooks]
