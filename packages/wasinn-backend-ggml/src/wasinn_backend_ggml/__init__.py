"""wasinn backend for llama.cpp (through llama-cpp-python): GGUF language models for wasi-nn guests
written to WasmEdge's GGML conventions (LlamaEdge chat, API-server and embedding guests).

Published as the ``ggml`` entry point of group ``wasinn.backends``. Importing this package does
not import llama.cpp: the hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasinn.hookspecs import hookimpl
from wasinn.plugins import deferred
from wasinn_backend_ggml._info import FORMATS, TARGETS, backend_info

if TYPE_CHECKING:
    import numpy as np

    from wasinn import Context, Decline, Graph, Hardware, ModelDescription, Score, Tensor
    from wasinn_backend_ggml.backend import GgmlBackend

__version__ = "0.1.0"


def _load_backend() -> GgmlBackend:
    from wasinn_backend_ggml.backend import GgmlBackend

    return GgmlBackend()


_backend = deferred(_load_backend)


@hookimpl
def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    from wasinn_backend_ggml.scoring import can_handle as score

    return score(model, hw)  # cheap: never imports llama.cpp


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


@hookimpl
def compute_single(context: Context) -> None:
    _backend().compute_single(context)


@hookimpl
def get_output_single(context: Context, index: int) -> np.ndarray:
    return _backend().get_output_single(context, index)


@hookimpl
def fini_single(context: Context) -> None:
    _backend().fini_single(context)


__all__ = ["FORMATS", "TARGETS", "__version__", "backend_info", "can_handle", "compute", "compute_single",
           "finalize_execution_context", "fini_single", "get_output", "get_output_single",
           "init_execution_context", "load", "set_input", "unload"]
