"""wasinn: the WASI-NN host for Python.

Guests call ``wasi_ephemeral_nn``; wasinn answers inside your wasmtime-py program and runs each
model on the best installed backend for its format and this machine's hardware.

Embedders start with :class:`WasiNnHost`; backend authors with :mod:`wasinn.hookspecs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasinn.abi.profiles import PROFILES, AbiProfile
    from wasinn.abi.state import StoreState
    from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, ModelFormat, TensorType
    from wasinn.errors import ConfigurationError, WasiNnError
    from wasinn.formats import detect_format
    from wasinn.forwarding import forward_hooks
    from wasinn.hardware import Cpu, Device, Hardware
    from wasinn.hookspecs import BackendInfo, Context, Decline, Graph, Score, hookimpl
    from wasinn.host.host import WasiNnHost
    from wasinn.limits import Limits
    from wasinn.model import ModelDescription
    from wasinn.ranking import Candidate, Ranking
    from wasinn.service.named import NamedModel
    from wasinn.tensor import Tensor, TensorSpec

# Names are imported on first use (PEP 562), so that `import wasinn`, the pytest plugin and
# `wasinn backends` stay cheap: each pulls in only the modules it needs.
_LAZY = {
    "PROFILES": "wasinn.abi.profiles", "AbiProfile": "wasinn.abi.profiles",
    "ErrorCode": "wasinn.enums", "ExecutionTarget": "wasinn.enums", "GraphEncoding": "wasinn.enums",
    "ModelFormat": "wasinn.enums", "TensorType": "wasinn.enums",
    "ConfigurationError": "wasinn.errors", "WasiNnError": "wasinn.errors",
    "detect_format": "wasinn.formats",
    "Cpu": "wasinn.hardware", "Device": "wasinn.hardware", "Hardware": "wasinn.hardware",
    "BackendInfo": "wasinn.hookspecs", "Context": "wasinn.hookspecs", "Decline": "wasinn.hookspecs",
    "Graph": "wasinn.hookspecs", "Score": "wasinn.hookspecs", "hookimpl": "wasinn.hookspecs",
    "WasiNnHost": "wasinn.host.host", "Limits": "wasinn.limits", "NamedModel": "wasinn.service.named",
    "StoreState": "wasinn.abi.state", "ModelDescription": "wasinn.model",
    "Candidate": "wasinn.ranking", "Ranking": "wasinn.ranking",
    "Tensor": "wasinn.tensor", "TensorSpec": "wasinn.tensor",
    "forward_hooks": "wasinn.forwarding",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wasinn' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__version__ = "0.1.0"

__all__ = [
    "PROFILES",
    "AbiProfile",
    "BackendInfo",
    "Candidate",
    "ConfigurationError",
    "Context",
    "Cpu",
    "Decline",
    "Device",
    "ErrorCode",
    "ExecutionTarget",
    "Graph",
    "GraphEncoding",
    "Hardware",
    "Limits",
    "ModelDescription",
    "ModelFormat",
    "NamedModel",
    "Ranking",
    "Score",
    "StoreState",
    "Tensor",
    "TensorSpec",
    "TensorType",
    "WasiNnError",
    "WasiNnHost",
    "__version__",
    "detect_format",
    "forward_hooks",
    "hookimpl",
]
