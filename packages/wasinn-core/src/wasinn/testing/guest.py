"""A real wasm guest for tests: every wasi-nn import re-exported, so Python can drive the ABI.

The guest is a tiny WAT module (compiled by wasmtime-py, no toolchain needed) whose exports
``nn_load``, ``nn_set_input`` ... call the matching ``wasi_ephemeral_nn`` import unchanged. Tests
write arguments into its linear memory and call the exports, so every byte crosses the real ABI:
the guest's own memory, the witx lowering, wasinn's bounds checks. Used by wasinn's own tests,
the conformance kit (:mod:`wasinn.testing.kit`) and the fuzzers.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import wasmtime

from wasinn.abi.ephemeral import FUNCTIONS
from wasinn.abi.linking import WASMEDGE_ONLY_IMPORTS
from wasinn.abi.state import StoreState
from wasinn.enums import TensorType
from wasinn.host.host import WasiNnHost

PAGE = 65536
#: The guest's memory: the first 64 KiB are scratch for arguments, the rest a bump heap.
INITIAL_PAGES = 17

#: witx (current) numbers, the ones the trampoline's callers use unless they test other profiles.
ENCODING = {"openvino": 0, "onnx": 1, "tensorflow": 2, "pytorch": 3, "tensorflowlite": 4, "autodetect": 5}
TARGET = {"cpu": 0, "gpu": 1, "tpu": 2}
TENSOR_TYPE = {TensorType.F16: 0, TensorType.F32: 1, TensorType.F64: 2, TensorType.U8: 3, TensorType.I32: 4,
               TensorType.I64: 5}
ERRNO = {"success": 0, "invalid_argument": 1, "invalid_encoding": 2, "missing_memory": 3, "busy": 4,
         "runtime_error": 5, "unsupported_operation": 6, "too_large": 7, "not_found": 8}


def trampoline_wat(module: str = "wasi_ephemeral_nn", functions: dict[str, int] | None = None) -> str:
    """WAT for a guest that imports ``functions`` (name → arity) from ``module`` and re-exports each as
    ``nn_<name>``; it also exports ``memory`` and ``trap`` (executes ``unreachable``)."""
    if functions is None:
        # WasmEdge's streaming imports would make wasinn infer the wasmedge profile: leave them out.
        functions = {name: arity for name, (arity, _) in FUNCTIONS.items() if name not in WASMEDGE_ONLY_IMPORTS}
    funcs = functions
    lines = ["(module"]
    for name, arity in funcs.items():
        params = " i32" * arity
        lines.append(f'  (import "{module}" "{name}" (func ${name} (param{params}) (result i32)))')
    lines.append(f'  (memory (export "memory") {INITIAL_PAGES})')
    for name, arity in funcs.items():
        params = " ".join(f"(param ${i} i32)" for i in range(arity))
        args = " ".join(f"(local.get ${i})" for i in range(arity))
        lines.append(f'  (func (export "nn_{name}") {params} (result i32) (call ${name} {args}))')
    lines.append('  (func (export "trap") unreachable)')
    lines.append(")")
    return "\n".join(lines)


@dataclass
class Call:
    """What one ABI call returned: the errno and the value written to its out-pointer, if any."""

    errno: int
    value: int | None = None

    @property
    def ok(self) -> bool:
        return self.errno == 0


class TrampolineGuest:
    """One instance of the trampoline guest in its own store of ``host``."""

    def __init__(self, host: WasiNnHost, engine: wasmtime.Engine | None = None, *, abi: str | None = None,
                 module: str = "wasi_ephemeral_nn", functions: dict[str, int] | None = None) -> None:
        self.host = host
        self.engine = engine or wasmtime.Engine()
        self.linker = wasmtime.Linker(self.engine)
        host.add_to_linker(self.linker)
        self.store = host.new_store(self.engine, abi=abi)
        wasm = wasmtime.Module(self.engine, trampoline_wat(module, functions))
        self.instance = host.instantiate(self.store, self.linker, wasm)
        exports = self.instance.exports(self.store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        self._exports = exports
        self.heap = PAGE  # bump allocator start; the first page is left for fixed-address tests

    # -- raw access ---------------------------------------------------------------------------------
    @property
    def state(self) -> StoreState:
        return WasiNnHost.state(self.store)

    def call(self, name: str, *args: int) -> int:
        func = self._exports[f"nn_{name}"]
        assert isinstance(func, wasmtime.Func)
        result = func(self.store, *[int(a) & 0xFFFFFFFF if a >= 0 else int(a) for a in args])
        return int(result)

    def trap(self) -> None:
        func = self._exports["trap"]
        assert isinstance(func, wasmtime.Func)
        func(self.store)

    @property
    def memory_size(self) -> int:
        return int(self.memory.data_len(self.store))

    def alloc(self, size: int, align: int = 8) -> int:
        ptr = (self.heap + align - 1) // align * align
        end = ptr + max(size, 1)
        if end > self.memory_size:
            self.memory.grow(self.store, (end - self.memory_size + PAGE - 1) // PAGE)
        self.heap = end
        return ptr

    def put(self, data: bytes) -> int:
        ptr = self.alloc(len(data))
        if data:
            self.memory.write(self.store, data, ptr)
        return ptr

    def read(self, ptr: int, size: int) -> bytes:
        return bytes(self.memory.read(self.store, ptr, ptr + size))

    def u32(self, ptr: int) -> int:
        return int(struct.unpack("<I", self.read(ptr, 4))[0])

    def reset_heap(self) -> None:
        self.heap = PAGE

    # -- the operations, with Python values -------------------------------------------------------------
    def load(self, builders: Sequence[bytes], encoding: int | str = "autodetect", target: int | str = "cpu") -> Call:
        pairs = b"".join(struct.pack("<II", self.put(b), len(b)) for b in builders)
        array = self.put(pairs)
        out = self.alloc(4)
        enc = ENCODING[encoding] if isinstance(encoding, str) else encoding
        tgt = TARGET[target] if isinstance(target, str) else target
        errno = self.call("load", array, len(builders), enc, tgt, out)
        return Call(errno, self.u32(out) if errno == 0 else None)

    def load_by_name(self, name: str | bytes, config: str | bytes | None = None) -> Call:
        raw = name.encode() if isinstance(name, str) else name
        ptr, out = self.put(raw), self.alloc(4)
        if config is None:
            errno = self.call("load_by_name", ptr, len(raw), out)
        else:
            cfg = config.encode() if isinstance(config, str) else config
            errno = self.call("load_by_name_with_config", ptr, len(raw), self.put(cfg), len(cfg), out)
        return Call(errno, self.u32(out) if errno == 0 else None)

    def init_execution_context(self, graph: int) -> Call:
        out = self.alloc(4)
        errno = self.call("init_execution_context", graph, out)
        return Call(errno, self.u32(out) if errno == 0 else None)

    def tensor_record(self, data: bytes, dims: Sequence[int], type_number: int, *, data_len: int | None = None,
                      padding: bytes = b"\0\0\0") -> int:
        dims_ptr = self.put(struct.pack(f"<{len(dims)}I", *dims))
        data_ptr = self.put(data)
        length = len(data) if data_len is None else data_len
        return self.put(struct.pack("<IIB", dims_ptr, len(dims), type_number) + padding
                        + struct.pack("<II", data_ptr, length))

    def set_input(self, context: int, index: int, array: np.ndarray, type_number: int | None = None) -> Call:
        contiguous = np.ascontiguousarray(array)
        number = type_number if type_number is not None else TENSOR_TYPE[TensorType.from_numpy(contiguous.dtype)]
        record = self.tensor_record(contiguous.tobytes(), contiguous.shape, number)
        return Call(self.call("set_input", context, index, record))

    def compute(self, context: int) -> Call:
        return Call(self.call("compute", context))

    def get_output_bytes(self, context: int, index: int, max_bytes: int = 1 << 20) -> tuple[Call, bytes]:
        buf, written = self.alloc(max_bytes), self.alloc(4)
        errno = self.call("get_output", context, index, buf, max_bytes, written)
        size = self.u32(written)
        return Call(errno, size), (self.read(buf, size) if errno == 0 else b"")

    def get_output(self, context: int, index: int, dtype: Any, shape: Sequence[int] | None = None,
                   max_bytes: int = 1 << 20) -> tuple[Call, np.ndarray | None]:
        call, raw = self.get_output_bytes(context, index, max_bytes)
        if not call.ok:
            return call, None
        array = np.frombuffer(raw, dtype=np.dtype(dtype))
        return call, array.reshape(shape) if shape is not None else array

    def unload(self, graph: int) -> Call:
        return Call(self.call("unload", graph))

    # WasmEdge's streaming calls (present only when ``functions`` names them).
    def compute_single(self, context: int) -> Call:
        return Call(self.call("compute_single", context))

    def get_output_single_bytes(self, context: int, index: int, max_bytes: int = 1 << 16) -> tuple[Call, bytes]:
        buf, written = self.alloc(max_bytes), self.alloc(4)
        errno = self.call("get_output_single", context, index, buf, max_bytes, written)
        size = self.u32(written)
        return Call(errno, size), (self.read(buf, size) if errno == 0 else b"")

    def fini_single(self, context: int) -> Call:
        return Call(self.call("fini_single", context))

    def finalize_execution_context(self, context: int) -> Call:
        return Call(self.call("finalize_execution_context", context))

    def infer(self, graph: int, inputs: Sequence[np.ndarray], outputs: Sequence[tuple[Any, Sequence[int]]]
              ) -> list[np.ndarray]:
        """Context, inputs, compute, outputs; raises AssertionError naming the failing step."""
        ctx = self.init_execution_context(graph)
        assert ctx.ok and ctx.value is not None, f"init_execution_context errno {ctx.errno}"
        for i, array in enumerate(inputs):
            call = self.set_input(ctx.value, i, array)
            assert call.ok, f"set_input {i} errno {call.errno}"
        call = self.compute(ctx.value)
        assert call.ok, f"compute errno {call.errno}"
        results = []
        for j, (dtype, shape) in enumerate(outputs):
            call, output = self.get_output(ctx.value, j, dtype, shape)
            assert call.ok and output is not None, f"get_output {j} errno {call.errno}"
            results.append(output)
        return results

    def close(self) -> None:
        self.store.close()
