"""wasinn backend for PyTorch: serves TorchScript and torch.export (.pt2) models to wasi-nn guests.

Published as the ``pytorch`` entry point of group ``wasinn.backends``. Importing this package does
not import torch (about a second): discovery calls ``backend_info``, which :mod:`._info` answers,
and the other hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wasinn.hookspecs import hookimpl
from wasinn.plugins import deferred
from wasinn_backend_pytorch._info import FORMATS, TENSOR_TYPES, backend_info

if TYPE_CHECKING:
    import numpy as np

    from wasinn import Context, Decline, Device, Graph, Hardware, ModelDescription, Score, Tensor
    from wasinn_backend_pytorch.backend import TorchBackend

__version__ = "0.1.0"


def _load_backend() -> TorchBackend:
    from wasinn_backend_pytorch.backend import TorchBackend

    return TorchBackend()


_backend = deferred(_load_backend)


# The entry point names this module: its hooks are these functions, which hand each call to the
# TorchBackend instance (backend_info comes from ._info, above).
@hookimpl
def devices() -> Sequence[Device]:
    return _backend().devices()


@hookimpl
def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    return _backend().can_handle(model, hw)


@hookimpl
def load(model: ModelDescription, hw: Hardware) -> Graph:
    return _backend().load(model, hw)


@hookimpl
def unload(graph: Graph) -> None:
    _backend().unload(graph)


@hookimpl
def init_execution_context(graph: Graph) -> Context:
    return _backend().init_execution_context(graph)


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
    return _backend().get_output(context, index)


__all__ = [
    "FORMATS",
    "TENSOR_TYPES",
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
