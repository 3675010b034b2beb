"""The few KServe v2 gRPC messages this backend sends and reads, in protobuf's wire format.

Written by hand (about a hundred lines) so that the ``[grpc]`` extra needs grpcio alone: no
generated stubs, no protobuf runtime, hence no clash with the ``protobuf<7`` pins of servers and
their clients. Tensors travel in ``raw_input_contents`` / ``raw_output_contents`` (one bytes field
each), so encoding is one join and decoding takes zero-copy slices of the answer. The field numbers
are those of ``grpc_predict_v2.proto`` (package ``inference``); the tests check this codec against
the generated classes that ship with KServe and MLServer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from wasinn_backend_kserve.protocol import InputTensor, OutputTensor, ProtocolError

SERVICE = "/inference.GRPCInferenceService/"
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are ten-byte two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | bytearray | memoryview) -> bytes:
    return _varint(number << 3 | _BYTES) + _varint(len(payload))


def _string(number: int, text: str) -> bytes:
    data = text.encode()
    return _field(number, data) + data if data else b""


def _packed_int64(number: int, values: Sequence[int]) -> bytes:
    body = b"".join(_varint(v) for v in values)
    return _field(number, body) + body if values else b""


def encode_model_request(name: str, version: str = "") -> bytes:
    """``ModelReadyRequest`` and ``ModelMetadataRequest``: name = 1, version = 2."""
    return _string(1, name) + _string(2, version)


_prefixes: dict[tuple[object, ...], bytes] = {}


def _prefix(model: str, version: str, inputs: Sequence[InputTensor], outputs: Sequence[str]) -> bytes:
    """Everything before the raw contents; the same for every request of one shape, so kept."""
    key = (model, version, tuple((t.name, t.datatype, t.shape) for t in inputs), tuple(outputs))
    prefix = _prefixes.get(key)
    if prefix is None:
        parts = [_string(1, model), _string(2, version)]
        for tensor in inputs:
            body = _string(1, tensor.name) + _string(2, tensor.datatype) + _packed_int64(3, tensor.shape)
            parts += [_field(5, body), body]
        for output in outputs:
            body = _string(1, output)
            parts += [_field(6, body), body]
        prefix = b"".join(parts)
        if len(_prefixes) > 256:  # bounded: a guest with ever new shapes does not grow it forever
            _prefixes.clear()
        _prefixes[key] = prefix
    return prefix


def encode_infer_request(model: str, version: str, inputs: Sequence[InputTensor],
                         outputs: Sequence[str]) -> bytes:
    """``ModelInferRequest``: model_name 1, model_version 2, inputs 5, outputs 6, raw_input_contents 7."""
    parts: list[bytes | bytearray | memoryview] = [_prefix(model, version, inputs, outputs)]
    for tensor in inputs:
        parts += [_field(7, tensor.data), tensor.data]
    return b"".join(parts)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ProtocolError("truncated or malformed protobuf varint in the server's answer")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: an int for varints and fixed, a memoryview
    slice (no copy) for length-delimited fields."""
    buf = memoryview(data)
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, kind = key >> 3, key & 7
        value: Any
        if kind == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif kind == _BYTES:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise ProtocolError("a protobuf field runs past the end of the server's answer")
            value, pos = buf[pos:pos + size], pos + size
        elif kind == _FIXED64:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif kind == _FIXED32:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ProtocolError(f"unsupported protobuf wire type {kind} in the server's answer")
        if pos > len(buf):
            raise ProtocolError("truncated protobuf message in the server's answer")
        yield number, kind, value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _shape(kind: int, value: Any, into: list[int]) -> None:
    if kind == _BYTES:  # packed
        buf, pos = value, 0
        while pos < len(buf):
            item, pos = _read_varint(buf, pos)
            into.append(_int64(item))
    else:
        into.append(_int64(value))


def decode_ready(data: bytes) -> bool:
    """``ServerReadyResponse`` / ``ModelReadyResponse``: ready = 1."""
    return any(number == 1 and value for number, kind, value in fields(data) if kind == _VARINT)


def _tensor_metadata(data: memoryview) -> dict[str, Any]:
    item: dict[str, Any] = {"name": "", "datatype": "", "shape": []}
    for number, kind, value in fields(data):
        if number == 1 and kind == _BYTES:
            item["name"] = bytes(value).decode()
        elif number == 2 and kind == _BYTES:
            item["datatype"] = bytes(value).decode()
        elif number == 3:
            _shape(kind, value, item["shape"])
    return item


def decode_metadata(data: bytes) -> dict[str, Any]:
    """``ModelMetadataResponse`` (name 1, versions 2, platform 3, inputs 4, outputs 5) as the REST JSON."""
    meta: dict[str, Any] = {"name": "", "versions": [], "platform": "", "inputs": [], "outputs": []}
    for number, kind, value in fields(data):
        if kind != _BYTES:
            continue
        if number == 1:
            meta["name"] = bytes(value).decode()
        elif number == 2:
            meta["versions"].append(bytes(value).decode())
        elif number == 3:
            meta["platform"] = bytes(value).decode()
        elif number in (4, 5):
            meta["inputs" if number == 4 else "outputs"].append(_tensor_metadata(value))
    return meta


# InferTensorContents fields: (numpy dtype, packed as fixed-width) by field number.
_CONTENTS: dict[int, tuple[Any, bool]] = {
    1: (np.bool_, False), 2: (np.int32, False), 3: (np.int64, False), 4: (np.uint32, False), 5: (np.uint64, False),
    6: (np.dtype("<f4"), True), 7: (np.dtype("<f8"), True)}


def _contents(data: memoryview) -> list[Any] | np.ndarray:
    values: list[Any] = []
    for number, kind, value in fields(data):
        spec = _CONTENTS.get(number)
        if spec is None:
            continue
        dtype, fixed = spec
        if kind == _BYTES and fixed and not values:
            # The usual case (MLServer sends typed contents, not raw): one packed field, kept as an
            # array over the answer's bytes rather than millions of Python floats.
            array = np.frombuffer(value, dtype=dtype)
            rest = [f for f in fields(data) if f[0] in _CONTENTS]
            if len(rest) == 1:
                return array
            values.extend(array.tolist())
        elif kind == _BYTES and fixed:
            values.extend(np.frombuffer(value, dtype=dtype).tolist())
        elif kind == _BYTES:
            packed: list[int] = []
            _shape(_BYTES, value, packed)
            values.extend(packed)
        elif fixed:
            values.extend(np.frombuffer(struct.pack("<I" if kind == _FIXED32 else "<Q", value), dtype=dtype).tolist())
        else:
            values.append(_int64(value))
    return values


#: An output's description (name, datatype, shape) by its encoded bytes: the same in every answer of
#: one model and shape, so a tiny inference does not parse it again (bounded, like ``_prefixes``).
_described: dict[bytes, tuple[str, str, tuple[int, ...]]] = {}


def _output(value: memoryview) -> tuple[str, str, tuple[int, ...], list[Any] | np.ndarray | None]:
    """One ``InferOutputTensor``: name 1, datatype 2, shape 3, contents 5."""
    key = bytes(value)
    known = _described.get(key)
    if known is not None:
        return (*known, None)
    name = datatype = ""
    shape: list[int] = []
    values: list[Any] | np.ndarray | None = None
    for inner, inner_kind, inner_value in fields(value):
        if inner == 1 and inner_kind == _BYTES:
            name = bytes(inner_value).decode()
        elif inner == 2 and inner_kind == _BYTES:
            datatype = bytes(inner_value).decode()
        elif inner == 3:
            _shape(inner_kind, inner_value, shape)
        elif inner == 5 and inner_kind == _BYTES:
            values = _contents(inner_value)
    if values is None and len(key) <= 1024:  # contents are data: never kept
        if len(_described) > 256:
            _described.clear()
        _described[key] = (name, datatype, tuple(shape))
    return name, datatype, tuple(shape), values


def decode_infer_response(data: bytes) -> list[OutputTensor]:
    """``ModelInferResponse``: outputs 5 (name 1, datatype 2, shape 3, contents 5), raw_output_contents 6."""
    described: list[tuple[str, str, tuple[int, ...], list[Any] | np.ndarray | None]] = []
    raws: list[memoryview] = []
    for number, kind, value in fields(data):
        if number == 5 and kind == _BYTES:
            described.append(_output(value))
        elif number == 6 and kind == _BYTES:
            raws.append(value)
    if raws and len(raws) != len(described):
        raise ProtocolError(f"the answer has {len(raws)} raw output contents for {len(described)} outputs")
    return [OutputTensor(name, datatype, shape, raw=raws[i] if raws else None,
                         values=None if raws else (values if values is not None else []))
            for i, (name, datatype, shape, values) in enumerate(described)]
