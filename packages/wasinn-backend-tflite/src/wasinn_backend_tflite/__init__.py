"""wasinn backend for TensorFlow Lite models, on LiteRT (``ai-edge-litert``) or ``tflite-runtime``.

Published as the ``tflite`` entry point of the ``wasinn.backends`` group. Importing this package
imports neither the interpreter (that happens on the first load) nor the hooks' implementation:
discovery (``wasinn backends``) only calls ``backend_info``, which :mod:`._info` answers, and the
other hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasinn.hookspecs import hookimpl
from wasinn.plugins import deferred
from wasinn_backend_tflite._info import backend_info as backend_info
from wasinn_backend_tflite._runtime import DELEGATES_ENV, INTERPRETER_ENV, allow_delegate

if TYPE_CHECKING:
    import numpy as np

    from wasinn import Context, Decline, Graph, Hardware, ModelDescription, Score, Tensor
    from wasinn_backend_tflite.backend import TFLiteBackend

__version__ = "0.1.0"

__all__ = ["DELEGATES_ENV", "INTERPRETER_ENV", "TFLiteBackend", "allow_delegate", "__version__"]


def __getattr__(name: str) -> Any:
    # TFLiteBackend is imported on first use (PEP 562).
    if name != "TFLiteBackend":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from wasinn_backend_tflite.backend import TFLiteBackend

    globals()[name] = TFLiteBackend
    return TFLiteBackend


def __dir__() -> list[str]:
    return sorted({*globals(), "TFLiteBackend"})


def _load_backend() -> TFLiteBackend:
    from wasinn_backend_tflite.backend import TFLiteBackend

    return TFLiteBackend()


_backend = deferred(_load_backend)


# The entry point names this module: its hooks are these functions, which hand each call to the
# TFLiteBackend instance (backend_info comes from ._info, above).
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
