"""The symbolic vocabulary of wasi-nn.

These enums name *meanings*, never ABI numbers: a guest's numbers are turned into these by a numbering
profile (:mod:`wasinn.abi.profiles`), because Wasmtime, WasmEdge and WAMR disagree on the numbers.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar

import numpy as np


class GraphEncoding(Enum):
    """The model encoding a guest names in ``load`` (``graph_encoding``)."""

    OPENVINO = "openvino"
    ONNX = "onnx"
    TENSORFLOW = "tensorflow"
    PYTORCH = "pytorch"
    TENSORFLOWLITE = "tensorflowlite"
    GGML = "ggml"
    WHISPER = "whisper"  # whisper.cpp (WasmEdge's encoding 9; unassigned in the witx numbering)
    AUTODETECT = "autodetect"


class ExecutionTarget(Enum):
    """Where the guest asks the model to run (``execution_target``)."""

    CPU = "cpu"
    GPU = "gpu"
    TPU = "tpu"  # any dedicated accelerator: NPU, TPU, ...
    AUTO = "auto"  # WasmEdge only: the host picks


class ModelFormat(str):
    """A model's format, as detected from its bytes (see :mod:`wasinn.formats`).

    A string with well-known constants (``ModelFormat.ONNX`` ...) rather than a closed enum, so that a
    third-party backend can recognise a format of its own (``detect_format`` hook) and name it.
    """

    __slots__ = ()

    ONNX: ClassVar[ModelFormat]
    OPENVINO_IR: ClassVar[ModelFormat]
    TFLITE: ClassVar[ModelFormat]
    TORCHSCRIPT: ClassVar[ModelFormat]
    TORCH_EXPORT: ClassVar[ModelFormat]
    GGUF: ClassVar[ModelFormat]
    WHISPER: ClassVar[ModelFormat]
    TENSORFLOW: ClassVar[ModelFormat]
    REMOTE: ClassVar[ModelFormat]
    UNKNOWN: ClassVar[ModelFormat]

    @property
    def value(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return f"ModelFormat({str(self)!r})"


ModelFormat.ONNX = ModelFormat("onnx")
ModelFormat.OPENVINO_IR = ModelFormat("openvino-ir")
ModelFormat.TFLITE = ModelFormat("tflite")
ModelFormat.TORCHSCRIPT = ModelFormat("torchscript")
ModelFormat.TORCH_EXPORT = ModelFormat("torch-export")  # a torch.export program saved as .pt2
ModelFormat.GGUF = ModelFormat("gguf")
# whisper.cpp's own file (magic "ggml", not GGUF): recognised by wasinn-backend-whisper's detect_format.
ModelFormat.WHISPER = ModelFormat("whisper")
ModelFormat.TENSORFLOW = ModelFormat("tensorflow")
ModelFormat.UNKNOWN = ModelFormat("unknown")
# No bytes at all: a name the host mapped to a model on an inference server (see wasinn.remote).
ModelFormat.REMOTE = ModelFormat("remote")


#: The format each explicit encoding promises.
ENCODING_FORMAT: dict[GraphEncoding, ModelFormat] = {
    GraphEncoding.OPENVINO: ModelFormat.OPENVINO_IR,
    GraphEncoding.ONNX: ModelFormat.ONNX,
    GraphEncoding.TENSORFLOW: ModelFormat.TENSORFLOW,
    GraphEncoding.PYTORCH: ModelFormat.TORCHSCRIPT,
    GraphEncoding.TENSORFLOWLITE: ModelFormat.TFLITE,
    GraphEncoding.GGML: ModelFormat.GGUF,
    GraphEncoding.WHISPER: ModelFormat.WHISPER,
}

#: Other formats an explicit encoding also stands for (the bytes tell which one it is).
ENCODING_ALSO: dict[GraphEncoding, tuple[ModelFormat, ...]] = {
    GraphEncoding.PYTORCH: (ModelFormat.TORCH_EXPORT,),
}


class TensorType(Enum):
    """Element type of a tensor. ``value`` is the short name used in logs and CLI output."""

    F16 = "f16"
    BF16 = "bf16"
    F32 = "f32"
    F64 = "f64"
    U8 = "u8"
    I8 = "i8"
    I32 = "i32"
    I64 = "i64"

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE[self]

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        """The little-endian numpy dtype. bf16 has none in numpy, so it is carried as raw ``<u2``."""
        return _NUMPY[self]

    @classmethod
    def from_numpy(cls, dtype: np.dtype[np.generic] | type) -> TensorType:
        """The tensor type of a numpy dtype; ``ValueError`` if wasi-nn has no such type."""
        dt = np.dtype(dtype)
        for member, candidate in _NUMPY.items():
            if member is not TensorType.BF16 and candidate == dt.newbyteorder("<"):
                return member
        raise ValueError(f"no wasi-nn tensor type for numpy dtype {dt}")


_ITEMSIZE = {
    TensorType.F16: 2,
    TensorType.BF16: 2,
    TensorType.F32: 4,
    TensorType.F64: 8,
    TensorType.U8: 1,
    TensorType.I8: 1,
    TensorType.I32: 4,
    TensorType.I64: 8,
}

_NUMPY: dict[TensorType, np.dtype[np.generic]] = {
    TensorType.F16: np.dtype("<f2"),
    TensorType.BF16: np.dtype("<u2"),
    TensorType.F32: np.dtype("<f4"),
    TensorType.F64: np.dtype("<f8"),
    TensorType.U8: np.dtype("u1"),
    TensorType.I8: np.dtype("i1"),
    TensorType.I32: np.dtype("<i4"),
    TensorType.I64: np.dtype("<i8"),
}


class ErrorCode(Enum):
    """What went wrong, symbolically. A numbering profile maps each to the guest's errno."""

    INVALID_ARGUMENT = "invalid_argument"
    INVALID_ENCODING = "invalid_encoding"
    MISSING_MEMORY = "missing_memory"
    BUSY = "busy"
    RUNTIME_ERROR = "runtime_error"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    # WasmEdge's GGML codes (100-102): raised by token-generating backends; other numberings map
    # them to the nearest standard code.
    END_OF_SEQUENCE = "end_of_sequence"
    CONTEXT_FULL = "context_full"
    PROMPT_TOO_LONG = "prompt_too_long"
