"""WAMR's legacy import module ``wasi_nn`` (deprecated in WAMR 2.4, still in deployed guests).

Differences from ``wasi_ephemeral_nn``: ``load`` takes 4 arguments, its first pointing to a
``{builders_ptr, builders_len}`` pair; the tensor record is 12 bytes, ``{dims_ptr → {ptr, len},
type (u32), data_ptr}``, with no data length (it is product(dims) × element size); ``get_output``
takes 4 arguments, the last pointing to a size that is the buffer's capacity on the way in and the
amount written on the way out, both counted in *elements* of the output tensor (f32 elements for
f32 models, as WAMR's TFLite backend counts them). Numbering: the ``wamr-legacy`` profile, always.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import wasmtime

from wasinn.abi.ephemeral import (
    MAX_RANK,
    decode_encoding,
    decode_target,
    errno_for,
    internal_error,
    read_builders,
    read_name,
    resolve_tensor_type,
    state_of,
)
from wasinn.abi.memory import U32_MASK, GuestMemory
from wasinn.abi.profiles import PROFILES
from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError
from wasinn.tensor import Tensor, element_count

PROFILE = PROFILES["wamr-legacy"]
LEGACY_TENSOR = struct.Struct("<III")  # dims ptr (-> {ptr, len}), type (u32), data ptr
PAIR = struct.Struct("<II")


def load(caller: wasmtime.Caller, builder_array: int, encoding: int, target: int, out_graph: int) -> int:
    state = state_of(caller)
    try:
        memory = GuestMemory.of(caller, state.memory)
        memory.check(out_graph, 4, "graph out-pointer")
        builders_ptr, builders_len = PAIR.unpack(memory.read(builder_array, PAIR.size, "graph builder array"))
        builders = read_builders(memory, state, builders_ptr, builders_len)
        handle = state.load(builders, decode_encoding(state, encoding, PROFILE), decode_target(state, target, PROFILE))
        memory.write_u32(out_graph, handle, "graph out-pointer")
        return 0
    except WasiNnError as error:
        return errno_for(state, "wasi_nn.load", error, PROFILE)
    except Exception as exc:
        return internal_error(state, "wasi_nn.load", exc, PROFILE)


def load_by_name(caller: wasmtime.Caller, name_ptr: int, name_len: int, out_graph: int) -> int:
    state = state_of(caller)
    try:
        memory = GuestMemory.of(caller, state.memory)
        memory.check(out_graph, 4, "graph out-pointer")
        handle = state.load_by_name(read_name(memory, name_ptr, name_len))
        memory.write_u32(out_graph, handle, "graph out-pointer")
        return 0
    except WasiNnError as error:
        return errno_for(state, "wasi_nn.load_by_name", error, PROFILE)
    except Exception as exc:
        return internal_error(state, "wasi_nn.load_by_name", exc, PROFILE)


def init_execution_context(caller: wasmtime.Caller, graph: int, out_context: int) -> int:
    state = state_of(caller)
    try:
        memory = GuestMemory.of(caller, state.memory)
        memory.check(out_context, 4, "context out-pointer")
        handle = state.init_execution_context(graph & U32_MASK)
        memory.write_u32(out_context, handle, "context out-pointer")
        return 0
    except WasiNnError as error:
        return errno_for(state, "wasi_nn.init_execution_context", error, PROFILE)
    except Exception as exc:
        return internal_error(state, "wasi_nn.init_execution_context", exc, PROFILE)


def set_input(caller: wasmtime.Caller, context: int, index: int, tensor_ptr: int) -> int:
    state = state_of(caller)
    try:
        memory = GuestMemory.of(caller, state.memory)
        entry = state.context(context & U32_MASK)
        index &= U32_MASK
        dims_pair, type_number, data_ptr = LEGACY_TENSOR.unpack(memory.read(tensor_ptr, LEGACY_TENSOR.size,
                                                                            "tensor record"))
        dims_ptr, rank = PAIR.unpack(memory.read(dims_pair, PAIR.size, "tensor dimensions record"))
        if rank > MAX_RANK:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"tensor rank {rank} exceeds {MAX_RANK}")
        dims = memory.u32_array(dims_ptr, rank, "tensor dimensions")
        dtype = PROFILE.tensor_types.get(type_number & 0xFF)
        if dtype is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown tensor type {type_number} (ABI profile "
                                                          f"{PROFILE.name})")
        data_len = element_count(dims) * dtype.itemsize  # the legacy record carries no length
        dtype = resolve_tensor_type(state, entry, index, type_number & 0xFF, dims, data_len, PROFILE)
        state.check_input(entry, index, dtype, dims, data_len)
        tensor = Tensor(dtype, dims, memory.view(data_ptr, data_len, "tensor data"))
        state.run_set_input(entry, index, tensor)
        return 0
    except WasiNnError as error:
        return errno_for(state, "wasi_nn.set_input", error, PROFILE)
    except Exception as exc:
        return internal_error(state, "wasi_nn.set_input", exc, PROFILE)


def compute(caller: wasmtime.Caller, context: int) -> int:
    state = state_of(caller)
    try:
        state.compute(context & U32_MASK)
        return 0
    except WasiNnError as error:
        return errno_for(state, "wasi_nn.compute", error, PROFILE)
    except Exception as exc:
        return internal_error(state, "wasi_nn.compute", exc, PROFILE)


def get_output(caller: wasmtime.Caller, context: int, index: int, out_ptr: int, size_inout: int) -> int:
    state = state_of(caller)
    try:
        memory = GuestMemory.of(caller, state.memory)
        capacity = memory.u32(size_inout, "output size in/out pointer")
        array = state.get_output(context & U32_MASK, index & U32_MASK)
        elements = array.size
        if elements > capacity:
            memory.write_u32(size_inout, elements, "output size in/out pointer")
            raise WasiNnError(ErrorCode.TOO_LARGE, f"output {index & U32_MASK} has {elements} elements but the "
                                                   f"guest buffer holds {capacity}")
        memory.copy_from_array(out_ptr, array, array.nbytes, "output buffer")
        memory.write_u32(size_inout, elements, "output size in/out pointer")
        return 0
    except WasiNnError as error:
        return errno_for(state, "wasi_nn.get_output", error, PROFILE)
    except Exception as exc:
        return internal_error(state, "wasi_nn.get_output", exc, PROFILE)


FUNCTIONS: dict[str, tuple[int, Callable[..., int]]] = {
    "load": (4, load),
    "load_by_name": (3, load_by_name),
    "init_execution_context": (2, init_execution_context),
    "set_input": (3, set_input),
    "compute": (1, compute),
    "get_output": (4, get_output),
}
