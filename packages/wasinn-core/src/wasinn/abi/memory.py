"""Bounds-checked access to a guest's linear memory, valid for one host call.

Every pointer and length a guest passes is checked against the memory's current size before it is
touched; a bad one is ``invalid_argument``, never a crash. Views made here are zero-copy and must
not outlive the host call: linear memory can move when it grows, and reading a view after its
store is closed crashes the process.
"""

from __future__ import annotations

import ctypes
import struct

import wasmtime

from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError

_U32 = struct.Struct("<I")
U32_MASK = 0xFFFFFFFF


class GuestMemory:
    """The calling instance's exported ``memory``, for the duration of one host call."""

    __slots__ = ("base", "size")

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size

    @classmethod
    def of(cls, caller: wasmtime.Caller, cached: wasmtime.Memory | None = None) -> GuestMemory:
        """The caller's memory; ``cached`` (the store's only instance's memory) skips the export lookup."""
        memory = cached if cached is not None else caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            raise WasiNnError(ErrorCode.MISSING_MEMORY, "the guest exports no linear memory named 'memory'")
        size = memory.data_len(caller)
        base = ctypes.addressof(memory.data_ptr(caller).contents) if size else 0
        return cls(base, size)

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
        if length == 0:
            return memoryview(b"")
        return memoryview((ctypes.c_ubyte * length).from_address(self.base + offset)).cast("B")

    def read(self, ptr: int, length: int, what: str) -> bytes:
        """A copy of guest bytes."""
        offset = self.check(ptr, length, what)
        return ctypes.string_at(self.base + offset, length) if length else b""

    def u32(self, ptr: int, what: str) -> int:
        offset = self.check(ptr, 4, what)
        return int(_U32.unpack(ctypes.string_at(self.base + offset, 4))[0])

    def u32_array(self, ptr: int, count: int, what: str) -> tuple[int, ...]:
        offset = self.check(ptr, count * 4, what)
        return struct.unpack(f"<{count}I", ctypes.string_at(self.base + offset, count * 4)) if count else ()

    def u8(self, ptr: int, what: str) -> int:
        offset = self.check(ptr, 1, what)
        return ctypes.c_ubyte.from_address(self.base + offset).value

    def write_u32(self, ptr: int, value: int, what: str) -> None:
        offset = self.check(ptr, 4, what)
        ctypes.memmove(self.base + offset, _U32.pack(value & U32_MASK), 4)

    def write(self, ptr: int, data: bytes, what: str) -> None:
        offset = self.check(ptr, len(data), what)
        ctypes.memmove(self.base + offset, data, len(data))

    def copy_from_array(self, ptr: int, source: object, nbytes: int, what: str) -> None:
        """Copy ``nbytes`` from a C-contiguous ndarray (or any buffer) into guest memory: one memcpy."""
        offset = self.check(ptr, nbytes, what)
        if nbytes:
            import numpy as np

            array = source if isinstance(source, np.ndarray) else np.frombuffer(source, np.uint8)  # type: ignore[call-overload]
            ctypes.memmove(self.base + offset, array.ctypes.data, nbytes)
