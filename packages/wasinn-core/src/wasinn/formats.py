"""Work out a model's format from its bytes, without trusting the guest.

Each detector looks only at the bytes (a few header bytes, or a bounded walk over protobuf fields),
so detection costs microseconds and cannot crash on hostile input.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

from wasinn.enums import ModelFormat

Buffer = bytes | bytearray | memoryview


#: Formats whose files carry code that their runtime runs while loading or computing (TorchScript's
#: Python source and pickles, ``torch.export``'s pickles and sympy expressions). A guest's bytes in one
#: of them are refused unless the embedder sets ``Limits.allow_guest_code``.
CODE_FORMATS: frozenset[ModelFormat] = frozenset({ModelFormat.TORCHSCRIPT, ModelFormat.TORCH_EXPORT})


def detect_format(builders: Sequence[Buffer]) -> ModelFormat:
    """The format of a model given as graph builders (one buffer, or IR's XML + weights)."""
    if not builders:
        return ModelFormat.UNKNOWN
    first = builders[0]
    if len(builders) == 2 and is_openvino_xml(first):
        return ModelFormat.OPENVINO_IR
    if len(builders) != 1:
        return ModelFormat.UNKNOWN
    if is_tflite(first):
        return ModelFormat.TFLITE
    if is_gguf(first):
        return ModelFormat.GGUF
    if bytes(first[:4]) == _ZIP_MAGIC:
        entries = zip_entries(first)
        if is_torchscript_entries(entries):
            return ModelFormat.TORCHSCRIPT
        if is_torch_export_entries(entries):
            return ModelFormat.TORCH_EXPORT
        return ModelFormat.UNKNOWN
    if is_openvino_xml(first):
        return ModelFormat.UNKNOWN  # IR XML without its weights: not loadable as given
    if is_onnx(first):
        return ModelFormat.ONNX
    return ModelFormat.UNKNOWN


def is_tflite(data: Buffer) -> bool:
    """TFLite flatbuffers carry the file identifier ``TFL3`` at bytes 4..8."""
    return len(data) >= 8 and bytes(data[4:8]) == b"TFL3"


def is_gguf(data: Buffer) -> bool:
    return len(data) >= 4 and bytes(data[:4]) == b"GGUF"


_ZIP_MAGIC = b"PK\x03\x04"
#: More entries than this and the zip is not a model we detect (bounds the central-directory read).
_MAX_ZIP_ENTRIES = 65536


def zip_entries(data: Buffer) -> frozenset[str]:
    """The entry names of a zip file, read from its central directory; empty if it is not one."""
    if len(data) < 22 or bytes(data[:4]) != _ZIP_MAGIC:
        return frozenset()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > _MAX_ZIP_ENTRIES:
                return frozenset()
            return frozenset(info.filename for info in infos)
    except Exception:  # a truncated or hostile zip is simply not a format we know
        return frozenset()


def _under_one_root(entries: frozenset[str], *names: str) -> bool:
    roots = {entry.split("/", 1)[0] for entry in entries if "/" in entry}
    return any(all(f"{root}/{name}" in entries for name in names) for root in roots)


def is_torchscript_entries(entries: frozenset[str]) -> bool:
    """TorchScript (``torch.jit.save``): ``data.pkl`` and ``constants.pkl`` beside a ``code/`` tree.

    A plain ``torch.save`` checkpoint has ``data.pkl`` but no ``constants.pkl`` nor code: it is not
    a model wasinn can run.
    """
    return _under_one_root(entries, "data.pkl", "constants.pkl") and any("/code/" in e for e in entries)


def is_torch_export_entries(entries: frozenset[str]) -> bool:
    """A ``torch.export`` program (``.pt2``): an ``archive_format`` entry and a ``models/*.json``."""
    return (_under_one_root(entries, "archive_format")
            and any(e.count("/") == 2 and e.split("/")[1] == "models" and e.endswith(".json") for e in entries))


def is_torchscript(data: Buffer) -> bool:
    """True for a TorchScript archive (see :func:`is_torchscript_entries`)."""
    return is_torchscript_entries(zip_entries(data))


def is_torch_export(data: Buffer) -> bool:
    """True for a ``torch.export`` ``.pt2`` archive (see :func:`is_torch_export_entries`)."""
    return is_torch_export_entries(zip_entries(data))


def is_openvino_xml(data: Buffer) -> bool:
    """OpenVINO IR XML: a ``<net`` root element near the start, after the optional prolog."""
    head = bytes(data[:512]).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        return False
    return b"<net " in head or b"<net>" in head


# ModelProto field numbers and their wire types (onnx.proto). Unknown fields make the walk fail:
# that is what tells an ONNX model apart from any other protobuf or random bytes.
_MODEL_PROTO_FIELDS = {
    1: 0,  # ir_version: varint
    2: 2,  # producer_name
    3: 2,  # producer_version
    4: 2,  # domain
    5: 0,  # model_version
    6: 2,  # doc_string
    7: 2,  # graph
    8: 2,  # opset_import
    14: 2,  # metadata_props
    20: 2,  # training_info
    25: 2,  # functions
    26: 2,  # configuration
}

_MAX_FIELDS_WALKED = 4096


def read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: (value, position after it); ``ValueError`` if truncated or over 10 bytes."""
    result, shift = 0, 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise ValueError("truncated varint")


# What nests inside what in onnx.proto, as far as tensors go: message kind -> {field number: kind}.
_ONNX_NESTING: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "training": {1: "graph", 2: "graph"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1
_MAX_ONNX_DEPTH = 64


def onnx_external_data(data: Buffer) -> bool:
    """True if an ONNX model keeps any tensor's data in another file (``external_data`` entries or
    ``data_location = EXTERNAL``), in any initializer, attribute, subgraph, function or training
    graph; also True when the bytes cannot be walked (a model wasinn cannot vouch for).

    A model with external data makes the runtime open paths the model names: from a guest, that is
    a guest-chosen host path (OpenVINO reads them relative to the working directory, or absolute).
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    try:
        return _walk_onnx(view, "model", 0)
    except (ValueError, IndexError):
        return True


def _walk_onnx(view: memoryview, kind: str, depth: int) -> bool:
    if depth > _MAX_ONNX_DEPTH:
        raise ValueError("nested too deeply")
    nested = _ONNX_NESTING[kind]
    pos, end = 0, len(view)
    while pos < end:
        key, pos = read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(view, pos)
            if kind == "tensor" and number == _TENSOR_DATA_LOCATION and value == _EXTERNAL:
                return True
        elif wire == 2:
            length, pos = read_varint(view, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            if kind == "tensor" and number == _TENSOR_EXTERNAL_DATA:
                return True
            child = nested.get(number)
            if child is not None and _walk_onnx(view[pos:pos + length], child, depth + 1):
                return True
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos > end:
            raise ValueError("truncated field")
    return False


def is_onnx(data: Buffer) -> bool:
    """True if ``data`` parses as an ONNX ModelProto at the top level and has a graph.

    ONNX has no magic number, so this walks the top-level protobuf fields (bounded) and checks
    each against ModelProto's field table; the nested graph is left to the runtime.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    pos, seen_graph, seen_ir_version = 0, False, False
    try:
        for _ in range(_MAX_FIELDS_WALKED):
            if pos == len(view):
                return seen_graph and seen_ir_version
            key, pos = read_varint(view, pos)
            number, wire = key >> 3, key & 7
            if _MODEL_PROTO_FIELDS.get(number) != wire:
                return False
            if wire == 0:
                _, pos = read_varint(view, pos)
            else:
                length, pos = read_varint(view, pos)
                pos += length
                if pos > len(view):
                    return False
            seen_graph |= number == 7
            seen_ir_version |= number == 1
    except ValueError:
        return False
    return False
