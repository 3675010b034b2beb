"""Tensor data across the component boundary (``list<u8>``).

wasmtime's C API hands a host function its arguments as ``wasmtime_component_val_t`` values, and
a ``list<u8>`` as one 32-byte value *per byte* (the Rust side builds a ``Vec<Val>`` of the same
shape). wasmtime-py then converts every element through Python: about 1 MB/s each way, measured
in ``benchmarks/component_transfer.py``; ``benchmarks/component_list_repro.py`` shows the same
with no wasinn at all. The per-element values are the runtime's limit; the Python loop is not.

This module defines wasinn's component functions with a trampoline of its own (the same C
callback type wasmtime-py registers, through wasmtime-py's ctypes bindings): every value is lifted
and lowered by wasmtime-py's own type converters, except a ``list<u8>`` (also inside a list, as the
graph builders are), which is read and written in one numpy pass over the value array. Nothing
about checking changes: wasmtime still type-checks the function at instantiation and validates the
canonical ABI; a Python exception still becomes a trap through wasmtime-py's ``catch_exceptions``.

When wasmtime-py's internals are not what this module expects, or ``WASINN_COMPONENT_LISTS=portable``
is set, the functions are defined with ``LinkerInstance.add_func`` instead: slower, the same results.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("wasinn.component")

HostFunction = Callable[..., Any]


class _Fast:
    """wasmtime-py's bindings, resolved once; raises on any layout this module does not know."""

    def __init__(self) -> None:
        from wasmtime import _ffi as ffi
        from wasmtime.component import _enter, _types

        self.ffi = ffi
        self.types = _types
        self.catch_exceptions = _enter.catch_exceptions
        val = ffi.wasmtime_component_val_t
        fields = {field[0]: field[1] for field in val._fields_}
        if set(fields) != {"kind", "of"} or fields["kind"] is not ctypes.c_ubyte:
            raise RuntimeError(f"unexpected wasmtime_component_val_t layout {val._fields_}")
        self.val_size = ctypes.sizeof(val)
        self.u8_offset = val.of.offset  # the union's first byte is its u8 member
        self.kind_u8 = ffi.WASMTIME_COMPONENT_U8.value
        self.kind_list = ffi.WASMTIME_COMPONENT_LIST.value
        self.kind_bool = ffi.WASMTIME_COMPONENT_BOOL.value
        self.functions: dict[int, HostFunction] = {}
        self.next_id = 1
        self.callback = ffi.wasmtime_component_func_callback_t(self._trampoline)
        self.finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(self._finalize)

    def is_bytes(self, ty: Any) -> bool:
        """Whether a wasmtime-py value type is ``list<u8>``."""
        return isinstance(ty, self.types.ListType) and isinstance(ty.element, self.types.U8)

    # -- the two fast conversions ----------------------------------------------------------------
    def lift_bytes(self, c: Any) -> bytes:
        """A ``list<u8>`` value -> bytes; frees the value's list (ownership passed to the host)."""
        vallist = c.of.list
        n = int(vallist.size)
        if n == 0:
            data = b""
        else:
            address = ctypes.addressof(vallist.data.contents)
            raw = np.ctypeslib.as_array((ctypes.c_uint8 * (n * self.val_size)).from_address(address))
            data = raw.reshape(n, self.val_size)[:, self.u8_offset].tobytes()
        self.ffi.wasmtime_component_vallist_delete(ctypes.byref(vallist))
        c.kind = self.kind_bool
        c.of.boolean = False
        return data

    def lower_bytes(self, data: bytes | bytearray | memoryview, ptr: Any) -> None:
        """bytes -> a ``list<u8>`` value at ``ptr`` (one numpy pass fills kind and payload bytes)."""
        n = len(data)
        raw = self.ffi.wasmtime_component_vallist_t()
        self.ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            address = ctypes.addressof(raw.data.contents)
            table = np.ctypeslib.as_array((ctypes.c_uint8 * (n * self.val_size)).from_address(address))
            table = table.reshape(n, self.val_size)
            table[:, 0] = self.kind_u8
            table[:, self.u8_offset] = np.frombuffer(data, dtype=np.uint8)
        ptr.contents.kind = self.kind_list
        ptr.contents.of.list = raw

    def lift(self, ty: Any, c: Any) -> Any:
        if self.is_bytes(ty):
            return self.lift_bytes(c)
        if isinstance(ty, self.types.ListType) and self.is_bytes(ty.element):
            vallist = c.of.list
            out = [self.lift_bytes(vallist.data[i]) for i in range(int(vallist.size))]
            self.ffi.wasmtime_component_vallist_delete(ctypes.byref(vallist))
            c.kind = self.kind_bool
            c.of.boolean = False
            return out
        return ty.convert_from_c(c)

    def lower(self, store: Any, ty: Any, value: Any, ptr: Any) -> None:
        if self.is_bytes(ty) and isinstance(value, bytes | bytearray | memoryview):
            self.lower_bytes(value, ptr)
        else:
            ty.convert_to_c(store, value, ptr)

    # -- the trampoline ----------------------------------------------------------------------------
    def _trampoline(self, env: Any, context: Any, ty_raw: Any, args: Any, nargs: int, results: Any,
                    nresults: int) -> Any:
        def run(store: Any) -> None:
            with self.types.FuncType._from_ptr(ty_raw, owner=store) as fty:
                func = self.functions[env or 0]
                params = [self.lift(ty, args[i]) for (_, ty), i in zip(fty.params, range(nargs), strict=True)]
                result = func(store, *params)
                result_ty = fty.result
                if result_ty is None:
                    if result is not None:
                        raise TypeError(f"{func.__name__} returned a value for a function without a result")
                else:
                    self.lower(store, result_ty, result, results)

        return self.catch_exceptions(context, run)

    def _finalize(self, env: Any) -> None:
        self.functions.pop(env or 0, None)

    def add_func(self, instance: Any, name: str, func: HostFunction) -> None:
        from wasmtime import WasmtimeError

        index = self.next_id
        self.next_id += 1
        self.functions[index] = func
        encoded = name.encode("utf-8")
        error = self.ffi.wasmtime_component_linker_instance_add_func(
            instance.ptr(), ctypes.create_string_buffer(encoded), len(encoded), self.callback, index, self.finalizer)
        if error:
            self.functions.pop(index, None)
            raise WasmtimeError._from_ptr(error)


def _load_fast() -> _Fast | None:
    if os.environ.get("WASINN_COMPONENT_LISTS", "").strip().lower() == "portable":
        log.info("component lists through wasmtime-py's add_func (WASINN_COMPONENT_LISTS=portable)")
        return None
    try:
        return _Fast()
    except (ImportError, AttributeError, KeyError, RuntimeError, TypeError) as exc:
        log.info("component lists through wasmtime-py's add_func: its bindings are not what wasinn "
                 "expects (%s)", exc)
        return None


_FAST = _load_fast()
#: ``"fast"`` (list<u8> in one numpy pass) or ``"portable"`` (wasmtime-py's per-element conversion).
MODE = "fast" if _FAST is not None else "portable"


def add_func(instance: Any, name: str, func: HostFunction, *, mode: str | None = None) -> None:
    """Define ``func(store, *args)`` as ``name`` in a component ``LinkerInstance``."""
    if _FAST is not None and (mode or MODE) == "fast":
        _FAST.add_func(instance, name, func)
    else:
        instance.add_func(name, func)


def bytes_result(data: bytes) -> Any:
    """The value a host function returns for a ``list<u8>`` result."""
    return data
