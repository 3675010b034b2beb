"""wasinn: the WASI-NN host for Python.

Guests call ``wasi_ephemeral_nn``; wasinn answers inside your wasmtime-py program and runs each
model on the best installed backend for its format and this machine's hardware.

Embedders start with :class:`WasiNnHost`; backend authors with :mod:`wasinn.hookspecs`.
"""

from __future__ import annotations

from wasinn.abi.profiles import PROFILES, AbiProfile
from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, ModelFormat, TensorType
from wasinn.errors import ConfigurationError, WasiNnError
from wasinn.formats import detect_format
from wasinn.hardware import Cpu, Device, Hardware
from wasinn.hookspecs import BackendInfo, Context, Decline, Graph, Score, hookimpl
from wasinn.host.host import WasiNnHost
from wasinn.host.limits import Limits
from wasinn.host.named import NamedModel
from wasinn.host.state import StoreState
from wasinn.model import ModelDescription
from wasinn.ranking import Candidate, Ranking
from wasinn.tensor import Tensor, TensorSpec

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
    "hookimpl",
]
