"""The values the conformance kit works with: what an operation gave, the tensors it sends and
checks, and sample model bytes.

* :class:`Outcome` (one wasi-nn operation's result: the symbolic error code, or success) and the
  ``expect_*`` helpers that turn a wrong outcome into an assertion message naming the operation,
  the error code and errno, what was expected, and what wasinn logged about it;
* tensors: :func:`sample_input` (small, exactly representable inputs of every tensor type),
  :func:`decode`, :func:`logical`, the bf16 conversions and :func:`check_values`;
* samples: :data:`FOREIGN_SAMPLES` (one recognisable, not loadable model per built-in format) and
  :data:`JUNK_BUILDERS` (bytes no detector may claim).

Nothing here runs a host or a guest: :mod:`wasinn.testing.drivers` does.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wasinn.enums import ErrorCode, ExecutionTarget, ModelFormat, TensorType

__all__ = [
    "ALL_TARGETS",
    "FOREIGN_SAMPLES",
    "JUNK_BUILDERS",
    "Outcome",
    "bf16_to_f32",
    "check_values",
    "decode",
    "expect_error",
    "expect_ok",
    "f32_to_bf16",
    "logical",
    "sample_input",
]

#: The physical targets a guest can name (``auto`` is WasmEdge's "host decides", not a device).
ALL_TARGETS = (ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU)


# -- outcomes and readable expectations ---------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What one operation gave: ``code`` is ``None`` on success; ``value`` is the new handle or the
    byte count written (also set with ``too_large``: the size the guest would need)."""

    operation: str
    code: ErrorCode | None
    value: int | None = None
    detail: str = ""
    errno: int | None = None

    @property
    def ok(self) -> bool:
        return self.code is None

    def describe(self) -> str:
        if self.code is None:
            return "success"
        errno = f" (errno {self.errno})" if self.errno is not None else ""
        return f"{self.code.value}{errno}"

    def said(self) -> str:
        return f"; wasinn said: {self.detail}" if self.detail else ""


def expect_ok(outcome: Outcome, what: str = "") -> int:
    """Assert success; return the handle (or byte count). ``what`` says what was being done."""
    where = f" ({what})" if what else ""
    assert outcome.ok, f"{outcome.operation}{where}: expected success, got {outcome.describe()}{outcome.said()}"
    return outcome.value if outcome.value is not None else -1


def expect_error(outcome: Outcome, codes: ErrorCode | Sequence[ErrorCode] | None, what: str = "") -> None:
    """Assert failure with one of ``codes`` (any error code when ``None``)."""
    where = f" ({what})" if what else ""
    wanted = [codes] if isinstance(codes, ErrorCode) else list(codes or [])
    names = " or ".join(c.value for c in wanted) or "an error"
    assert not outcome.ok, f"{outcome.operation}{where}: expected {names}, got success"
    assert not wanted or outcome.code in wanted, \
        f"{outcome.operation}{where}: expected {names}, got {outcome.describe()}{outcome.said()}"


# -- tensors -----------------------------------------------------------------------------------------
def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (``<u2``), rounding to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (``<u2``) → float32."""
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def sample_input(dtype: TensorType, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Small, exactly representable values for ``dtype`` (different for each ``seed``), as the raw
    ndarray a guest sends (for bf16: ``<u2`` bit patterns)."""
    count = math.prod(shape)
    base = (np.arange(count, dtype=np.int64) * 3 + seed * 5) % 11  # 0..10
    if dtype in (TensorType.F16, TensorType.F32, TensorType.F64, TensorType.BF16):
        values = base.astype(np.float64) * 0.25 - 1.0  # quarters in [-1, 1.5]: exact in every float type
        if dtype is TensorType.BF16:
            return f32_to_bf16(values.astype(np.float32)).reshape(shape)
        return values.astype(dtype.numpy_dtype).reshape(shape)
    if dtype is TensorType.I8 or dtype in (TensorType.I32, TensorType.I64):
        return (base - 5).astype(dtype.numpy_dtype).reshape(shape)
    return base.astype(dtype.numpy_dtype).reshape(shape)


def decode(dtype: TensorType, raw: bytes, shape: Sequence[int]) -> np.ndarray:
    """Output bytes as an ndarray of ``shape`` (bf16 decoded to float32)."""
    array = np.frombuffer(raw, dtype=dtype.numpy_dtype).reshape(tuple(shape))
    return bf16_to_f32(array) if dtype is TensorType.BF16 else array


def logical(dtype: TensorType, raw: np.ndarray) -> np.ndarray:
    """What an author's ``expected(x)`` receives: the input as numbers (bf16 decoded to float32)."""
    return bf16_to_f32(raw) if dtype is TensorType.BF16 else raw


def check_values(got: np.ndarray, want: np.ndarray, rtol: float, atol: float, what: str) -> None:
    """Assert ``got`` matches ``want`` (shape, then values), naming the first mismatches."""
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: output shape {list(got.shape)}, expected {list(want.shape)}"
    as_float = got.dtype.kind == "f" or want.dtype.kind == "f"
    g = got.astype(np.float64) if as_float else got.astype(np.int64)
    w = want.astype(np.float64) if as_float else want.astype(np.int64)
    close = np.isclose(g, w, rtol=rtol, atol=atol) if as_float else g == w
    if bool(np.all(close)):
        return
    bad = np.argwhere(~close)[:4]
    examples = ", ".join(f"at {tuple(int(i) for i in idx)}: got {g[tuple(idx)].item()!r}, "
                         f"expected {w[tuple(idx)].item()!r}" for idx in bad)
    count = int(np.count_nonzero(~close))
    raise AssertionError(f"{what}: {count} of {close.size} values differ (rtol {rtol}, atol {atol}); {examples}")


# -- samples of formats a backend does not read ------------------------------------------------------------
def _torchscript_sample() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("model/constants.pkl", b"\x80\x02)q\x00.")
        archive.writestr("model/code/__torch__/kit.py", b"")
        archive.writestr("model/version", b"3\n")
    return buffer.getvalue()


def _torch_export_sample() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/archive_format", b"pt2")
        archive.writestr("archive/models/model.json", b"{}")
    return buffer.getvalue()


#: One tiny, recognisable (not loadable) model per built-in format, for "does not score what it
#: cannot read" checks: detection accepts them, no runtime could run them.
FOREIGN_SAMPLES: dict[ModelFormat, tuple[bytes, ...]] = {
    ModelFormat.ONNX: (bytes([0x08, 0x07, 0x3A, 0x00]),),  # ir_version 7, an empty graph
    ModelFormat.TFLITE: (b"\x1c\x00\x00\x00TFL3" + bytes(24),),
    ModelFormat.GGUF: (b"GGUF\x03\x00\x00\x00" + bytes(16),),
    ModelFormat.TORCHSCRIPT: (_torchscript_sample(),),
    ModelFormat.TORCH_EXPORT: (_torch_export_sample(),),
    ModelFormat.OPENVINO_IR: (b'<?xml version="1.0"?>\n<net name="kit" version="11"><layers/><edges/></net>\n',
                              b"\x00" * 16),
}

#: Bytes no detector may claim, nor any ``detect_format`` hook raise on.
JUNK_BUILDERS: tuple[tuple[bytes, ...], ...] = (
    (b"",),
    (b"\x00" * 64,),
    (bytes(range(256)) * 4,),
    (b"PK\x03\x04" + b"\xff" * 60,),
    (b"PK\x05\x06" + bytes(18),),  # an empty zip archive
    (b"\x89HDF\r\n\x1a\n" + bytes(32),),
    (b"{}", b"{}"),
    (b"x" * 10, b"", b"y"),
)

