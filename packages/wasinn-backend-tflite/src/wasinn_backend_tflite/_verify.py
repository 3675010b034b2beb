"""A bounds-checked reader for TFLite flatbuffers, so that hostile bytes never reach the interpreter.

The TFLite interpreter trusts its flatbuffer: ``Interpreter(model_content=...)`` builds the model
without running the flatbuffers verifier, so an offset that points outside the buffer, a tensor
index out of range or a nonsensical quantization makes it read wild memory and crash the whole
process (fuzzing LiteRT 2.3 found such crashes in about 1 in 1000 bit-flipped models). Python's
``flatbuffers`` package has no verifier, so this module is one, in pure Python:

1. **Structure** (what ``flatbuffers::Verifier`` checks): every table, vtable, vector and string
   lies inside the buffer, offsets point forward, strings are terminated, union members have the
   type their tag says; nesting depth and table count are bounded. Driven by the schema tables in
   :mod:`wasinn_backend_tflite._schema`, generated from the schema LiteRT ships.
2. **Meaning** (what the interpreter assumes): indices (opcode, tensor, buffer, subgraph) are in
   range, shapes are sane, constant buffers match their tensor's size, large-model buffer offsets
   lie inside the file, and the crash classes fuzzing found are refused: bad quantization (zero or
   subnormal scales, zero points outside the type, 8-bit arithmetic without parameters), absurd
   pool/conv windows and strides, missing (-1) inputs where the operator has no optional input.

What a kernel's Prepare or Eval assumes beyond that (the right number of inputs for an operator, its
options being present) is not checkable from the flatbuffer; :mod:`._probe` covers it for untrusted
models by trying them in a child process.

:func:`verify` returns a :class:`ModelInfo` (inputs, outputs, operators) or raises
:class:`ModelError`. It needs no TFLite runtime, so ``can_handle`` can use it cheaply.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from wasinn_backend_tflite._schema import BUILTIN_OPERATORS, TABLES, TENSOR_TYPES, UNIONS

__all__ = ["ModelError", "ModelInfo", "TensorInfo", "verify", "ITEMSIZE"]

SCHEMA_VERSION = 3
MAX_BUFFER_SIZE = (1 << 31) - 1  # flatbuffers' own limit: uoffsets are 32-bit
MAX_DEPTH = 64  # flatbuffers::Verifier defaults
MAX_TABLES = 1_000_000
MAX_RANK = 16  # TFLite kernels handle at most 6 dims; anything past this is corruption
# Kernels count elements and bytes in int32 (a [1073741825, 4] input crashed LiteRT 2.3); a
# flatbuffer cannot hold a bigger constant anyway.
MAX_TENSOR_BYTES = (1 << 31) - 1

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_SCALARS = {
    "u8": struct.Struct("<B"), "i8": struct.Struct("<b"), "u16": struct.Struct("<H"), "i16": struct.Struct("<h"),
    "u32": struct.Struct("<I"), "i32": struct.Struct("<i"), "u64": struct.Struct("<Q"), "i64": struct.Struct("<q"),
    "f32": struct.Struct("<f"), "f64": struct.Struct("<d"),
}
_WIDTH = {kind: packer.size for kind, packer in _SCALARS.items()}
_U16X2 = struct.Struct("<HH")


@functools.lru_cache(maxsize=256)
def _array(code: str, count: int) -> struct.Struct:
    return struct.Struct(f"<{count}{code}")


_FORMAT = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I", "i32": "i", "u64": "Q", "i64": "q",
           "f32": "f", "f64": "d"}

#: Bytes per element of each TFLite tensor type with a fixed width (packed 4/2-bit and
#: variable-size types are absent).
ITEMSIZE: dict[str, int] = {
    "FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2, "COMPLEX64": 8,
    "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4, "UINT16": 2, "BFLOAT16": 2,
    "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1,
}
_OPAQUE_TYPES = frozenset({"RESOURCE", "VARIANT"})
_CUSTOM = next(code for code, name in BUILTIN_OPERATORS.items() if name == "CUSTOM")

# name -> (vtable offset, kind, argument, default) per table, for the semantic pass.
_FIELDS: dict[str, dict[str, tuple[int, str, str, int | float | None]]] = {
    table: {name: (voff, kind, arg, default) for voff, name, kind, arg, default in fields}
    for table, fields in TABLES.items()
}
# Each union field's tag field (the schema names it ``<union>Type``).
_UNION_TAGS: dict[tuple[str, int], int] = {}
for _table, _fields in TABLES.items():
    for _voff, _name, _kind, _arg, _default in _fields:
        if _kind == "union":
            _UNION_TAGS[(_table, _voff)] = _FIELDS[_table][_name + "Type"][0]


class ModelError(ValueError):
    """The bytes are not a well-formed TFLite model (the message says where)."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor of the primary subgraph as the flatbuffer declares it."""

    index: int
    name: str
    type: str  # the schema's name: FLOAT32, UINT8, ...
    shape: tuple[int, ...]
    signature: tuple[int, ...] | None  # shape_signature: -1 marks a dynamic dimension

    @property
    def dynamic(self) -> bool:
        return self.signature is not None and any(d < 0 for d in self.signature)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What :func:`verify` learned about a well-formed model."""

    version: int
    subgraphs: int
    tensors: int
    operators: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    builtin_ops: frozenset[str]
    custom_ops: frozenset[str]
    description: str


class _Structure:
    """Pass 1: the generic flatbuffers verifier, schema-driven."""

    def __init__(self, data: memoryview) -> None:
        self.buf = data
        self.size = len(data)
        self.tables = 0

    def fail(self, what: str, pos: int) -> ModelError:
        return ModelError(f"{what} at byte {pos}")

    def u32(self, pos: int, what: str) -> int:
        if pos < 0 or pos + 4 > self.size or pos & 3:
            raise self.fail(f"{what}: 4-byte field out of bounds or misaligned", pos)
        return int(_U32.unpack_from(self.buf, pos)[0])

    def offset(self, pos: int, what: str) -> int:
        """Follow the uoffset stored at ``pos``; it must point forward and stay inside the buffer."""
        rel = self.u32(pos, what)
        if rel == 0 or rel > MAX_BUFFER_SIZE or pos + rel >= self.size:
            raise self.fail(f"{what}: offset {rel} points outside the model", pos)
        return pos + rel

    def vector(self, pos: int, elem: int, what: str) -> tuple[int, int]:
        """(first element position, length) of the vector at ``pos``."""
        count = self.u32(pos, f"{what} length")
        if count > MAX_BUFFER_SIZE // max(elem, 1) or pos + 4 + count * elem > self.size:
            raise self.fail(f"{what}: vector of {count} x {elem} bytes runs past the end of the model", pos)
        return pos + 4, count

    def string(self, pos: int, what: str) -> None:
        start, count = self.vector(pos, 1, what)
        if start + count >= self.size or self.buf[start + count] != 0:
            raise self.fail(f"{what}: string is not terminated", pos)

    def table(self, pos: int, name: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(f"{name}: tables nested deeper than {MAX_DEPTH}", pos)
        self.tables += 1
        if self.tables > MAX_TABLES:
            raise self.fail(f"more than {MAX_TABLES} tables", pos)
        buf, size = self.buf, self.size
        if pos & 3 or pos + 4 > size:
            raise self.fail(f"{name}: table out of bounds or misaligned", pos)
        vtable = pos - _I32.unpack_from(buf, pos)[0]
        if vtable < 0 or vtable & 1 or vtable + 4 > size:
            raise self.fail(f"{name}: vtable out of bounds", pos)
        vsize, tsize = _U16X2.unpack_from(buf, vtable)
        if vsize < 4 or vsize & 1 or vtable + vsize > size or tsize < 4 or pos + tsize > size:
            raise self.fail(f"{name}: vtable sizes out of bounds", vtable)
        slots = _array("H", vsize // 2 - 2).unpack_from(buf, vtable + 4) if vsize > 4 else ()
        for voff, field, kind, arg, _ in TABLES[name]:
            slot = (voff - 4) >> 1
            if slot >= len(slots):
                break  # fields are sorted by vtable offset
            rel = slots[slot]
            if rel == 0:
                continue
            where = pos + rel
            if kind == "scalar":
                width = _WIDTH[arg]
                if where + width > size or where % width:
                    raise self.fail(f"{name}.{field}: scalar out of bounds or misaligned", where)
                continue
            what = f"{name}.{field}"
            target = self.offset(where, what)
            if kind == "vec":
                self.vector(target, _WIDTH[arg], what)
            elif kind == "tab":
                self.table(target, arg, depth + 1)
            elif kind == "str":
                self.string(target, what)
            elif kind == "vectab" or kind == "vecstr":
                start, count = self.vector(target, 4, what)
                rels = _array("I", count).unpack_from(buf, start) if count else ()
                for i, item_rel in enumerate(rels):
                    item = start + 4 * i + item_rel
                    if item_rel == 0 or item_rel > MAX_BUFFER_SIZE or item >= size:
                        raise self.fail(f"{what}[{i}]: offset {item_rel} points outside the model", start + 4 * i)
                    if kind == "vectab":
                        self.table(item, arg, depth + 1)
                    else:
                        self.string(item, f"{what}[{i}]")
            elif kind == "union":
                tag_slot = (_UNION_TAGS[(name, voff)] - 4) >> 1
                tag_rel = slots[tag_slot] if tag_slot < len(slots) else 0
                tag = buf[pos + tag_rel] if tag_rel else 0
                member = UNIONS[arg].get(tag)
                # Unknown tags are skipped (forward compatibility, as flatbuffers does); the
                # interpreter only reads a union through the accessor of the type it expects.
                if member is not None:
                    self.table(target, member, depth + 1)


class _Table:
    """Pass 2 accessor over a table that pass 1 already verified (so reads need no checks)."""

    __slots__ = ("buf", "name", "pos", "vsize", "vtable")

    def __init__(self, buf: memoryview, pos: int, name: str) -> None:
        self.buf, self.pos, self.name = buf, pos, name
        self.vtable = pos - int(_I32.unpack_from(buf, pos)[0])
        self.vsize = int(_U16.unpack_from(buf, self.vtable)[0])

    def _where(self, field: str) -> tuple[int, str, str] | None:
        voff, kind, arg, _ = _FIELDS[self.name][field]
        if voff >= self.vsize:
            return None
        rel = int(_U16.unpack_from(self.buf, self.vtable + voff)[0])
        return (self.pos + rel, kind, arg) if rel else None

    def _target(self, where: int) -> int:
        return where + int(_U32.unpack_from(self.buf, where)[0])

    def scalar(self, field: str) -> int | float:
        """The field's value, or the schema default when the field is absent."""
        found = self._where(field)
        if found is None:
            default = _FIELDS[self.name][field][3]
            assert default is not None
            return default
        where, _, arg = found
        value: int | float = _SCALARS[arg].unpack_from(self.buf, where)[0]
        return value

    def has(self, field: str) -> bool:
        return self._where(field) is not None

    def string(self, field: str) -> str | None:
        found = self._where(field)
        if found is None:
            return None
        target = self._target(found[0])
        count = int(_U32.unpack_from(self.buf, target)[0])
        return bytes(self.buf[target + 4:target + 4 + count]).decode("utf-8", "replace")

    def vector(self, field: str) -> tuple[int | float, ...] | None:
        """A scalar vector's values; ``None`` when absent."""
        found = self._where(field)
        if found is None:
            return None
        where, _, arg = found
        target = self._target(where)
        count = int(_U32.unpack_from(self.buf, target)[0])
        values: tuple[int | float, ...] = struct.unpack_from(f"<{count}{_FORMAT[arg]}", self.buf, target + 4)
        return values

    def vector_span(self, field: str) -> tuple[int, int] | None:
        """(first byte, length) of a byte vector, without reading it."""
        found = self._where(field)
        if found is None:
            return None
        target = self._target(found[0])
        return target + 4, int(_U32.unpack_from(self.buf, target)[0])

    def table(self, field: str) -> _Table | None:
        found = self._where(field)
        if found is None:
            return None
        where, _, arg = found
        return _Table(self.buf, self._target(where), arg)

    def tables(self, field: str) -> list[_Table]:
        found = self._where(field)
        if found is None:
            return []
        where, _, arg = found
        target = self._target(where)
        count = int(_U32.unpack_from(self.buf, target)[0])
        return [_Table(self.buf, self._target(target + 4 + 4 * i), arg) for i in range(count)]

    def union(self, field: str) -> _Table | None:
        found = self._where(field)
        if found is None:
            return None
        tag = int(self.scalar(field + "Type"))
        member = UNIONS[found[2]].get(tag)
        return _Table(self.buf, self._target(found[0]), member) if member else None


def _indices(values: Sequence[int | float] | None, limit: int, what: str, *, optional: bool = False) -> None:
    """Every index in ``values`` lies in [0, limit) (or is -1 where the schema allows "no tensor")."""
    if not values:
        return
    low = -1 if optional else 0
    if min(values) < low or max(values) >= limit:
        bad = next(v for v in values if not low <= v < limit)
        raise ModelError(f"{what}: index {int(bad)} out of range (valid: {low}..{limit - 1})")


# Zero points a quantized tensor of each integer type can hold; the kernels index lookup tables and
# clamp ranges with them, and LiteRT 2.3 crashes in allocate_tensors on values outside these.
_ZERO_POINT_RANGE: dict[str, tuple[int, int]] = {
    "UINT8": (0, 255), "INT8": (-128, 127), "INT16": (-32768, 32767), "INT4": (-8, 7), "UINT4": (0, 15),
    "INT2": (-2, 1),
}
_INT32_RANGE = (-(1 << 31), (1 << 31) - 1)
# Smallest normal float32: zero or subnormal scales of quantized tensors crash LiteRT 2.3's
# multiplier computation.
_MIN_SCALE = 1.1754944e-38


def _check_quantization(q: _Table, type_name: str, shape: Sequence[int], what: str) -> None:
    scale, zero_point = q.vector("Scale") or (), q.vector("ZeroPoint") or ()
    if len(zero_point) != len(scale):
        raise ModelError(f"{what}: {len(scale)} quantization scale(s) but {len(zero_point)} zero point(s)")
    if not scale:
        return
    quantized_int = type_name in _ZERO_POINT_RANGE
    smallest = _MIN_SCALE if quantized_int else 0.0
    if not all(math.isfinite(v) and v >= smallest for v in scale):
        raise ModelError(f"{what}: quantization scale {min(scale)} is not a positive finite number")
    low, high = _ZERO_POINT_RANGE.get(type_name, _INT32_RANGE)
    if min(zero_point) < low or max(zero_point) > high:
        raise ModelError(f"{what}: zero point outside {low}..{high} for a {type_name.lower()} tensor")
    if len(scale) > 1:
        axis = int(q.scalar("QuantizedDimension"))
        if not 0 <= axis < len(shape) or shape[axis] != len(scale):
            raise ModelError(f"{what}: per-axis quantization over dimension {axis} with {len(scale)} scales "
                             f"does not fit shape {list(shape)}")
    for bound in ("Min", "Max"):
        values = q.vector(bound)
        if values and not all(math.isfinite(v) for v in values):
            raise ModelError(f"{what}: quantization {bound.lower()} is not finite")


def _check_sparsity(sparsity: _Table, shape: Sequence[int], what: str) -> None:
    order = sparsity.vector("TraversalOrder")
    block_map = sparsity.vector("BlockMap")
    metadata = sparsity.tables("DimMetadata")
    dims = 0 if order is None else len(order)
    blocks = 0 if block_map is None else len(block_map)
    if dims != len(shape) + blocks or len(metadata) != dims:
        raise ModelError(f"{what}: sparsity describes {dims} traversal dims and {len(metadata)} dim metadata "
                         f"for a rank-{len(shape)} tensor with {blocks} block dims")
    if order is not None and sorted(int(v) for v in order) != list(range(dims)):
        raise ModelError(f"{what}: sparsity traversal order is not a permutation")
    _indices(block_map, max(len(shape), 1), f"{what} sparsity block map")
    for dim in metadata:
        fmt = int(dim.scalar("Format"))
        if fmt == 0:  # DENSE
            if int(dim.scalar("DenseSize")) < 0:
                raise ModelError(f"{what}: negative dense size in sparsity metadata")
        elif fmt == 1:  # SPARSE_CSR: needs both index arrays
            if dim.union("ArraySegments") is None or dim.union("ArrayIndices") is None:
                raise ModelError(f"{what}: sparse dimension without segment/index arrays")
        else:
            raise ModelError(f"{what}: unknown sparsity dimension format {fmt}")


def _tensor_bytes(shape: Sequence[int], type_name: str) -> int | None:
    itemsize = ITEMSIZE.get(type_name)
    return None if itemsize is None else math.prod(shape) * itemsize


def _pick(subgraph: _Table, field: str, infos: Sequence[TensorInfo | None]) -> tuple[TensorInfo, ...]:
    chosen = [infos[int(i)] for i in subgraph.vector(field) or ()]
    return tuple(info for info in chosen if info is not None)


def verify(data: bytes | bytearray | memoryview) -> ModelInfo:
    """Check ``data`` as a TFLite model; the :class:`ModelInfo` on success, :class:`ModelError` if not.

    Each table has a check of its own, called in the order a reader meets them: the file and the
    model, the buffers, the operator codes, each subgraph (its tensors, then its operators), the
    calls between subgraphs, the signature defs and the metadata. The first problem raises."""
    buf = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    model = _check_structure(buf)
    version = _check_version(model)
    buffer_bytes = _check_buffers(model, len(buf))
    opcode_names, builtin, custom = _check_operator_codes(model)
    subgraphs = model.tables("Subgraphs")
    if not subgraphs:
        raise ModelError("the model has no subgraphs")
    checked = [_check_subgraph(subgraph, s, opcode_names, buffer_bytes, len(subgraphs), len(buf))
               for s, subgraph in enumerate(subgraphs)]
    _check_calls([c.calls for c in checked])
    _check_signature_defs(model, [c.tensors for c in checked])
    _check_metadata(model, len(buffer_bytes))

    return ModelInfo(
        version=version,
        subgraphs=len(subgraphs),
        tensors=sum(c.tensors for c in checked),
        operators=sum(c.operators for c in checked),
        inputs=checked[0].inputs,
        outputs=checked[0].outputs,
        builtin_ops=frozenset(builtin),
        custom_ops=frozenset(custom),
        description=model.string("Description") or "",
    )


def _check_structure(buf: memoryview) -> _Table:
    """The file: a TFL3 flatbuffer of at most 2 GiB whose every table passes pass 1; its root Model."""
    size = len(buf)
    if size < 8 or bytes(buf[4:8]) != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (no TFL3 identifier)")
    if size > MAX_BUFFER_SIZE:
        # >2 GB models keep their weights outside the flatbuffer proper; wasi-nn hands us one
        # buffer, which cannot be that large and still be a flatbuffer.
        raise ModelError(f"{size} bytes is over the 2 GiB flatbuffer limit")
    structure = _Structure(buf)
    root = structure.offset(0, "root table")
    structure.table(root, "Model", 0)
    return _Table(buf, root, "Model")


def _check_version(model: _Table) -> int:
    """Model.version: the schema this reader knows."""
    version = int(model.scalar("Version"))
    if version != SCHEMA_VERSION:
        raise ModelError(f"schema version {version}, expected {SCHEMA_VERSION}")
    return version


def _check_buffers(model: _Table, size: int) -> list[int | None]:
    """Model.buffers: at least one, large-model payloads inside the file; each payload's size (None: empty)."""
    buffers = model.tables("Buffers")
    if not buffers:
        raise ModelError("the model has no buffers")
    buffer_bytes: list[int | None] = []  # size of each buffer's payload (None: empty)
    for i, buffer in enumerate(buffers):
        offset, length = int(buffer.scalar("Offset")), int(buffer.scalar("Size"))
        span = buffer.vector_span("Data")
        if offset > 1:
            # Large-model layout: the payload lives at an absolute file offset.
            if offset + length > size:
                raise ModelError(f"buffer {i}: bytes {offset}..{offset + length} lie outside the {size}-byte model")
            buffer_bytes.append(length)
        elif span is not None and span[1]:
            buffer_bytes.append(span[1])
        else:
            buffer_bytes.append(None)
    return buffer_bytes


def _check_operator_codes(model: _Table) -> tuple[list[str], set[str], set[str]]:
    """Model.operator_codes: named customs, no negative builtins; (each code's name, builtins, customs)."""
    builtin: set[str] = set()
    custom: set[str] = set()
    opcode_names: list[str] = []
    for i, code in enumerate(model.tables("OperatorCodes")):
        value = max(int(code.scalar("DeprecatedBuiltinCode")), int(code.scalar("BuiltinCode")))
        if value == _CUSTOM:
            name = code.string("CustomCode")
            if not name:
                raise ModelError(f"operator code {i}: CUSTOM without a custom_code name")
            custom.add(name)
            opcode_names.append(name)
        elif value < 0:
            raise ModelError(f"operator code {i}: negative builtin code {value}")
        else:
            name = BUILTIN_OPERATORS.get(value, f"builtin#{value}")
            builtin.add(name)
            opcode_names.append(name)
    return opcode_names, builtin, custom


@dataclass(frozen=True, slots=True)
class _Tensors:
    """What the checks of a subgraph's operators need to know about its tensors (one entry each)."""

    infos: list[TensorInfo | None]
    constant: list[bool]  # tensors backed by data in the model
    # Tensors that hold a value before any operator runs: constants, variables (the interpreter
    # zeroes them), empty ones, and (added by the subgraph's check) the subgraph's inputs.
    defined: list[bool]
    unquantized: list[bool]  # 8-bit integer tensors without quantization parameters


def _check_tensor(tensor: _Table, t: int, what: str,
                  buffer_bytes: Sequence[int | None]) -> tuple[TensorInfo, bool, bool, bool]:
    """One Tensor: type, shape, signature, buffer, sparsity, quantization; its info, and whether it
    is constant, defined before any operator runs, and 8-bit without quantization parameters."""
    type_value = int(tensor.scalar("Type"))
    type_name = TENSOR_TYPES.get(type_value)
    if type_name is None:
        raise ModelError(f"{what}: unknown tensor type {type_value}")
    shape_array = tensor.vector("Shape")
    shape = tuple(int(d) for d in shape_array) if shape_array else ()
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise ModelError(f"{what}: invalid shape {list(shape)}")
    nbytes = _tensor_bytes(shape, type_name)
    if math.prod(shape) > MAX_TENSOR_BYTES or (nbytes is not None and nbytes > MAX_TENSOR_BYTES):
        raise ModelError(f"{what}: shape {list(shape)} is too large")
    signature_array = tensor.vector("ShapeSignature")
    signature = None
    if signature_array:
        signature = tuple(int(d) for d in signature_array)
        if len(signature) != len(shape) or any(d < -1 for d in signature) \
                or any(g >= 0 and g != d for g, d in zip(signature, shape, strict=True)):
            raise ModelError(f"{what}: shape signature {list(signature)} does not fit shape {list(shape)}")
    buffer_index = int(tensor.scalar("Buffer"))
    if buffer_index >= len(buffer_bytes):
        raise ModelError(f"{what}: buffer index {buffer_index} out of range ({len(buffer_bytes)} buffers)")
    sparsity = tensor.table("Sparsity")
    if sparsity is not None:
        _check_sparsity(sparsity, shape, what)
    payload = buffer_bytes[buffer_index]
    constant = payload is not None
    external = int(tensor.scalar("ExternalBuffer"))
    if external:
        # Weights in a file beside the model: wasi-nn hands over one buffer, and a guest
        # names no host file.
        raise ModelError(f"{what}: its data is in external buffer {external}")
    defined = constant or bool(tensor.scalar("IsVariable")) or math.prod(shape) == 0
    if payload is not None and sparsity is None and nbytes is not None and payload != nbytes:
        raise ModelError(f"{what}: constant buffer {buffer_index} holds {payload} bytes but "
                         f"{type_name.lower()}{list(shape)} needs {nbytes}")
    quantization = tensor.table("Quantization")
    if quantization is not None:
        _check_quantization(quantization, type_name, shape, what)
    unquantized = False
    if type_name in ("UINT8", "INT8"):
        unquantized = quantization is None or not quantization.vector("Scale")
    info = TensorInfo(t, tensor.string("Name") or "", type_name, shape, signature)
    return info, constant, defined, unquantized


def _check_tensors(tensors: Sequence[_Table], s: int, buffer_bytes: Sequence[int | None]) -> _Tensors:
    """SubGraph.tensors, each through :func:`_check_tensor`."""
    count = len(tensors)
    checked = _Tensors([None] * count, [False] * count, [False] * count, [False] * count)
    for t, tensor in enumerate(tensors):
        info, constant, defined, unquantized = _check_tensor(tensor, t, f"subgraph {s} tensor {t}", buffer_bytes)
        checked.infos[t], checked.constant[t], checked.defined[t], checked.unquantized[t] = \
            info, constant, defined, unquantized
    return checked


def _check_operator(op: _Table, what: str, opcode_names: Sequence[str], tensors: _Tensors, subgraphs: int,
                    size: int) -> list[int]:
    """One Operator: opcode, tensor indices, inputs it may leave out, arity, quantization of what
    it touches, what it writes and reads (in the order operators run), options; marks its outputs
    defined and returns the subgraphs its options name."""
    count = len(tensors.infos)
    constant, defined, unquantized = tensors.constant, tensors.defined, tensors.unquantized
    opcode = int(op.scalar("OpcodeIndex"))
    if opcode >= len(opcode_names):
        raise ModelError(f"{what}: opcode index {opcode} out of range ({len(opcode_names)} codes)")
    op_name = opcode_names[opcode]
    what = f"{what} ({op_name})"
    inputs, outputs = op.vector("Inputs") or (), op.vector("Outputs") or ()
    _indices(inputs, count, f"{what} inputs", optional=True)
    _indices(outputs, count, f"{what} outputs")
    _indices(op.vector("Intermediates"), count, f"{what} intermediates")
    _check_optional_inputs(inputs, op_name, what)
    if op_name in _ARITY and len(inputs) != _ARITY[op_name]:
        raise ModelError(f"{what}: {len(inputs)} inputs, not {_ARITY[op_name]}")
    if op_name not in _RAW_INT8_OPS and not op_name.startswith("STABLEHLO_"):
        bare = [int(t) for t in (*inputs, *outputs) if t >= 0 and unquantized[int(t)]]
        if bare:
            raise ModelError(f"{what}: 8-bit tensor {bare[0]} has no quantization parameters")
    written = [int(t) for t in outputs if constant[int(t)]]
    if written:
        raise ModelError(f"{what}: writes constant tensor {written[0]}")
    # Operators run in the order they are listed: an input nothing has written yet would be
    # uninitialised (or another invocation's) memory.
    unset = [int(t) for t in inputs if t >= 0 and not defined[int(t)]]
    if unset:
        raise ModelError(f"{what}: reads tensor {unset[0]}, which no earlier operator writes and "
                         f"which is neither an input, a constant nor a variable")
    for produced in outputs:
        defined[int(produced)] = True
    large = int(op.scalar("LargeCustomOptionsOffset")), int(op.scalar("LargeCustomOptionsSize"))
    if large[0] > 1 and large[0] + large[1] > size:
        raise ModelError(f"{what}: custom options lie outside the model")
    return _check_options(op, op_name, subgraphs, what)


@dataclass(frozen=True, slots=True)
class _Subgraph:
    """What :func:`verify` keeps of one checked subgraph."""

    tensors: int
    operators: int
    calls: set[int]  # the subgraphs its operators name
    inputs: tuple[TensorInfo, ...]  # subgraph 0's only: the model's inputs and outputs
    outputs: tuple[TensorInfo, ...]


def _check_subgraph(subgraph: _Table, s: int, opcode_names: Sequence[str], buffer_bytes: Sequence[int | None],
                    subgraphs: int, size: int) -> _Subgraph:
    """One SubGraph: its tensors, inputs and outputs, then its operators in the order they run;
    subgraph 0 (the model's signature) must do something and hand over no opaque tensor."""
    tensors = _check_tensors(subgraph.tables("Tensors"), s, buffer_bytes)
    count = len(tensors.infos)
    for field in ("Inputs", "Outputs"):
        _indices(subgraph.vector(field), count, f"subgraph {s} {field.lower()}")
    fed = [int(t) for t in subgraph.vector("Inputs") or () if tensors.constant[int(t)]]
    if fed:
        raise ModelError(f"subgraph {s}: input tensor {fed[0]} is a constant")
    for given in subgraph.vector("Inputs") or ():
        tensors.defined[int(given)] = True
    operators = subgraph.tables("Operators")
    if s == 0 and not operators:
        # Nothing to run: the interpreter then hands out outputs it never allocated (ValueError
        # in get_output), and no converter writes such a model.
        raise ModelError("subgraph 0 has no operators")
    if s == 0 and not subgraph.vector("Outputs"):
        raise ModelError("subgraph 0 has no outputs")
    calls: set[int] = set()
    for o, op in enumerate(operators):
        calls.update(_check_operator(op, f"subgraph {s} operator {o}", opcode_names, tensors, subgraphs, size))
    unwritten = [int(t) for t in subgraph.vector("Outputs") or () if not tensors.defined[int(t)]]
    if unwritten:
        raise ModelError(f"subgraph {s} output tensor {unwritten[0]} is never written: no operator produces "
                         f"it and it is neither an input nor a constant")
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    if s == 0:
        inputs, outputs = _pick(subgraph, "Inputs", tensors.infos), _pick(subgraph, "Outputs", tensors.infos)
        # The Python interpreter cannot hand these types over as arrays (a VARIANT output
        # crashed LiteRT 2.3's get_tensor).
        opaque = [t for t in (*inputs, *outputs) if t.type in _OPAQUE_TYPES]
        if opaque:
            raise ModelError(f"subgraph 0 tensor {opaque[0].index} is a model input or output of type "
                             f"{opaque[0].type}")
    return _Subgraph(count, len(operators), calls, inputs, outputs)


def _check_signature_defs(model: _Table, tensor_counts: Sequence[int]) -> None:
    """Model.signature_defs: each names a subgraph, and tensors of that subgraph."""
    for d, signature_def in enumerate(model.tables("SignatureDefs")):
        index = int(signature_def.scalar("SubgraphIndex"))
        if index >= len(tensor_counts):
            raise ModelError(f"signature {d}: subgraph index {index} out of range")
        for field in ("Inputs", "Outputs"):
            for entry in signature_def.tables(field):
                tensor_index = int(entry.scalar("TensorIndex"))
                if tensor_index >= tensor_counts[index]:
                    raise ModelError(f"signature {d}: tensor index {tensor_index} out of range")


def _check_metadata(model: _Table, buffers: int) -> None:
    """Model.metadata and Model.metadata_buffer: buffer indices in range."""
    for m, metadata in enumerate(model.tables("Metadata")):
        if int(metadata.scalar("Buffer")) >= buffers:
            raise ModelError(f"metadata {m}: buffer index out of range")
    _indices(model.vector("MetadataBuffer"), buffers, "metadata buffer")


# Options fields that name another subgraph (control flow); each must exist.
_SUBGRAPH_FIELDS: dict[str, tuple[str, ...]] = {
    "CallOptions": ("Subgraph",),
    "IfOptions": ("ThenSubgraphIndex", "ElseSubgraphIndex"),
    "WhileOptions": ("CondSubgraphIndex", "BodySubgraphIndex"),
    "CallOnceOptions": ("InitSubgraphIndex",),
    "StablehloWhileOptions": ("CondSubgraphIndex", "BodySubgraphIndex"),
    "StablehloSortOptions": ("ComparatorSubgraphIndex",),
    "StablehloReduceOptions": ("BodySubgraphIndex",),
    "StablehloReduceWindowOptions": ("BodySubgraphIndex",),
    "StablehloScatterOptions": ("UpdateComputationSubgraphIndex",),
    "StableHLOCompositeOptions": ("DecompositionSubgraphIndex",),
}
# Window sizes, strides, dilations and block sizes: kernels divide by them and size loops with them
# (a negative pool filter crashed LiteRT 2.3 in invoke).
_MAX_WINDOW = 1 << 16
_POSITIVE_FIELDS: dict[str, tuple[str, ...]] = {
    "Conv2DOptions": ("StrideW", "StrideH", "DilationWFactor", "DilationHFactor"),
    "DepthwiseConv2DOptions": ("StrideW", "StrideH", "DilationWFactor", "DilationHFactor"),
    "Conv3DOptions": ("StrideD", "StrideW", "StrideH", "DilationDFactor", "DilationWFactor", "DilationHFactor"),
    "Pool2DOptions": ("StrideW", "StrideH", "FilterWidth", "FilterHeight"),
    "TransposeConvOptions": ("StrideW", "StrideH"),
    "SpaceToDepthOptions": ("BlockSize",),
    "DepthToSpaceOptions": ("BlockSize",),
    "SplitOptions": ("NumSplits",),
    "SplitVOptions": ("NumSplits",),
}
# Input counts of operators whose LiteRT 2.3 kernels crash (rather than refuse) on any other count.
_ARITY: dict[str, int] = {"SLICE": 3, "STRIDED_SLICE": 4, "BATCH_MATMUL": 2, "SPLIT": 2, "SPLIT_V": 3,
                          "ASSIGN_VARIABLE": 2}
# Operators whose kernels accept an absent (-1) input, and at which positions (None: any but the
# first). Elsewhere a -1 input reaches kernels that dereference it without a check.
_OPTIONAL_INPUTS: dict[str, frozenset[int] | None] = {
    "FULLY_CONNECTED": frozenset({2}),
    "CONV_2D": frozenset({2}),
    "DEPTHWISE_CONV_2D": frozenset({2}),
    "TRANSPOSE_CONV": frozenset({3}),
    "CONV_3D": frozenset({2}),
    "CONV_3D_TRANSPOSE": frozenset({3}),
    "SVDF": frozenset({3}),
    "LSTM": None,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": None,
    "BIDIRECTIONAL_SEQUENCE_LSTM": None,
    "RNN": None,
    "UNIDIRECTIONAL_SEQUENCE_RNN": None,
    "BIDIRECTIONAL_SEQUENCE_RNN": None,
}


# Operators that move or compare 8-bit integers without needing their quantization parameters. All
# other operators treat uint8/int8 tensors as quantized, and some (quantized ADD in LiteRT 2.3)
# abort the process when the parameters are missing.
_RAW_INT8_OPS = frozenset({
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "GATHER", "GATHER_ND", "SLICE", "STRIDED_SLICE", "CAST",
    "PACK", "UNPACK", "SPLIT", "SPLIT_V", "TILE", "SHAPE", "RANK", "ARG_MAX", "ARG_MIN", "EQUAL", "NOT_EQUAL",
    "BROADCAST_TO", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "REVERSE_V2",
    "SELECT", "SELECT_V2", "WHERE", "ONE_HOT", "TOPK_V2", "SCATTER_ND", "ZEROS_LIKE", "FILL", "BITCAST",
    "BITWISE_XOR", "RIGHT_SHIFT", "DYNAMIC_UPDATE_SLICE", "EMBEDDING_LOOKUP", "HASHTABLE_LOOKUP", "PAD",
    "PADV2", "MIRROR_PAD", "CUSTOM", "WHILE", "IF", "CALL", "CALL_ONCE", "MAXIMUM", "MINIMUM", "REVERSE_SEQUENCE",
    "UNIQUE", "SEGMENT_SUM", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_MIN", "UNSORTED_SEGMENT_SUM",
    "UNSORTED_SEGMENT_PROD", "IDENTITY", "ASSIGN_VARIABLE", "READ_VARIABLE",
})


def _options_by_operator() -> dict[str, str]:
    """Each builtin operator's options table: by name (CONV_2D -> Conv2DOptions), plus the shared ones."""
    tables = {name[:-len("Options")].lower(): name
              for union in ("BuiltinOptions", "BuiltinOptions2") for name in UNIONS[union].values()}
    found = {op: tables[op.replace("_", "").lower()] for op in BUILTIN_OPERATORS.values()
             if op.replace("_", "").lower() in tables}
    shared = {
        "Pool2DOptions": ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"),
        "ReducerOptions": ("MEAN", "SUM", "REDUCE_PROD", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_ANY", "REDUCE_ALL"),
        "MaximumMinimumOptions": ("MAXIMUM", "MINIMUM"),
        "L2NormOptions": ("L2_NORMALIZATION",),
        "RandomOptions": ("RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL", "MULTINOMIAL"),
        "SequenceRNNOptions": ("UNIDIRECTIONAL_SEQUENCE_RNN",),
        "Conv3DOptions": ("CONV_3D_TRANSPOSE",),
    }
    found.update({op: table for table, ops in shared.items() for op in ops})
    return found


# An operator carrying another operator's options is a corrupted opcode (a flipped byte turned
# RESHAPE into SPLIT, and SPLIT then crashed LiteRT 2.3 reading options it did not have).
_OPTIONS_FOR = _options_by_operator()


def _check_optional_inputs(inputs: Sequence[int | float], op_name: str, what: str) -> None:
    for position, tensor in enumerate(inputs):
        if tensor != -1:
            continue
        allowed = _OPTIONAL_INPUTS.get(op_name, frozenset())
        if position == 0 or (allowed is not None and position not in allowed):
            raise ModelError(f"{what}: input {position} is missing (-1)")


# Operators whose kernels LiteRT 2.3 crashes in when their options are absent.
_REQUIRED_OPTIONS = frozenset({"SPLIT"})


def _check_options(op: _Table, op_name: str, subgraphs: int, what: str) -> list[int]:
    """Check the operator's options; returns the subgraphs they name (control flow)."""
    expected = _OPTIONS_FOR.get(op_name)
    if op_name in _REQUIRED_OPTIONS and op.union("BuiltinOptions") is None:
        raise ModelError(f"{what}: has no {expected}")
    called: list[int] = []
    for union in ("BuiltinOptions", "BuiltinOptions2"):
        options = op.union(union)
        if options is None:
            continue
        if expected is not None and options.name != expected:
            raise ModelError(f"{what}: carries {options.name}, not {expected}")
        for field in _SUBGRAPH_FIELDS.get(options.name, ()):
            index = int(options.scalar(field))
            if not 0 <= index < subgraphs:
                raise ModelError(f"{what}: {options.name}.{field} names subgraph {index} "
                                 f"but the model has {subgraphs}")
            called.append(index)
        for field in _POSITIVE_FIELDS.get(options.name, ()):
            value = int(options.scalar(field))
            if not 1 <= value <= _MAX_WINDOW:
                raise ModelError(f"{what}: {options.name}.{field} is {value}")
        if options.name == "StablehloCaseOptions":
            branches = options.vector("BranchSubgraphIndices") or ()
            _indices(branches, subgraphs, f"{what} case branches")
            called.extend(int(b) for b in branches)
    return called


def _check_calls(calls: Sequence[set[int]]) -> None:
    """Subgraphs calling each other (WHILE, IF, CALL_ONCE, ...) must not loop: a cycle of CALL_ONCE
    subgraphs recursed until LiteRT 2.3 overflowed its stack (SIGSEGV)."""
    state = [0] * len(calls)  # 0: not seen, 1: on the current path, 2: done
    for root in range(len(calls)):
        if state[root]:
            continue
        state[root] = 1
        stack = [(root, iter(sorted(calls[root])))]
        while stack:
            node, pending = stack[-1]
            callee = next(pending, None)
            if callee is None:
                state[node] = 2
                stack.pop()
            elif state[callee] == 1:
                path = [n for n, _ in stack]
                cycle = [*path[path.index(callee):], callee]
                raise ModelError(f"subgraphs call each other in a loop: {' -> '.join(map(str, cycle))}")
            elif state[callee] == 0:
                state[callee] = 1
                stack.append((callee, iter(sorted(calls[callee]))))
