"""The ``wasi:nn`` WIT interfaces (tensor, graph, inference, errors) defined in a component linker.

Each function body gets wasmtime-py's store context and the lifted arguments, calls the store's
:class:`~wasinn.component.state.ComponentState` (the same operations as the witx path: ranking,
named models, limits, backends) and returns the value to lower. A
:class:`~wasinn.errors.WasiNnError` becomes an ``error`` resource whose ``code()`` is the WIT error
code and whose ``data()`` is the message the witx path logs (logged here too, with the same words);
any other exception is a bug in wasinn, logged with its traceback and returned as ``runtime-error``
(the classifier both ABIs share: :func:`wasinn.boundary.failures.classify`).
Functions with no ``result`` in their WIT type (``tensor.data``, ``error.code``) cannot return an
error: a handle the host no longer holds is a trap there, never a crash of the host.

Resources are host resources: the *rep* of a graph or context is its handle in the witx tables,
tensors and errors have tables of their own; the guest dropping one releases it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from wasmtime import WasmtimeError
from wasmtime.component import Linker, LinkerInstance, ResourceAny, ResourceHost, ResourceType, Variant

from wasinn.boundary.failures import InternalError, classify
from wasinn.boundary.wasmtime_internals import component_store_data
from wasinn.component.state import ComponentState, ErrorEntry, TensorEntry
from wasinn.component.transfer import add_func, bytes_result
from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, TensorType
from wasinn.errors import ConfigurationError, WasiNnError
from wasinn.limits import DEFAULT_LIMITS
from wasinn.service.store import ContextEntry
from wasinn.tensor import checked_tensor, element_count

log = logging.getLogger("wasinn.component")

#: The versions of ``wasi:nn`` served (the WIT in ``wasinn/component/wit``).
VERSION = "0.2.0-rc-2024-10-28"
VERSIONS = (VERSION,)
# The guest caps are Limits fields; these names keep their defaults for code written before.
MAX_BUILDERS = DEFAULT_LIMITS.max_builders
MAX_RANK = DEFAULT_LIMITS.max_rank
MAX_NAME_BYTES = DEFAULT_LIMITS.max_name_bytes
MAX_NAMED_TENSORS = DEFAULT_LIMITS.max_named_tensors

# Host resource type ids (any u32 unique in the engine; these spell "nn" + a kind).
TENSOR_TYPE_ID = 0x6E6E0001
GRAPH_TYPE_ID = 0x6E6E0002
CONTEXT_TYPE_ID = 0x6E6E0003
ERROR_TYPE_ID = 0x6E6E0004

#: WIT ``tensor-type`` case <-> wasinn's tensor type.
WIT_TENSOR_TYPES: dict[str, TensorType] = {
    "fp16": TensorType.F16, "fp32": TensorType.F32, "fp64": TensorType.F64, "bf16": TensorType.BF16,
    "u8": TensorType.U8, "i32": TensorType.I32, "i64": TensorType.I64,
}
_TENSOR_TYPE_CASE = {dtype: case.upper() for case, dtype in WIT_TENSOR_TYPES.items()}
WIT_ENCODINGS: dict[str, GraphEncoding] = {e.value: e for e in GraphEncoding}
WIT_TARGETS: dict[str, ExecutionTarget] = {"cpu": ExecutionTarget.CPU, "gpu": ExecutionTarget.GPU,
                                           "tpu": ExecutionTarget.TPU}
#: wasinn's error codes that have no WIT case of their own: ``busy`` (a per-store limit) and
#: ``missing_memory`` (witx only) are ``runtime-error``; ``data()`` says which.
WIT_ERROR_CODES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "invalid-argument",
    ErrorCode.INVALID_ENCODING: "invalid-encoding",
    ErrorCode.MISSING_MEMORY: "runtime-error",
    ErrorCode.BUSY: "runtime-error",
    ErrorCode.RUNTIME_ERROR: "runtime-error",
    ErrorCode.UNSUPPORTED_OPERATION: "unsupported-operation",
    ErrorCode.TOO_LARGE: "too-large",
    ErrorCode.NOT_FOUND: "not-found",
    ErrorCode.END_OF_SEQUENCE: "runtime-error",
    ErrorCode.CONTEXT_FULL: "too-large",
    ErrorCode.PROMPT_TOO_LONG: "too-large",
}

Body = Callable[..., Any]


def state_of(store: Any) -> ComponentState:
    """The :class:`ComponentState` of the calling store (wasmtime-py's StoreContext has no ``data()``)."""
    state = component_store_data(store)
    if not isinstance(state, ComponentState):
        raise ConfigurationError("wasi:nn was called from a store not created by "
                                 "WasiNnHost.new_component_store(); create stores with it")
    return state


def rep_of(store: Any, resource: Any, type_id: int, what: str) -> int:
    """The rep of a host resource the guest passed, checked to be of ``type_id``."""
    if isinstance(resource, ResourceAny):
        try:
            host = resource.to_host(store)
        except WasmtimeError as exc:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{what}: not a host resource: {exc}") from None
    elif isinstance(resource, ResourceHost):
        host = resource
    else:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{what}: expected a resource, got {type(resource).__name__}")
    if host.type != type_id:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{what}: a resource of another type ({host.type:#x})")
    return int(host.rep)


def error_resource(state: ComponentState, operation: str, error: WasiNnError) -> ResourceHost:
    """The WIT encoder of a failure: an ``error`` resource, and a guest-log line (the guest's failures)."""
    if not isinstance(error, InternalError):  # a bug in wasinn was logged by classify
        state.guest_log.log(log, logging.WARNING, f"{operation} -> {error.code.value}: {error.message}")
    rep = state.add_error(ErrorEntry(error.code, operation, error.message))
    return ResourceHost.own(rep, ERROR_TYPE_ID)


def fallible(operation: str, *, tagged: bool) -> Callable[[Body], Body]:
    """Wrap ``body(state, store, *args) -> ok`` for a ``result<T, error>`` function.

    ``tagged``: wasmtime-py lowers a result whose two cases are both resources from a
    ``Variant('ok' | 'err', payload)``; other results from the bare payload.
    """

    def wrap(body: Body) -> Body:
        def function(store: Any, *args: Any) -> Any:
            state = state_of(store)
            try:
                ok = body(state, store, *args)
                return Variant("ok", ok) if tagged else ok
            except Exception as exc:
                err = error_resource(state, operation, classify(operation, exc, log))
            return Variant("err", err) if tagged else err

        function.__name__ = function.__qualname__ = body.__name__
        function.__doc__ = body.__doc__
        return function

    return wrap


def infallible(operation: str) -> Callable[[Body], Body]:
    """Wrap a body whose WIT type has no error case: a failure is a trap (logged), never a crash."""

    def wrap(body: Body) -> Body:
        def function(store: Any, *args: Any) -> Any:
            state = state_of(store)
            try:
                return body(state, store, *args)
            except WasiNnError as error:
                state.guest_log.log(log, logging.WARNING, f"{operation} -> trap: {error.code.value}: {error.message}")
                raise WasmtimeError(f"wasi:nn {operation}: {error.message}") from None

        function.__name__ = function.__qualname__ = body.__name__
        return function

    return wrap


# ---- tensor ---------------------------------------------------------------------------------------
def tensor_type(case: str) -> TensorType:
    dtype = WIT_TENSOR_TYPES.get(case.lower())
    if dtype is None:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown tensor type {case!r}")
    return dtype


def new_tensor_entry(dims: Sequence[int], dtype: TensorType, data: bytes, *, any_length: bool = False,
                     max_rank: int = MAX_RANK) -> TensorEntry:
    """A checked tensor; ``any_length`` (the input's spec says so: a prompt) skips the length check."""
    if len(dims) > max_rank:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"tensor rank {len(dims)} exceeds {max_rank}")
    shape = tuple(int(d) for d in dims)
    expected = element_count(shape) * dtype.itemsize  # exact integers: no wrap-around to fake a fit
    if any(d > 0xFFFFFFFF for d in shape) or (expected != len(data) and not any_length):
        text = "x".join(str(d) for d in shape) or "scalar"
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"tensor of {len(data)} bytes of data but "
                                                      f"{dtype.value}[{text}] needs {expected}")
    return TensorEntry(shape, dtype, data)


@infallible("[constructor]tensor")
def tensor_new(state: ComponentState, store: Any, dims: list[int], ty: str, data: bytes) -> ResourceHost:
    # The constructor has no error case: a tensor whose data does not fit its dims is still made
    # (and refused, with an error resource, by compute); only a full table is a trap.
    dtype = WIT_TENSOR_TYPES.get(ty.lower(), TensorType.U8)
    if len(dims) > state.limits.max_rank:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"tensor rank {len(dims)} exceeds {state.limits.max_rank}")
    rep = state.add_tensor(TensorEntry(tuple(dims), dtype, bytes(data)))
    return ResourceHost.own(rep, TENSOR_TYPE_ID)


@infallible("tensor.dimensions")
def tensor_dimensions(state: ComponentState, store: Any, this: Any) -> list[int]:
    return list(state.tensor(rep_of(store, this, TENSOR_TYPE_ID, "tensor")).dims)


@infallible("tensor.ty")
def tensor_ty(state: ComponentState, store: Any, this: Any) -> str:
    return _TENSOR_TYPE_CASE[state.tensor(rep_of(store, this, TENSOR_TYPE_ID, "tensor")).dtype]


@infallible("tensor.data")
def tensor_data(state: ComponentState, store: Any, this: Any) -> Any:
    return bytes_result(state.tensor(rep_of(store, this, TENSOR_TYPE_ID, "tensor")).data)


# ---- graph ----------------------------------------------------------------------------------------
@fallible("load", tagged=True)
def graph_load(state: ComponentState, store: Any, builders: list[bytes], encoding: str, target: str) -> ResourceHost:
    limit = state.limits.max_builders
    if not builders or len(builders) > limit:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{len(builders)} graph builders (expected 1 to {limit})")
    enc = WIT_ENCODINGS.get(encoding)
    if enc is None:
        raise WasiNnError(ErrorCode.INVALID_ENCODING, f"unknown graph encoding {encoding!r}")
    tgt = WIT_TARGETS.get(target)
    if tgt is None:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown execution target {target!r}")
    handle = state.load(builders, enc, tgt)
    return ResourceHost.own(handle, GRAPH_TYPE_ID)


@fallible("load_by_name", tagged=True)
def graph_load_by_name(state: ComponentState, store: Any, name: str) -> ResourceHost:
    if len(name.encode("utf-8", "surrogatepass")) > state.limits.max_name_bytes:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"model name of {len(name)} characters is too long")
    return ResourceHost.own(state.load_by_name(name), GRAPH_TYPE_ID)


@fallible("init_execution_context", tagged=True)
def graph_init_execution_context(state: ComponentState, store: Any, this: Any) -> ResourceHost:
    handle = state.init_execution_context(rep_of(store, this, GRAPH_TYPE_ID, "graph"))
    return ResourceHost.own(handle, CONTEXT_TYPE_ID)


# ---- inference ------------------------------------------------------------------------------------
def input_index(entry: ContextEntry, name: str) -> int:
    """A named input's index: the model's input of that name, else a decimal index ("0")."""
    inputs = entry.loaded.graph.inputs
    for index, spec in enumerate(inputs):
        if spec.name == name:
            return index
    if name.isdecimal() and len(name) < 10:
        index = int(name)
        if not inputs or index < len(inputs):
            return index
    known = ", ".join(repr(spec.name) for spec in inputs) or "none declared"
    raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"no input named {name!r} (the model's inputs: {known}; "
                                                  "a decimal index also works)")


def output_name(entry: ContextEntry, index: int) -> str:
    outputs = entry.loaded.graph.outputs
    name = outputs[index].name if index < len(outputs) else ""
    return name or str(index)


def _take_tensor(state: ComponentState, store: Any, resource: Any) -> TensorEntry:
    """An owned tensor the guest passed: read it, then drop the guest's handle (releases it)."""
    owned = isinstance(resource, ResourceAny) and resource.owned
    rep = rep_of(store, resource, TENSOR_TYPE_ID, "input tensor")  # an own<> handle moves to the host here
    entry = state.tensor(rep)
    if owned:
        state.drop_tensor(rep)  # the guest gave the tensor away: no destructor will run for it
    return entry


@fallible("compute", tagged=False)
def context_compute(state: ComponentState, store: Any, this: Any, inputs: list[tuple[str, Any]]
                    ) -> list[tuple[str, ResourceHost]]:
    handle = rep_of(store, this, CONTEXT_TYPE_ID, "graph-execution-context")
    entry = state.context(handle)
    limit = state.limits.max_named_tensors
    if len(inputs) > limit:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{len(inputs)} named tensors (at most {limit})")
    taken = [(name, _take_tensor(state, store, resource)) for name, resource in inputs]
    seen: set[int] = set()
    for name, tensor in taken:
        index = input_index(entry, name)
        if index in seen:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {name!r} (index {index}) given twice")
        seen.add(index)
        specs = entry.loaded.graph.inputs
        any_length = 0 <= index < len(specs) and specs[index].any_length
        checked = new_tensor_entry(tensor.dims, tensor.dtype, tensor.data, any_length=any_length,
                                   max_rank=state.limits.max_rank)
        state.set_input(handle, index, _as_tensor(checked))
    _check_every_input_given(entry, seen)
    state.compute(handle)
    count = entry.output_count or 1
    outputs: list[tuple[str, ResourceHost]] = []
    try:
        for index in range(count):
            array = state.get_output(handle, index)
            dtype = _dtype_of(array, entry, index)
            rep = state.add_tensor(TensorEntry(tuple(int(d) for d in array.shape), dtype, array.tobytes()))
            outputs.append((output_name(entry, index), ResourceHost.own(rep, TENSOR_TYPE_ID)))
    except WasiNnError:
        for _, made in outputs:
            state.drop_tensor(made.rep)
        raise
    return outputs


def _check_every_input_given(entry: ContextEntry, given: set[int]) -> None:
    """Each ``compute`` brings all of its inputs (Wasmtime clears every input slot per call): a context
    never silently runs on the tensors of its previous call."""
    specs = entry.loaded.graph.inputs
    missing = [spec.name or str(i) for i, spec in enumerate(specs) if i not in given and not spec.optional]
    if missing:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"missing input tensor(s) {', '.join(map(repr, missing))}: "
                                                      f"compute needs every input of the model in each call")
    if not specs and not given:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "missing input tensors: compute was given none")


def _as_tensor(entry: TensorEntry) -> Any:
    return checked_tensor(entry.dtype, entry.dims, memoryview(entry.data))


_NUMPY_TYPES = {np.dtype("<f2"): TensorType.F16, np.dtype("<f4"): TensorType.F32, np.dtype("<f8"): TensorType.F64,
                np.dtype("u1"): TensorType.U8, np.dtype("<i4"): TensorType.I32, np.dtype("<i8"): TensorType.I64}


def _dtype_of(array: np.ndarray, entry: ContextEntry, index: int) -> TensorType:
    outputs = entry.loaded.graph.outputs
    declared = outputs[index].dtype if index < len(outputs) else None
    if declared is TensorType.BF16 and array.dtype == np.dtype("<u2"):
        return TensorType.BF16
    dtype = _NUMPY_TYPES.get(array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype)
    if dtype is None:
        raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"output {index} has element type {array.dtype}, "
                                                           "which wasi:nn's tensor-type cannot express")
    return dtype


# ---- errors ---------------------------------------------------------------------------------------
@infallible("error.code")
def error_code(state: ComponentState, store: Any, this: Any) -> str:
    return WIT_ERROR_CODES[state.error(rep_of(store, this, ERROR_TYPE_ID, "error")).code]


@infallible("error.data")
def error_data(state: ComponentState, store: Any, this: Any) -> str:
    entry = state.error(rep_of(store, this, ERROR_TYPE_ID, "error"))
    return f"{entry.operation}: {entry.code.value}: {entry.message}"


# ---- destructors ----------------------------------------------------------------------------------
def _destructor(release: Callable[[ComponentState, int], None], what: str) -> Callable[[Any, int], None]:
    def dtor(store: Any, rep: int) -> None:
        try:
            release(state_of(store), rep)
        except Exception as exc:  # a destructor must never fail the guest's drop
            log.warning("dropping %s %d: %s: %s", what, rep, type(exc).__name__, exc)

    return dtor


# ---- the linker -----------------------------------------------------------------------------------
def define_interfaces(linker: Linker, versions: Sequence[str] = VERSIONS, *, mode: str | None = None) -> None:
    """Define ``wasi:nn/{tensor,graph,inference,errors}@VERSION`` in ``linker`` for each version.

    ``mode`` picks the trampoline (:data:`wasinn.component.transfer.MODE` by default: ``"fast"``
    moves ``list<u8>`` in one numpy pass, ``"portable"`` is wasmtime-py's ``add_func``; see
    :mod:`wasinn.boundary.wasmtime_internals`).
    """
    for version in versions:
        with linker.root() as root:
            _define_version(root, version, mode)


def _define_version(root: LinkerInstance, version: str, mode: str | None) -> None:
    with root.add_instance(f"wasi:nn/errors@{version}") as errors:
        errors.add_resource("error", ResourceType.host(ERROR_TYPE_ID), _destructor(ComponentState.drop_error, "error"))
        add_func(errors, "[method]error.code", error_code, mode=mode)
        add_func(errors, "[method]error.data", error_data, mode=mode)
    with root.add_instance(f"wasi:nn/tensor@{version}") as tensor:
        tensor.add_resource("tensor", ResourceType.host(TENSOR_TYPE_ID),
                            _destructor(ComponentState.drop_tensor, "tensor"))
        add_func(tensor, "[constructor]tensor", tensor_new, mode=mode)
        add_func(tensor, "[method]tensor.dimensions", tensor_dimensions, mode=mode)
        add_func(tensor, "[method]tensor.ty", tensor_ty, mode=mode)
        add_func(tensor, "[method]tensor.data", tensor_data, mode=mode)
    with root.add_instance(f"wasi:nn/inference@{version}") as inference:
        inference.add_resource("graph-execution-context", ResourceType.host(CONTEXT_TYPE_ID),
                               _destructor(ComponentState.drop_context, "graph-execution-context"))
        add_func(inference, "[method]graph-execution-context.compute", context_compute, mode=mode)
    with root.add_instance(f"wasi:nn/graph@{version}") as graph:
        graph.add_resource("graph", ResourceType.host(GRAPH_TYPE_ID), _destructor(ComponentState.drop_graph, "graph"))
        add_func(graph, "[method]graph.init-execution-context", graph_init_execution_context, mode=mode)
        add_func(graph, "load", graph_load, mode=mode)
        add_func(graph, "load-by-name", graph_load_by_name, mode=mode)
