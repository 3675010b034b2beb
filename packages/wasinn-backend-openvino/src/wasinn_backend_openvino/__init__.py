"""wasinn backend for OpenVINO: OpenVINO IR, ONNX and TFLite models on CPU, Intel GPU, NPU and AUTO.

Published as the ``openvino`` entry point of group ``wasinn.backends``; this module is the plugin.
Importing it imports neither OpenVINO nor the hooks' implementation: discovery (``wasinn backends``)
only calls ``backend_info``, which :mod:`._info` answers, and the other hooks import
:mod:`.backend` when first called.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from wasinn.hookspecs import hookimpl
from wasinn.plugins import deferred
from wasinn_backend_openvino._info import backend_info

if TYPE_CHECKING:
    import numpy as np

    from wasinn import Context, Decline, Device, Graph, Hardware, ModelDescription, Score, Tensor

__version__ = "0.1.0"


def _load_backend() -> ModuleType:
    # The module, typed loosely: each hook below states its result's type.
    from wasinn_backend_openvino import backend

    return backend


_backend = deferred(_load_backend)


# The hooks: each hands the call to wasinn_backend_openvino.backend (backend_info: see ._info).
@hookimpl
def devices() -> Sequence[Device]:
    found: Sequence[Device] = _backend().devices()
    return found


@hookimpl
def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    answer: Score | Decline | None = _backend().can_handle(model, hw)
    return answer


@hookimpl
def load(model: ModelDescription, hw: Hardware) -> Graph:
    graph: Graph = _backend().load(model, hw)
    return graph


@hookimpl
def unload(graph: Graph) -> None:
    _backend().unload(graph)


@hookimpl
def init_execution_context(graph: Graph) -> Context:
    context: Context = _backend().init_execution_context(graph)
    return context


@hookimpl
def finalize_execution_context(context: Context) -> None:
    _backend().finalize_execution_context(context)


@hookimpl
def set_input(context: Context, index: int, tensor: Tensor) -> None:
    _backend().set_input(context, index, tensor)


@hookimpl
def compute(context: Context) -> None:
    _backend().compute(context)


@hookimpl
def get_output(context: Context, index: int) -> np.ndarray:
    output: np.ndarray = _backend().get_output(context, index)
    return output


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
