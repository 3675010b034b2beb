"""wasinn backend for whisper.cpp (through pywhispercpp): speech-to-text for wasi-nn guests written to
WasmEdge's Whisper conventions (encoding 9; input 0 = a WAV file's bytes, output 0 = the text).

Published as the ``whisper`` entry point of group ``wasinn.backends``. Importing this package does not
import whisper.cpp: the hooks import :mod:`.backend` when first called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wasinn.hookspecs import hookimpl
from wasinn.plugins import deferred
from wasinn_backend_whisper._info import FORMATS, TARGETS, backend_info

if TYPE_CHECKING:
    import numpy as np

    from wasinn import Context, Decline, Graph, Hardware, ModelDescription, Score, Tensor
    from wasinn_backend_whisper.backend import WhisperBackend

__version__ = "0.1.0"


def _load_backend() -> WhisperBackend:
    from wasinn_backend_whisper.backend import WhisperBackend

    return WhisperBackend()


_backend = deferred(_load_backend)


@hookimpl
def detect_format(builders: Sequence[bytes]) -> str | None:
    """whisper.cpp's files: the ``ggml`` magic and a whisper header (a second builder is WasmEdge's
    JSON options)."""
    from wasinn_backend_whisper.validate import is_whisper

    try:
        if builders and len(builders) <= 2 and is_whisper(builders[0]):
            return "whisper"
    except Exception:  # never raise: detection only
        return None
    return None


@hookimpl
def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    from wasinn_backend_whisper.scoring import can_handle as score

    return score(model, hw)  # cheap: never imports whisper.cpp


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


__all__ = ["FORMATS", "TARGETS", "__version__", "backend_info", "can_handle", "compute", "detect_format",
           "finalize_execution_context", "get_output", "init_execution_context", "load", "set_input", "unload"]
