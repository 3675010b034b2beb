"""The Open Inference Protocol (KServe v2) as this backend uses it, whatever the transport: data
types, model metadata, one inference request and its answer, and the checks on an answer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from wasinn import ErrorCode, TensorSpec, TensorType, WasiNnError

#: v2 datatype <-> wasi-nn tensor type (the v2 names are Triton's; BF16 is Triton's extension).
DATATYPES: dict[str, TensorType] = {
    "FP16": TensorType.F16, "BF16": TensorType.BF16, "FP32": TensorType.F32, "FP64": TensorType.F64,
    "UINT8": TensorType.U8, "INT8": TensorType.I8, "INT32": TensorType.I32, "INT64": TensorType.I64,
}
V2_NAME: dict[TensorType, str] = {value: key for key, value in DATATYPES.items()}


class ProtocolError(WasiNnError):
    """The server's answer breaks the protocol or contradicts the model's metadata."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.RUNTIME_ERROR, message)


@dataclass(frozen=True, slots=True)
class TensorMeta:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 = dynamic

    @property
    def tensor_type(self) -> TensorType | None:
        return DATATYPES.get(self.datatype)

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.tensor_type, tuple(None if d < 0 else d for d in self.shape))


@dataclass(frozen=True, slots=True)
class ModelMeta:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


def _tensor_meta(item: Any, where: str) -> TensorMeta:
    if not isinstance(item, Mapping):
        raise ProtocolError(f"{where}: expected an object, got {type(item).__name__}")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list) \
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ProtocolError(f"{where}: needs name, datatype and an integer shape")
    return TensorMeta(name, datatype.upper(), tuple(int(d) for d in shape))


def parse_metadata(data: Any) -> ModelMeta:
    """The JSON of ``GET /v2/models/{m}`` (the gRPC answer is turned into the same dict)."""
    if not isinstance(data, Mapping):
        raise ProtocolError("model metadata is not a JSON object")
    inputs = data.get("inputs") or []
    outputs = data.get("outputs") or []
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ProtocolError("model metadata: inputs and outputs must be lists")
    versions = data.get("versions") or []
    return ModelMeta(
        name=str(data.get("name", "")),
        versions=tuple(str(v) for v in versions) if isinstance(versions, list) else (),
        platform=str(data.get("platform", "") or ""),
        inputs=tuple(_tensor_meta(t, f"model metadata input {i}") for i, t in enumerate(inputs)),
        outputs=tuple(_tensor_meta(t, f"model metadata output {i}") for i, t in enumerate(outputs)),
    )


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One input of a request: its metadata name, v2 datatype, shape and the bytes (owned)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | bytearray | memoryview

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One output of an answer as the transport decoded it: raw bytes, or JSON values."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | memoryview | None = None
    values: Any = None


def check_outputs(meta: ModelMeta, outputs: Sequence[OutputTensor]) -> list[np.ndarray]:
    """The answer's outputs as arrays in metadata order, after checking each one's name, datatype,
    rank, fixed dimensions and byte length against the metadata (a server answering garbage gives
    the guest ``runtime_error``, never a wrong tensor)."""
    by_name = {out.name: out for out in outputs}
    arrays: list[np.ndarray] = []
    for want in meta.outputs:
        got = by_name.get(want.name)
        if got is None:
            raise ProtocolError(f"the answer has no output {want.name!r} (got {sorted(by_name)})")
        if got.datatype.upper() != want.datatype:
            raise ProtocolError(f"output {want.name!r}: the server answered {got.datatype}, "
                                f"the model's metadata says {want.datatype}")
        if len(got.shape) != len(want.shape) or any(d < 0 for d in got.shape) or any(
                w >= 0 and w != g for w, g in zip(want.shape, got.shape, strict=True)):
            raise ProtocolError(f"output {want.name!r}: shape {list(got.shape)} does not fit the metadata's "
                                f"{list(want.shape)}")
        kind = DATATYPES.get(want.datatype)
        if kind is None:
            raise ProtocolError(f"output {want.name!r}: datatype {want.datatype} has no wasi-nn tensor type")
        count = math.prod(got.shape)
        if got.raw is not None:
            if len(got.raw) != count * kind.itemsize:
                raise ProtocolError(f"output {want.name!r}: {len(got.raw)} bytes for shape {list(got.shape)} "
                                    f"of {want.datatype} ({count * kind.itemsize} expected)")
            array = np.frombuffer(got.raw, dtype=kind.numpy_dtype).reshape(got.shape)
        elif isinstance(got.values, np.ndarray) and got.values.dtype == kind.numpy_dtype:
            if got.values.size != count:
                raise ProtocolError(f"output {want.name!r}: {got.values.size} values for shape {list(got.shape)}")
            array = got.values.reshape(got.shape)
        else:
            array = _from_values(want, kind, got.values, got.shape)
        arrays.append(array)
    return arrays


def _from_values(want: TensorMeta, kind: TensorType, values: Any, shape: tuple[int, ...]) -> np.ndarray:
    """JSON (or gRPC ``*_contents``) values as an array of ``kind``, refusing what a cast would
    change: out of range (300 as INT8 would wrap to 44), not whole (1.5 as INT32), not numbers."""
    if kind is TensorType.BF16:
        raise ProtocolError(f"output {want.name!r}: BF16 cannot travel as JSON")
    try:
        flat = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"output {want.name!r}: data is not a list of numbers ({exc})") from None
    # Booleans, strings, objects (ragged lists, ints past 64 bits): not numbers of this datatype.
    if flat.dtype.kind not in "iuf":
        raise ProtocolError(f"output {want.name!r}: data is not a list of numbers ({flat.dtype})")
    flat = flat.reshape(-1)  # JSON data may be nested or flat (the v2 protocol allows both)
    if flat.size != math.prod(shape):
        raise ProtocolError(f"output {want.name!r}: {flat.size} values for shape {list(shape)}")
    target = np.dtype(kind.numpy_dtype)
    if flat.size and target.kind in "iu":
        if flat.dtype.kind == "f" and not bool(np.all(np.isfinite(flat) & (flat == np.trunc(flat)))):
            raise ProtocolError(f"output {want.name!r}: a value is not whole, the metadata says {want.datatype}")
        info = np.iinfo(cast(Any, target))  # numpy's stubs want a concrete integer type
        if flat.min() < info.min or flat.max() > info.max:
            raise ProtocolError(f"output {want.name!r}: a value is out of range for {want.datatype}")
    with np.errstate(over="ignore"):
        array = flat.astype(target).reshape(shape)
    if flat.size and target.kind == "f" and not bool(np.all(np.isfinite(array.reshape(-1)) | ~np.isfinite(flat))):
        raise ProtocolError(f"output {want.name!r}: a value is out of range for {want.datatype}")
    return array
