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
from typing import Any

from wasinn.abi.entry import HostCall
from wasinn.abi.ephemeral import BODIES, decode_encoding, decode_target, host_function, read_builders
from wasinn.abi.memory import U32_MASK, GuestMemory
from wasinn.abi.profiles import PROFILES
from wasinn.abi.state import StoreState
from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError
from wasinn.tensor import Tensor, element_count

PROFILE = PROFILES["wamr-legacy"]
LEGACY_TENSOR = struct.Struct("<III")  # dims ptr (-> {ptr, len}), type (u32), data ptr
PAIR = struct.Struct("<II")


@host_function("wasi_nn.load", PROFILE)
def load(state: StoreState, caller: HostCall, builder_array: int, encoding: int, target: int,
         out_graph: int) -> None:
    memory = GuestMemory.of(caller, state.memory)
    memory.check(out_graph, 4, "graph out-pointer")
    builders_ptr, builders_len = PAIR.unpack(memory.read(builder_array, PAIR.size, "graph builder array"))
    builders = read_builders(memory, state, builders_ptr, builders_len)
    handle = state.load(builders, decode_encoding(state, encoding, PROFILE), decode_target(state, target, PROFILE))
    memory.write_u32(out_graph, handle, "graph out-pointer")


@host_function("wasi_nn.set_input", PROFILE)
def set_input(state: StoreState, caller: HostCall, context: int, index: int, tensor_ptr: int) -> None:
    memory = GuestMemory.of(caller, state.memory)
    entry = state.context(context & U32_MASK)
    index &= U32_MASK
    dims_pair, type_number, data_ptr = LEGACY_TENSOR.unpack(memory.read(tensor_ptr, LEGACY_TENSOR.size,
                                                                        "tensor record"))
    dims_ptr, rank = PAIR.unpack(memory.read(dims_pair, PAIR.size, "tensor dimensions record"))
    if rank > state.limits.max_rank:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"tensor rank {rank} exceeds {state.limits.max_rank}")
    dims = memory.u32_array(dims_ptr, rank, "tensor dimensions")
    dtype = PROFILE.tensor_types.get(type_number)  # a 32-bit C enum: 0x101 is not f32
    if dtype is None:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown tensor type {type_number} (ABI profile {PROFILE.name})")
    data_len = element_count(dims) * dtype.itemsize  # the legacy record carries no length
    state.check_input(entry, index, dtype, dims, data_len)
    tensor = Tensor(dtype, dims, memory.view(data_ptr, data_len, "tensor data"))
    state.run_set_input(entry, index, tensor)


@host_function("wasi_nn.get_output", PROFILE)
def get_output(state: StoreState, caller: HostCall, context: int, index: int, out_ptr: int,
               size_inout: int) -> None:
    memory = GuestMemory.of(caller, state.memory)
    capacity = memory.u32(size_inout, "output size in/out pointer")

    def deliver(array: Any) -> None:  # runs under the graph's lock
        elements = array.size
        if elements > capacity:
            memory.write_u32(size_inout, elements, "output size in/out pointer")
            raise WasiNnError(ErrorCode.TOO_LARGE, f"output {index & U32_MASK} has {elements} elements but the "
                                                   f"guest buffer holds {capacity}")
        memory.copy_from_array(out_ptr, array, array.nbytes, "output buffer")
        memory.write_u32(size_inout, elements, "output size in/out pointer")

    state.read_output(context & U32_MASK, index & U32_MASK, deliver)


FUNCTIONS: dict[str, tuple[int, Callable[..., int]]] = {
    "load": (4, load),
    # These have the same arguments as in wasi_ephemeral_nn; only their errnos use this profile.
    "load_by_name": (3, host_function("wasi_nn.load_by_name", PROFILE)(BODIES["load_by_name"])),
    "init_execution_context": (2, host_function("wasi_nn.init_execution_context", PROFILE)(
        BODIES["init_execution_context"])),
    "set_input": (3, set_input),
    "compute": (1, host_function("wasi_nn.compute", PROFILE)(BODIES["compute"])),
    "get_output": (4, get_output),
}
