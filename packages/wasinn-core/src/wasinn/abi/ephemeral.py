"""The ``wasi_ephemeral_nn`` import functions (witx lowering: every call returns an errno).

Each function unpacks guest pointers through :class:`GuestMemory`, calls the store's
:class:`~wasinn.abi.state.StoreState`, writes results back, and turns every failure into the errno of
the store's numbering profile (:func:`wasinn.boundary.failures.classify`, then :func:`errno_for`), with a
log line that says why. No Python exception reaches the guest as a trap, except an embedder mistake (a
store not made by :meth:`WasiNnHost.new_store`), which must not pass silently.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable
from typing import Any

from wasinn.abi.entry import HostCall, store_data
from wasinn.abi.memory import U32_MASK, GuestMemory
from wasinn.abi.profiles import AbiProfile
from wasinn.abi.state import MAX_CHECKED_SIGNATURES as MAX_CHECKED_SIGNATURES  # kept importable from here
from wasinn.abi.state import StoreState, profile_of
from wasinn.abi.state import resolve_tensor_type as resolve_tensor_type
from wasinn.boundary.failures import InternalError, classify
from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding
from wasinn.errors import ConfigurationError, WasiNnError
from wasinn.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger("wasinn.abi")

TENSOR_RECORD = struct.Struct("<IIB3xII")  # dims ptr, dims len, type (u8 + 3 padding bytes), data ptr, data len
BUILDER = struct.Struct("<II")
# The guest caps are Limits fields; these names keep their defaults for code written before.
MAX_BUILDERS = DEFAULT_LIMITS.max_builders
MAX_RANK = DEFAULT_LIMITS.max_rank
MAX_NAME_BYTES = DEFAULT_LIMITS.max_name_bytes
MAX_CONFIG_BYTES = DEFAULT_LIMITS.max_config_bytes


def state_of(call: HostCall) -> StoreState:
    state = store_data(call)
    if not isinstance(state, StoreState):
        raise ConfigurationError("wasi-nn was called from a store not created by WasiNnHost.new_store(); "
                                 "create stores with host.new_store(engine)")
    return state


def errno_for(state: StoreState, operation: str, error: WasiNnError, profile: AbiProfile | None = None) -> int:
    """The witx encoder of a failure: the errno of ``profile`` (or the store's), and a guest-log line."""
    profile = profile or profile_of(state)
    errno = profile.errno(error.code)
    if not isinstance(error, InternalError):  # a bug in wasinn was logged by classify
        # The end of a token stream is how every stream ends, not a failure: no warning for it.
        level = logging.DEBUG if error.code is ErrorCode.END_OF_SEQUENCE else logging.WARNING
        state.guest_log.log(log, level, f"{operation} -> {error.code.value} (errno {errno}): {error.message}")
    return errno


def decode_encoding(state: StoreState, number: int, profile: AbiProfile | None = None) -> GraphEncoding:
    profile = profile or profile_of(state)
    encoding = profile.encodings.get(number)
    if encoding is None and number == 6 and not state.profile_forced:
        # 6 is autodetect in WAMR and GGML in WasmEdge; detection from the bytes serves both.
        encoding = GraphEncoding.AUTODETECT
    if encoding is None:
        raise WasiNnError(ErrorCode.INVALID_ENCODING, f"unknown graph encoding {number} (ABI profile {profile.name})")
    return encoding


def decode_target(state: StoreState, number: int, profile: AbiProfile | None = None) -> ExecutionTarget:
    profile = profile or profile_of(state)
    target = profile.targets.get(number)
    if target is None:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown execution target {number} (ABI profile {profile.name})")
    return target


def read_builders(memory: GuestMemory, state: StoreState, array_ptr: int, count: int) -> list[bytes]:
    count &= U32_MASK
    limit = state.limits.max_builders
    if count == 0 or count > limit:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{count} graph builders (expected 1 to {limit})")
    raw = memory.read(array_ptr, count * BUILDER.size, "graph builder array")
    pairs = [BUILDER.unpack_from(raw, i * BUILDER.size) for i in range(count)]
    total = sum(length for _, length in pairs)
    if total > state.limits.max_model_bytes:
        raise WasiNnError(ErrorCode.TOO_LARGE, f"model of {total} bytes exceeds the limit of "
                                               f"{state.limits.max_model_bytes} bytes")
    return [memory.read(ptr, length, f"graph builder {i}") for i, (ptr, length) in enumerate(pairs)]


def read_name(memory: GuestMemory, ptr: int, length: int, limits: Limits = DEFAULT_LIMITS) -> str:
    length &= U32_MASK
    if length > limits.max_name_bytes:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"model name of {length} bytes is too long")
    raw = memory.read(ptr, length, "model name")
    if raw.endswith(b"\0"):  # C guests often pass strlen + 1
        raw = raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "model name is not valid UTF-8") from None


def read_config(memory: GuestMemory, ptr: int, length: int, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    length &= U32_MASK
    if length == 0:
        return {}
    if length > limits.max_config_bytes:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"config of {length} bytes is too long")
    raw = memory.read(ptr, length, "config")
    try:
        config = json.loads(raw.rstrip(b"\0").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"config is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "config must be a JSON object")
    return config


#: operation -> undecorated body, so the legacy module can reuse a body under its own profile.
BODIES: dict[str, Callable[..., None]] = {}


def host_function(operation: str, profile: AbiProfile | None = None
                  ) -> Callable[[Callable[..., None]], Callable[..., int]]:
    """Turn ``body(state, caller, *args)`` into an import function returning the guest's errno.

    Success is 0; a failure is classified (:func:`wasinn.boundary.failures.classify`: a
    :class:`WasiNnError` is the guest's, anything else a bug in wasinn, logged with its traceback as
    runtime_error) and encoded as the errno of ``profile`` (or the store's) by :func:`errno_for`.
    """

    def wrap(body: Callable[..., None]) -> Callable[..., int]:
        def function(call: HostCall, *args: int) -> int:
            state = state_of(call)
            try:
                body(state, call, *args)
                return 0
            except Exception as exc:
                return errno_for(state, operation, classify(operation, exc, log), profile)

        function.__name__ = function.__qualname__ = body.__name__
        function.__doc__ = body.__doc__
        BODIES.setdefault(operation, body)
        return function

    return wrap


@host_function("load")
def load(state: StoreState, caller: HostCall, builders_ptr: int, builders_len: int, encoding: int,
         target: int, out_graph: int) -> None:
    memory = GuestMemory.of(caller, state.memory)
    memory.check(out_graph, 4, "graph out-pointer")
    builders = read_builders(memory, state, builders_ptr, builders_len)
    handle = state.load(builders, decode_encoding(state, encoding), decode_target(state, target))
    memory.write_u32(out_graph, handle, "graph out-pointer")


@host_function("load_by_name")
def load_by_name(state: StoreState, caller: HostCall, name_ptr: int, name_len: int, out_graph: int) -> None:
    memory = GuestMemory.of(caller, state.memory)
    memory.check(out_graph, 4, "graph out-pointer")
    handle = state.load_by_name(read_name(memory, name_ptr, name_len, state.limits))
    memory.write_u32(out_graph, handle, "graph out-pointer")


@host_function("load_by_name_with_config")
def load_by_name_with_config(state: StoreState, caller: HostCall, name_ptr: int, name_len: int,
                             config_ptr: int, config_len: int, out_graph: int) -> None:
    memory = GuestMemory.of(caller, state.memory)
    memory.check(out_graph, 4, "graph out-pointer")
    name = read_name(memory, name_ptr, name_len, state.limits)
    handle = state.load_by_name(name, read_config(memory, config_ptr, config_len, state.limits))
    memory.write_u32(out_graph, handle, "graph out-pointer")


@host_function("init_execution_context")
def init_execution_context(state: StoreState, caller: HostCall, graph: int, out_context: int) -> None:
    memory = GuestMemory.of(caller, state.memory)
    memory.check(out_context, 4, "context out-pointer")
    handle = state.init_execution_context(graph & U32_MASK)
    memory.write_u32(out_context, handle, "context out-pointer")


@host_function("set_input")
def set_input(state: StoreState, caller: HostCall, context: int, index: int, tensor_ptr: int) -> None:
    """The 20-byte witx tensor record and its dims are read here; the state checks them (once per
    signature) and hands a zero-copy view of the data to the backend."""
    entry = state.context(context & U32_MASK)
    memory = GuestMemory.of(caller, state.memory)
    dims_ptr, rank, type_number, data_ptr, data_len = memory.unpack(TENSOR_RECORD, tensor_ptr, "tensor record")
    if rank > state.limits.max_rank:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"tensor rank {rank} exceeds {state.limits.max_rank}")
    dims = memory.u32_array(dims_ptr, rank, "tensor dimensions")
    state.set_guest_input(entry, index & U32_MASK, type_number, dims, memory, data_ptr, data_len)


@host_function("compute")
def compute(state: StoreState, caller: HostCall, context: int) -> None:
    state.compute(context & U32_MASK)


def _copy_out(memory: GuestMemory, what: str, index: int, out_ptr: int, out_max: int,
              out_written: int) -> Callable[[Any], None]:
    """Check the bytes-written pointer now; return the callback that copies an output array into the
    guest's buffer (get_output and get_output_single share it)."""
    memory.check(out_written, 4, "bytes-written out-pointer")

    def deliver(array: Any) -> None:  # runs under the graph's lock
        nbytes = array.nbytes
        if nbytes > (out_max & U32_MASK):
            # Tell the guest how much it needs (WasmEdge and WAMR-ONNX do; harmless for others).
            memory.write_u32(out_written, nbytes, "bytes-written out-pointer")
            raise WasiNnError(ErrorCode.TOO_LARGE, f"{what} {index & U32_MASK} is {nbytes} bytes but the "
                                                   f"guest buffer holds {out_max & U32_MASK}")
        memory.copy_from_array(out_ptr, array, nbytes, "output buffer")
        memory.write_u32(out_written, nbytes, "bytes-written out-pointer")

    return deliver


@host_function("get_output")
def get_output(state: StoreState, caller: HostCall, context: int, index: int, out_ptr: int, out_max: int,
               out_written: int) -> None:
    deliver = _copy_out(GuestMemory.of(caller, state.memory), "output", index, out_ptr, out_max, out_written)
    state.read_output(context & U32_MASK, index & U32_MASK, deliver)


@host_function("unload")
def unload(state: StoreState, caller: HostCall, graph: int) -> None:
    state.unload(graph & U32_MASK)


@host_function("finalize_execution_context")
def finalize_execution_context(state: StoreState, caller: HostCall, context: int) -> None:
    state.finalize_execution_context(context & U32_MASK)


@host_function("compute_single")
def compute_single(state: StoreState, caller: HostCall, context: int) -> None:
    state.compute_single(context & U32_MASK)


@host_function("get_output_single")
def get_output_single(state: StoreState, caller: HostCall, context: int, index: int, out_ptr: int, out_max: int,
                      out_written: int) -> None:
    deliver = _copy_out(GuestMemory.of(caller, state.memory), "step output", index, out_ptr, out_max, out_written)
    state.read_output(context & U32_MASK, index & U32_MASK, deliver, step=True)


@host_function("fini_single")
def fini_single(state: StoreState, caller: HostCall, context: int) -> None:
    state.fini_single(context & U32_MASK)


#: name -> (number of i32 parameters, implementation); every function returns one i32.
FUNCTIONS: dict[str, tuple[int, Callable[..., int]]] = {
    "load": (5, load),
    "load_by_name": (3, load_by_name),
    "load_by_name_with_config": (5, load_by_name_with_config),
    "init_execution_context": (2, init_execution_context),
    "set_input": (3, set_input),
    "compute": (1, compute),
    "get_output": (5, get_output),
    "unload": (1, unload),
    "finalize_execution_context": (1, finalize_execution_context),
    "compute_single": (1, compute_single),
    "get_output_single": (5, get_output_single),
    "fini_single": (1, fini_single),
}
