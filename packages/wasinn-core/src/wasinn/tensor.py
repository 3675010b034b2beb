"""Tensors as they pass between the guest, the core and a backend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wasinn.enums import TensorType


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output as the model declares it.

    ``shape`` entries are ``None`` where the model leaves a dimension dynamic; ``dtype`` is ``None``
    where the backend cannot say. The core uses specs for named tensors, ABI profile disambiguation
    and error messages.

    ``any_length`` marks an input that is a byte string (a prompt, JSON metadata): the core accepts
    data of any length whatever the guest's dims say, because WasmEdge's GGML guests send N bytes
    with dims ``[1]``. The backend reads ``tensor.data`` as bytes.

    ``optional`` marks an input a guest may leave out of a component's ``compute`` (the ggml
    metadata): every other declared input must be given at each ``compute``, as Wasmtime requires,
    so that no call runs on the inputs of the call before.
    """

    name: str
    dtype: TensorType | None
    shape: tuple[int | None, ...] | None
    any_length: bool = False
    optional: bool = False

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        """True when ``shape`` fits this spec (same rank; equal wherever the spec is static)."""
        if self.shape is None:
            return True
        if len(shape) != len(self.shape):
            return False
        return all(want is None or want == got for want, got in zip(self.shape, shape, strict=True))

    def describe(self) -> str:
        """``f32[1,3,?,?]``-style text for logs."""
        dtype = self.dtype.value if self.dtype else "?"
        if self.shape is None:
            return f"{dtype}[...]"
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{dtype}[{dims}]"


@dataclass(frozen=True, slots=True)
class Tensor:
    """An input tensor handed to ``set_input``.

    ``data`` is a **zero-copy** view of the guest's linear memory, valid only for the duration of the
    hook call: a backend that needs the bytes later must copy them (into its runtime's own input
    buffer, ideally, so that this is the only copy). The core has already checked that
    ``len(data) == product(shape) * dtype.itemsize``, except for inputs whose spec says
    ``any_length``.
    """

    dtype: TensorType
    shape: tuple[int, ...]
    data: memoryview

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The data as an ndarray of ``dtype`` and ``shape`` (still a view: do not keep it)."""
        return np.frombuffer(self.data, dtype=self.dtype.numpy_dtype).reshape(self.shape)

    @staticmethod
    def from_numpy(array: np.ndarray, dtype: TensorType | None = None) -> Tensor:
        """A tensor over a (C-contiguous) ndarray, for embedders and tests."""
        contiguous = np.ascontiguousarray(array)
        kind = dtype or TensorType.from_numpy(contiguous.dtype)
        data = memoryview(contiguous.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        return Tensor(kind, tuple(int(d) for d in contiguous.shape), data)


_new_tensor = object.__new__
_set_dtype = Tensor.__dict__["dtype"].__set__
_set_shape = Tensor.__dict__["shape"].__set__
_set_data = Tensor.__dict__["data"].__set__


def checked_tensor(dtype: TensorType, shape: tuple[int, ...], data: memoryview) -> Tensor:
    """``Tensor(dtype, shape, data)`` for the ABI's per-inference path, whose checks are already done:
    it skips the frozen dataclass's ``__init__`` (three ``object.__setattr__`` calls, about 0.3 µs)."""
    tensor: Tensor = _new_tensor(Tensor)
    _set_dtype(tensor, dtype)
    _set_shape(tensor, shape)
    _set_data(tensor, data)
    return tensor


def element_count(shape: Sequence[int]) -> int:
    """Product of the dimensions (1 for a scalar)."""
    return math.prod(shape)
