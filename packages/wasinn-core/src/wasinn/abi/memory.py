"""Bounds-checked access to a guest's linear memory, valid for one host call.

Every pointer and length a guest passes is checked against the memory's current size before it is
touched; a bad one is ``invalid_argument``, never a crash. Views made here are zero-copy and must
not outlive the host call: linear memory can move when it grows, and reading a view after its
store is closed crashes the process.

The hot path (``set_input``/``get_output`` are called per inference) costs a few microseconds on top of
the trampoline (:mod:`wasinn.abi.entry`). Two things keep it there: :class:`CachedMemory` reads a memory's base and
size with two raw C calls instead of wasmtime-py's wrappers (:mod:`wasinn.boundary.wasmtime_internals`), and it
reuses one :class:`GuestMemory` (one ctypes view of the whole memory, sliced per access) for as long as the base
and size are unchanged. Both are checked on every host call, so a grown or moved memory is never read through a
stale view.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import wasmtime

from wasinn.boundary.wasmtime_internals import HostCall, memory_base, memory_handle, memory_size
from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError

_U32 = struct.Struct("<I")
U32_MASK = 0xFFFFFFFF
_EMPTY = memoryview(b"")
_U32_ARRAYS = [struct.Struct(f"<{count}I") for count in range(9)]  # tensor dims: rank 0 to 8 prebuilt


class GuestMemory:
    """A guest's linear memory as it is during one host call: its base address, size and a view of it."""

    __slots__ = ("all", "base", "size")

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size
        #: The whole memory, zero-copy; every access below is a bounds-checked slice of it.
        self.all = memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B") if size and base else _EMPTY

    @classmethod
    def of(cls, call: HostCall, cached: CachedMemory | None = None) -> GuestMemory:
        """The caller's memory; ``cached`` (the store's only instance's memory) skips the export lookup."""
        if cached is not None:
            return cached.current(call)
        caller = call.caller()
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            raise WasiNnError(ErrorCode.MISSING_MEMORY, "the guest exports no linear memory named 'memory'")
        return cls(*_base_and_size(memory, caller))

    def check(self, ptr: int, length: int, what: str) -> int:
        """Validate ``[ptr, ptr + length)``; returns ``ptr`` as an unsigned offset."""
        ptr &= U32_MASK
        if length < 0 or ptr + length > self.size:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{what}: {length} bytes at 0x{ptr:x} are outside "
                                                          f"the guest's {self.size}-byte memory")
        return ptr

    def view(self, ptr: int, length: int, what: str) -> memoryview:
        """A writable zero-copy view of guest bytes (do not keep it past the call)."""
        offset = self.check(ptr, length, what)
        return self.all[offset:offset + length]

    def read(self, ptr: int, length: int, what: str) -> bytes:
        """A copy of guest bytes."""
        offset = self.check(ptr, length, what)
        return bytes(self.all[offset:offset + length])

    def unpack(self, layout: struct.Struct, ptr: int, what: str) -> tuple[Any, ...]:
        """A little-endian record of ``layout`` read in place (no intermediate copy)."""
        return layout.unpack_from(self.all, self.check(ptr, layout.size, what))

    def u32(self, ptr: int, what: str) -> int:
        return int(_U32.unpack_from(self.all, self.check(ptr, 4, what))[0])

    def u32_array(self, ptr: int, count: int, what: str) -> tuple[int, ...]:
        offset = self.check(ptr, count * 4, what)
        layout = _U32_ARRAYS[count] if count < len(_U32_ARRAYS) else struct.Struct(f"<{count}I")
        return layout.unpack_from(self.all, offset)

    def u8(self, ptr: int, what: str) -> int:
        return self.all[self.check(ptr, 1, what)]

    def write_u32(self, ptr: int, value: int, what: str) -> None:
        _U32.pack_into(self.all, self.check(ptr, 4, what), value & U32_MASK)

    def write(self, ptr: int, data: bytes, what: str) -> None:
        offset = self.check(ptr, len(data), what)
        self.all[offset:offset + len(data)] = data

    def copy_from_array(self, ptr: int, source: Any, nbytes: int, what: str) -> None:
        """Copy ``nbytes`` from a C-contiguous ndarray (or any buffer) into guest memory: one memcpy."""
        offset = self.check(ptr, nbytes, what)
        if nbytes:
            try:
                data = memoryview(source).cast("B")
            except (TypeError, ValueError):  # a format memoryview cannot cast (e.g. non-native byte order)
                import numpy as np

                data = memoryview(np.ascontiguousarray(source).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
            if data.nbytes != nbytes:
                raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"{what}: the source holds {data.nbytes} bytes, "
                                                           f"not {nbytes}")
            self.all[offset:offset + nbytes] = data


def _base_and_size(memory: wasmtime.Memory, caller: wasmtime.Caller) -> tuple[int, int]:
    """The memory's address and byte length, through wasmtime-py's public API."""
    size = memory.data_len(caller)
    return (ctypes.addressof(memory.data_ptr(caller).contents) if size else 0), size


class CachedMemory:
    """The exported memory of a store's only instance, kept so a host call needs no export lookup."""

    __slots__ = ("_address", "_view", "memory")

    def __init__(self, memory: wasmtime.Memory) -> None:
        self.memory = memory
        # wasmtime's small memory handle struct, owned (and kept alive) by ``memory``; None: public API.
        self._address = memory_handle(memory)
        self._view: GuestMemory | None = None

    def current(self, call: HostCall) -> GuestMemory:
        """The memory as it is now: the previous view when base and size are unchanged."""
        if self._address is None:
            base, size = _base_and_size(self.memory, call.caller())
        else:
            context = call.context
            size = memory_size(context, self._address)  # type: ignore[misc]
            base = memory_base(context, self._address) or 0  # type: ignore[misc]
        view = self._view
        if view is None or view.base != base or view.size != size:
            view = self._view = GuestMemory(base, size)
        return view
