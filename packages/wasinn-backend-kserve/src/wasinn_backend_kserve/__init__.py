"""wasinn backend for inference servers that speak the Open Inference Protocol (KServe v2): Triton,
KServe, OpenVINO Model Server, MLServer. It serves the names the host mapped to a server
(``--nn-remote NAME=URI``, ``WasiNnHost.register_remote``) and nothing else: a local model is never
sent anywhere.

Published as the ``kserve`` entry point of group ``wasinn.backends``. Discovery imports only this
module and :mod:`._info` (``backend_info``); the other hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from wasinn.forwarding import forward_hooks
from wasinn_backend_kserve._info import backend_info as backend_info

__version__ = "0.1.0"

# The other hooks hand each call to the module wasinn_backend_kserve.backend.
forward_hooks(__name__, "wasinn_backend_kserve.backend", hooks=(
    "can_handle", "load", "unload", "init_execution_context", "set_input", "compute", "get_output"))
