"""What a guest's ONNX model makes a runtime build before it runs a single operator, checked from the bytes.

Some of the memory a runtime spends on an ONNX model is decided by the file alone, before ``compute``,
and no runtime caps it:

* **Sparse tensors** (sparse initializers, a Constant's ``sparse_value``) are made dense when the
  model loads: 80 bytes of file declaring a 2^28-element shape cost 1 GiB (ONNX Runtime: 3 GiB).
* **Nodes**: each costs a runtime kilobytes (ONNX Runtime about 2.3 KiB, OpenVINO about 6.5 KiB and
  quadratic time), against about 30 bytes in the file; model-local functions multiply this, since
  runtimes inline every call (17 functions that each call the next twice are 2^17 nodes).
* **String tensors** keep their characters outside every tensor allocator, where no arena cap applies,
  and lengths can grow at run time (``StringConcat`` in a loop doubles them; a 1 MiB string expanded
  1024 times is a gigabyte). OpenVINO also aborts the process on some string graphs.

So before any backend sees a guest's ONNX bytes, :func:`check_guest_onnx` walks the protobuf (every
graph, subgraph and function; bounded depth, no copies of tensor data) and refuses, with
``too_large``, sparse tensors whose dense size exceeds ``max_tensor_bytes`` (or, together,
``max_runtime_bytes_per_context``) and graphs of more than ``max_runtime_bytes_per_context //``
:data:`NODE_BYTES` nodes once functions are inlined; and, with ``unsupported_operation``, any string
tensor. A string tensor can only come into being from (a) a STRING-typed tensor in the file
(initializer, Constant, any tensor attribute, sparse values), (b) an attribute that becomes tensor data
(Constant's ``value_string(s)``, the ``*_strings`` label lists of the ``ai.onnx.ml`` operators), (c) a
type attribute asking for strings (``Cast(to=STRING)``, a ``dtype``), ``CastMap(cast_to=TO_STRING)``,
or (d) a graph input, which a wasi-nn guest cannot feed. (a)-(c) are refused, with list-of-strings
attributes allowed only where they name modes (:data:`NAME_LIST_ATTRIBUTES`): a whitelist, so a new
operator with string data is refused until someone looks at it.

What depends on the values a guest sends (a ConstantOfShape whose shape is an input) cannot be decided
here: backends bound that at run time (see docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError
from wasinn.formats import read_varint as _varint
from wasinn.guestlog import printable
from wasinn.limits import Limits

#: What a node costs a runtime once loaded, as charged against ``max_runtime_bytes_per_context``
#: (measured: ONNX Runtime 2.3 KiB, OpenVINO 6.5 KiB per node).
NODE_BYTES = 8 << 10
#: Protobuf fields the check reads per node allowed (initializers, attributes, names ...): a bound on
#: its own time (8 million fields, a few seconds, by default).
FIELDS_PER_NODE = 64
#: Attributes whose list of strings names modes or functions, never tensor data.
NAME_LIST_ATTRIBUTES = frozenset({"activations", "nodes_modes"})
#: Integer attributes that give an output's element type.
TYPE_ATTRIBUTES = frozenset({"to", "dtype", "output_dtype"})

_STRING = 8
#: Bytes per element of each TensorProto data type (sub-byte types counted as one byte).
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2}
_MAX_DEPTH = 64


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code




class _Budget:
    """Protobuf fields the walk may still read: a hostile file of tiny fields must not make it slow."""

    def __init__(self, fields: int) -> None:
        self.left = fields


def _fields(view: memoryview, budget: _Budget) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one message: an int for varints, a view for bytes."""
    pos, end = 0, len(view)
    while pos < end:
        budget.left -= 1
        if budget.left < 0:
            raise _Refused(ErrorCode.TOO_LARGE, "the model has too many protobuf fields to check "
                                                f"(more than {FIELDS_PER_NODE} per node allowed)")
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(view, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            yield number, wire, view[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise ValueError("truncated field")
        else:
            raise ValueError(f"wire type {wire}")


def _int64s(wire: int, value: int | memoryview) -> list[int]:
    """A repeated int64 field's values, packed or not (two's complement to negative)."""
    if isinstance(value, int):
        raw = [value]
    else:
        raw, pos = [], 0
        while pos < len(value):
            item, pos = _varint(value, pos)
            raw.append(item)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in raw]


def _text(value: int | memoryview) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, memoryview) else ""


@dataclass
class Findings:
    """What the walk found: nodes once functions are inlined, and the dense size of sparse tensors."""

    nodes: int = 0
    sparse_bytes: int = 0
    largest_sparse: int = 0
    functions: dict[tuple[str, str], memoryview] = field(default_factory=dict)


class _Walk:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.found = Findings()
        self.budget = _Budget(FIELDS_PER_NODE * max_nodes(limits))
        self._costs: dict[tuple[str, str], int] = {}
        self._open: set[tuple[str, str]] = set()

    # -- messages ---------------------------------------------------------------------------------
    def model(self, view: memoryview) -> None:
        graphs: list[memoryview] = []
        for number, wire, value in _fields(view, self.budget):
            if wire != 2 or not isinstance(value, memoryview):
                continue
            if number == 7:
                graphs.append(value)
            elif number == 20:  # training_info: its graphs count too
                graphs.extend(v for n, w, v in _fields(value, self.budget) if n in (1, 2) and isinstance(v, memoryview))
            elif number == 25:
                self.function_header(value)
        self.found.nodes = sum(self.graph(graph, 1) for graph in graphs)

    def function_header(self, view: memoryview) -> None:
        name = domain = overload = ""
        for number, _, value in _fields(view, self.budget):
            if number == 1:
                name = _text(value)
            elif number == 10:
                domain = _text(value)
            elif number == 13:
                overload = _text(value)
        self.found.functions[(domain, name + (":" + overload if overload else ""))] = view

    def function_cost(self, key: tuple[str, str], depth: int) -> int:
        cost = self._costs.get(key)
        if cost is not None:
            return cost
        if key in self._open:
            raise _Refused(ErrorCode.INVALID_ARGUMENT, f"function {key[0]}.{key[1]} calls itself")
        if depth > _MAX_DEPTH:
            raise ValueError("functions nested too deeply")
        self._open.add(key)
        cost = 0
        for number, _, value in _fields(self.found.functions[key], self.budget):
            if isinstance(value, memoryview):
                if number == 7:
                    cost += self.node(value, depth + 1)
                elif number == 11:  # an attribute's default value: may hold a subgraph
                    cost += self.attribute("", value, depth + 1)
        self._open.discard(key)
        self._costs[key] = cost
        return cost

    def graph(self, view: memoryview, depth: int) -> int:
        if depth > _MAX_DEPTH:
            raise ValueError("graphs nested too deeply")
        nodes = 0
        for number, _, value in _fields(view, self.budget):
            if not isinstance(value, memoryview):
                continue
            if number == 1:
                nodes += self.node(value, depth)
            elif number == 5:
                self.tensor(value, "an initializer")
            elif number == 15:
                self.sparse(value)
            self.check_nodes(nodes)
        return nodes

    def node(self, view: memoryview, depth: int) -> int:
        op_type = domain = overload = ""
        attributes = []
        for number, _, value in _fields(view, self.budget):
            if number == 4:
                op_type = _text(value)
            elif number == 7:
                domain = _text(value)
            elif number == 8:
                overload = _text(value)
            elif number == 5 and isinstance(value, memoryview):
                attributes.append(value)
        nodes = sum(self.attribute(op_type, attribute, depth) for attribute in attributes)
        key = (domain, op_type + (":" + overload if overload else ""))
        if key in self.found.functions:
            nodes += self.function_cost(key, depth)
        else:
            nodes += 1
        self.check_nodes(nodes)
        return nodes

    def attribute(self, op_type: str, view: memoryview, depth: int) -> int:
        """Checks one attribute; returns the nodes of the subgraphs it holds."""
        name, nodes, strings = "", 0, False
        ints: list[int] = []
        text = b""
        for number, wire, value in _fields(view, self.budget):
            if number == 1:
                name = _text(value)
            elif number == 3 and isinstance(value, int):
                ints = _int64s(wire, value)
            elif number == 4 and isinstance(value, memoryview):
                text = bytes(value[:16])
            elif number == 9:
                strings = True
            elif not isinstance(value, memoryview):
                continue
            elif number in (5, 10):
                self.tensor(value, f"attribute {name!r} of {op_type}")
            elif number in (6, 11):
                nodes += self.graph(value, depth + 1)
            elif number in (22, 23):
                self.sparse(value)
        where = f"attribute {name!r} of {op_type or 'a function'}"
        if name in ("value_string", "value_strings") or (strings and name not in NAME_LIST_ATTRIBUTES):
            raise _Refused(ErrorCode.UNSUPPORTED_OPERATION, f"{where} holds strings as tensor data")
        if name in TYPE_ATTRIBUTES and _STRING in ints:
            raise _Refused(ErrorCode.UNSUPPORTED_OPERATION, f"{where} asks for a string tensor")
        if name == "cast_to" and text.upper().startswith(b"TO_STRING"):
            raise _Refused(ErrorCode.UNSUPPORTED_OPERATION, f"{where} asks for a string tensor")
        return nodes

    def tensor(self, view: memoryview, where: str) -> None:
        for number, _, value in _fields(view, self.budget):
            if number == 2:
                if value == _STRING:
                    raise _Refused(ErrorCode.UNSUPPORTED_OPERATION, f"{where} is a string tensor")
                return  # the element type is all this needs

    def sparse(self, view: memoryview) -> None:
        dims: list[int] = []
        item = 8
        for number, wire, value in _fields(view, self.budget):
            if number == 3:
                dims.extend(_int64s(wire, value))
            elif number in (1, 2) and isinstance(value, memoryview):
                self.tensor(value, "a sparse tensor")
                if number == 1:
                    for n, _, v in _fields(value, self.budget):
                        if n == 2 and isinstance(v, int):
                            item = _ITEM_BYTES.get(v, 8)
        if any(d < 0 for d in dims):
            raise _Refused(ErrorCode.INVALID_ARGUMENT, f"a sparse tensor has a negative dimension {dims}")
        dense = item
        for d in dims:
            dense *= d
        found, limits = self.found, self.limits
        found.sparse_bytes += dense
        found.largest_sparse = max(found.largest_sparse, dense)
        if dense > limits.max_tensor_bytes:
            raise _Refused(ErrorCode.TOO_LARGE, f"a sparse tensor of shape {dims} is {dense} bytes once dense "
                                                f"(limit {limits.max_tensor_bytes}, Limits.max_tensor_bytes)")
        if found.sparse_bytes > limits.max_runtime_bytes_per_context:
            raise _Refused(ErrorCode.TOO_LARGE, f"the model's sparse tensors are {found.sparse_bytes} bytes once "
                                                f"dense (limit {limits.max_runtime_bytes_per_context}, "
                                                "Limits.max_runtime_bytes_per_context)")

    def check_nodes(self, nodes: int) -> None:
        limit = max_nodes(self.limits)
        if nodes > limit:
            raise _Refused(ErrorCode.TOO_LARGE, f"the graph has more than {limit} nodes once its functions are "
                                                f"inlined (Limits.max_runtime_bytes_per_context / {NODE_BYTES} "
                                                "bytes per node)")


def max_nodes(limits: Limits) -> int:
    """The most nodes (functions inlined, subgraphs included) a guest's ONNX graph may have."""
    return limits.max_runtime_bytes_per_context // NODE_BYTES


def check_guest_onnx(data: bytes | bytearray | memoryview, limits: Limits) -> Findings:
    """Refuse (``WasiNnError``) a guest's ONNX model that would make a runtime build more than
    ``limits`` allow before it runs; return what the walk found otherwise."""
    view = memoryview(data).cast("B")
    walk = _Walk(limits)
    try:
        walk.model(view)
    except _Refused as refused:
        raise WasiNnError(refused.code, f"a guest's ONNX model was refused: {printable(str(refused))}") from None
    except (ValueError, IndexError, RecursionError) as exc:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"the ONNX model cannot be parsed to check it: {exc}") from None
    return walk.found
