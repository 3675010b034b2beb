"""WAT command guests that speak one numbering profile's dialect of wasi-nn, for compatibility tests.

Each guest embeds its model in a data segment, loads it with ``load`` (the profile's own arity and
layout), runs one inference and writes the raw output bytes to stdout; any wasi-nn error becomes
exit status 64 + errno.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

# Fixed addresses in the guest's memory.
MODEL, NAME, DIMS, DATA, TENSOR, BUILDERS, OUT, SCRATCH = 0x1000, 0x800, 0x900, 0x20000, 0xA00, 0xB00, 0x30000, 0xC00


def wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


@dataclass
class ProfileGuest:
    """``style``: ``witx`` (20-byte tensor, 5-arg load/get_output) or ``legacy`` (WAMR ``wasi_nn``)."""

    model: bytes
    encoding: int
    type_number: int
    dims: Sequence[int]
    data: bytes
    style: str = "witx"
    extra_imports: Sequence[str] = ()
    output_capacity: int = 4096

    def wat(self) -> str:
        legacy = self.style == "legacy"
        module = "wasi_nn" if legacy else "wasi_ephemeral_nn"
        imports = [
            f'(import "{module}" "load" (func $load (param {"i32 " * (4 if legacy else 5)}) (result i32)))',
            f'(import "{module}" "init_execution_context" (func $init (param i32 i32) (result i32)))',
            f'(import "{module}" "set_input" (func $set_input (param i32 i32 i32) (result i32)))',
            f'(import "{module}" "compute" (func $compute (param i32) (result i32)))',
            f'(import "{module}" "get_output" (func $get_output (param {"i32 " * (4 if legacy else 5)}) (result i32)))',
        ]
        for name in self.extra_imports:  # e.g. WasmEdge's streaming calls: only imported, never called
            arity = 5 if name == "get_output_single" else 1
            params = "i32 " * arity
            imports.append(f'(import "wasi_ephemeral_nn" "{name}" (func ${name} (param {params}) (result i32)))')
        dims = struct.pack(f"<{len(self.dims)}I", *self.dims)
        segments = [(MODEL, self.model), (DIMS, dims), (DATA, self.data)]
        if legacy:
            # builder array {ptr,len} at BUILDERS+8, pointed to by {array_ptr, count} at BUILDERS
            segments.append((BUILDERS, struct.pack("<IIII", BUILDERS + 8, 1, MODEL, len(self.model))))
            segments.append((TENSOR, struct.pack("<III", TENSOR + 12, self.type_number, DATA)
                             + struct.pack("<II", DIMS, len(self.dims))))
            segments.append((SCRATCH + 8, struct.pack("<I", self.output_capacity)))
            load = (f"(call $load (i32.const {BUILDERS}) (i32.const {self.encoding}) (i32.const 0) "
                    f"(i32.const {SCRATCH}))")
            get = (f"(call $get_output (i32.load (i32.const {SCRATCH + 4})) (i32.const 0) (i32.const {OUT}) "
                   f"(i32.const {SCRATCH + 8}))")
            written = f"(i32.load (i32.const {SCRATCH + 8}))"
        else:
            segments.append((BUILDERS, struct.pack("<II", MODEL, len(self.model))))
            segments.append((TENSOR, struct.pack("<IIB3xII", DIMS, len(self.dims), self.type_number, DATA,
                                                 len(self.data))))
            load = (f"(call $load (i32.const {BUILDERS}) (i32.const 1) (i32.const {self.encoding}) (i32.const 0) "
                    f"(i32.const {SCRATCH}))")
            get = (f"(call $get_output (i32.load (i32.const {SCRATCH + 4})) (i32.const 0) (i32.const {OUT}) "
                   f"(i32.const {self.output_capacity}) (i32.const {SCRATCH + 8}))")
            written = f"(i32.load (i32.const {SCRATCH + 8}))"
        data = "\n".join(f'  (data (i32.const {addr}) "{wat_bytes(blob)}")' for addr, blob in segments)
        # legacy get_output reports elements; the output here is f32/u8 per test, so bytes = elements * size
        element_size = 4 if legacy and self.type_number == 1 else 1
        return f"""(module
  {chr(10).join(imports)}
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
{data}
  (func $check (param $errno i32)
    (if (local.get $errno) (then (call $exit (i32.add (i32.const 64) (local.get $errno))))))
  (func (export "_start")
    (call $check {load})
    (call $check (call $init (i32.load (i32.const {SCRATCH})) (i32.const {SCRATCH + 4})))
    (call $check (call $set_input (i32.load (i32.const {SCRATCH + 4})) (i32.const 0) (i32.const {TENSOR})))
    (call $check (call $compute (i32.load (i32.const {SCRATCH + 4}))))
    (call $check {get})
    ;; iovec {{OUT, bytes}} at SCRATCH+16, then write it to stdout
    (i32.store (i32.const {SCRATCH + 16}) (i32.const {OUT}))
    (i32.store (i32.const {SCRATCH + 20}) (i32.mul {written} (i32.const {element_size})))
    (drop (call $fd_write (i32.const 1) (i32.const {SCRATCH + 16}) (i32.const 1) (i32.const {SCRATCH + 24})))
    (call $exit (i32.const 0))))
"""
