"""Every use of wasmtime-py's private API in wasinn, and the two fast paths it makes possible.

wasmtime-py's public API costs what wasinn's host calls cannot afford, twice:

- **Core modules** (:mod:`wasinn.abi`): ``Linker.define_func`` runs every call through a Python
  trampoline that builds a ``Caller`` and one ``Val`` object per parameter and converts the result
  back: 8-10 µs per call on this project's machines, more than most of wasinn's own work in a host
  call. wasmtime's C API has an *unchecked* variant, ``wasmtime_linker_define_func_unchecked``, which
  hands the callback the raw parameter slots in one buffer (the result goes back into slot 0). wasinn
  defines its imports with it through wasmtime-py's own ctypes library (no extension to compile):
  0.4-0.7 µs per empty call. The memory's base and size are read with two raw C calls, not
  wasmtime-py's wrappers (:class:`wasinn.abi.memory.CachedMemory`).
- **Components** (:mod:`wasinn.component`): wasmtime's C API hands a host function its arguments as
  ``wasmtime_component_val_t`` values, and a ``list<u8>`` as one 32-byte value *per byte*; wasmtime-py
  converts every element through Python: about 1 MB/s each way, measured in
  ``benchmarks/component_transfer.py`` (``benchmarks/component_list_repro.py`` shows the same with no
  wasinn at all). wasinn's component functions go through a trampoline of its own (the C callback type
  wasmtime-py registers): every value is lifted and lowered by wasmtime-py's own type converters,
  except a ``list<u8>`` (also inside a list, as the graph builders are), read and written in one numpy
  pass over the value array.

Nothing about safety changes: wasmtime still checks the type of every function at instantiation (and
the canonical ABI of components); each body still bounds-checks every pointer against the memory as it
is at that call; exceptions are still caught. A Python exception that is not a
:class:`~wasinn.errors.WasiNnError` from outside a body (an embedder mistake, ``KeyboardInterrupt``)
becomes a trap that re-raises it at the embedder's call site, as wasmtime-py's own trampolines do.

When wasmtime-py's internals are not what this module expects (another layout of its bindings), each
fast path falls back to the public API, slower with the same behaviour; ``WASINN_HOST_CALLS=portable``
(core modules) and ``WASINN_COMPONENT_LISTS=portable`` (components) ask for the fallback.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import wasmtime

abi_log = logging.getLogger("wasinn.abi")
component_log = logging.getLogger("wasinn.component")


def _portable_asked(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() == "portable"


# ---- core modules: the import trampoline ------------------------------------------------------------
#: The import function a body is wrapped into: ``function(call, *i32 params) -> errno``.
ImportFunction = Callable[..., int]
_VAL_RAW_SIZE = 16  # sizeof(wasmtime_val_raw_t): a union as wide as a v128
_RESULT = struct.Struct("<i")


class HostCall:
    """What a host-function body gets for the call in progress, in place of a ``wasmtime.Caller``.

    ``context`` is the address of the calling store's ``wasmtime_context_t`` (what the raw memory
    readers take). :meth:`caller` makes a wasmtime-py ``Caller`` for the rare paths that need one
    (looking up an export by name); it is valid only during the call, like the call itself.
    """

    __slots__ = ("_caller", "_caller_address", "context")

    def __init__(self, context: int, caller_address: int | None, caller: wasmtime.Caller | None = None) -> None:
        self.context = context
        self._caller_address = caller_address
        self._caller = caller

    def caller(self) -> wasmtime.Caller:
        if self._caller is None:
            if self._caller_address is None:
                raise RuntimeError("a HostCall was used after its host call returned")
            from wasmtime import _ffi as ffi

            self._caller = wasmtime.Caller(ctypes.cast(self._caller_address, ctypes.POINTER(ffi.wasmtime_caller_t)))
        return self._caller

    def end(self) -> None:
        """Invalidate: the caller pointer wasmtime gave is dangling once the call returns."""
        if self._caller is not None and self._caller_address is not None:
            self._caller._invalidate()  # only the one this module made; wasmtime-py invalidates its own
        self._caller = None
        self._caller_address = None


def _private_function(symbol: str, restype: Any, argtypes: list[Any]) -> Any:
    # ``dll[symbol]`` makes a new function object, so setting its types never touches wasmtime-py's own.
    from wasmtime import _ffi as ffi

    function = ffi.dll[symbol]
    function.restype = restype
    function.argtypes = argtypes
    return function


class _Unchecked:
    """wasmtime's unchecked host-function API, reached through wasmtime-py's ctypes library."""

    def __init__(self) -> None:
        from wasmtime import _ffi as ffi
        from wasmtime import _func, _value

        if ctypes.sizeof(ffi.wasmtime_val_raw_t) != _VAL_RAW_SIZE:
            raise RuntimeError(f"wasmtime_val_raw_t is {ctypes.sizeof(ffi.wasmtime_val_raw_t)} bytes, "
                               f"not {_VAL_RAW_SIZE}")
        if not hasattr(_func, "LAST_EXCEPTION") or not hasattr(_value, "_unintern"):
            raise RuntimeError("wasmtime-py's trampoline internals differ from the ones this module knows")
        void = ctypes.c_void_p
        self.callback_type = ctypes.CFUNCTYPE(ctypes.c_size_t, void, void, void, ctypes.c_size_t)
        self.define = _private_function(
            "wasmtime_linker_define_func_unchecked", void,
            [void, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, void, void, void, void])
        self.caller_context = _private_function("wasmtime_caller_context", void, [void])
        self.context_data = _private_function("wasmtime_context_get_data", void, [void])
        self.unintern = _value._unintern
        self.func_module = _func
        #: Callbacks live as long as the process: linkers (and instances made from them) hold raw
        #: pointers to them, and they find their state through the caller, so one per import serves all.
        self.callbacks: dict[tuple[str, str], Any] = {}

    def trap(self, exc: BaseException) -> int:
        # What wasmtime-py's trampoline does: keep the exception, trap; its call wrapper re-raises it.
        self.func_module.LAST_EXCEPTION = exc  # type: ignore[assignment]
        trap = wasmtime.Trap("python exception")._consume()
        return ctypes.cast(trap, ctypes.c_void_p).value or 0

    def callback(self, key: tuple[str, str], arity: int, function: ImportFunction) -> Any:
        made = self.callbacks.get(key)
        if made is not None and made[0] is function:
            return made[1]
        params = struct.Struct("<" + "i12x" * arity)
        buffer_type = ctypes.c_char * max(params.size, _VAL_RAW_SIZE)
        caller_context = self.caller_context
        result = _RESULT
        trap = self.trap

        def enter(env: int | None, caller_address: int, slots: int, count: int) -> int:
            call = None
            try:
                buffer = buffer_type.from_address(slots)
                call = HostCall(caller_context(caller_address), caller_address)
                result.pack_into(buffer, 0, function(call, *params.unpack_from(buffer)))
                return 0
            except BaseException as exc:
                return trap(exc)
            finally:
                if call is not None:
                    call.end()

        entry = self.callback_type(enter)
        self.callbacks[key] = (function, entry)
        return entry

    def store_data(self, call: HostCall) -> Any:
        data = self.context_data(call.context)
        return self.unintern(data) if data else None


def _load_unchecked() -> _Unchecked | None:
    if _portable_asked("WASINN_HOST_CALLS"):
        abi_log.info("host calls through wasmtime-py's Linker.define_func (WASINN_HOST_CALLS=portable)")
        return None
    try:
        return _Unchecked()
    except (ImportError, AttributeError, KeyError, OSError, RuntimeError, TypeError) as exc:
        abi_log.info("host calls through wasmtime-py's Linker.define_func: the unchecked C API is not "
                     "reachable in this wasmtime-py (%s)", exc)
        return None


_UNCHECKED = _load_unchecked()
#: Which trampoline this process uses for core modules: ``"unchecked"`` (wasmtime's raw C API) or
#: ``"portable"`` (wasmtime-py's ``Linker.define_func``).
HOST_CALLS_MODE = "unchecked" if _UNCHECKED is not None else "portable"


def _i32s(count: int) -> wasmtime.FuncType:
    i32 = wasmtime.ValType.i32()
    return wasmtime.FuncType([i32] * count, [i32])


def define_import(linker: wasmtime.Linker, module: str, name: str, arity: int, function: ImportFunction) -> None:
    """Define ``module::name`` taking ``arity`` i32 parameters and returning ``function``'s i32."""
    ty = _i32s(arity)
    if _UNCHECKED is None:
        def portable(caller: wasmtime.Caller, *args: int) -> int:
            call = HostCall(ctypes.cast(caller._context(), ctypes.c_void_p).value or 0, None, caller)
            return function(call, *args)

        linker.define_func(module, name, ty, portable, access_caller=True)
        return
    module_bytes, name_bytes = module.encode(), name.encode()
    entry = _UNCHECKED.callback((module, name), arity, function)
    error = _UNCHECKED.define(ctypes.cast(linker.ptr(), ctypes.c_void_p), module_bytes, len(module_bytes),
                              name_bytes, len(name_bytes), ctypes.cast(ty.ptr(), ctypes.c_void_p),
                              ctypes.cast(entry, ctypes.c_void_p), None, None)
    if error:
        from wasmtime import _ffi as ffi

        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))


def store_data(call: HostCall) -> Any:
    """``Store.data()`` of the calling store (wasmtime-py's Caller has no public accessor)."""
    if _UNCHECKED is not None:
        return _UNCHECKED.store_data(call)
    from wasmtime import _ffi as ffi
    from wasmtime import _value

    data = ffi.wasmtime_context_get_data(call.caller()._context())
    return _value._unintern(data) if data else None  # type: ignore[arg-type]


# ---- core modules: a memory's base and size -----------------------------------------------------------
def _raw_reader(symbol: str, restype: Any) -> Callable[[Any, int], Any] | None:
    # A private handle on wasmtime's C function with an int-returning signature; wasmtime-py's own
    # wrapper builds a ctypes pointer object per call. None when wasmtime-py's internals differ.
    try:
        from wasmtime import _ffi as ffi

        function = ffi.dll[symbol]
    except (ImportError, AttributeError, KeyError, OSError):
        return None
    function.restype = restype
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return function


#: ``(context, memory handle address) -> base address`` / ``-> byte length``, or None (see above).
memory_base = _raw_reader("wasmtime_memory_data", ctypes.c_void_p)
memory_size = _raw_reader("wasmtime_memory_data_size", ctypes.c_size_t)


def memory_handle(memory: wasmtime.Memory) -> int | None:
    """The address of wasmtime's small handle struct of ``memory`` (owned and kept alive by ``memory``),
    what :data:`memory_base` and :data:`memory_size` take; None where they cannot be used."""
    raw = getattr(memory, "_memory", None)
    return ctypes.addressof(raw) if raw is not None and memory_base and memory_size else None


# ---- components --------------------------------------------------------------------------------------
def component_store_data(store: Any) -> Any:
    """``Store.data()`` of the calling store of a component function (its StoreContext has no ``data()``)."""
    from wasmtime import _ffi as ffi
    from wasmtime import _value

    data = ffi.wasmtime_context_get_data(store._context())
    return _value._unintern(data) if data else None  # type: ignore[arg-type]


#: A component function body: ``func(store, *lifted args) -> value to lower``.
ComponentFunction = Callable[..., Any]


class _FastComponents:
    """wasmtime-py's component bindings, resolved once; raises on any layout this module does not know."""

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
        self.functions: dict[int, ComponentFunction] = {}
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

    def add_func(self, instance: Any, name: str, func: ComponentFunction) -> None:
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


@functools.cache
def _fast_components() -> _FastComponents | None:
    # Made on first use: a process that runs only core modules never imports wasmtime.component.
    if _portable_asked("WASINN_COMPONENT_LISTS"):
        component_log.info("component lists through wasmtime-py's add_func (WASINN_COMPONENT_LISTS=portable)")
        return None
    try:
        return _FastComponents()
    except (ImportError, AttributeError, KeyError, RuntimeError, TypeError) as exc:
        component_log.info("component lists through wasmtime-py's add_func: its bindings are not what wasinn "
                           "expects (%s)", exc)
        return None


def component_lists_mode() -> str:
    """``"fast"`` (list<u8> in one numpy pass) or ``"portable"`` (wasmtime-py's per-element conversion)."""
    return "fast" if _fast_components() is not None else "portable"


def add_component_func(instance: Any, name: str, func: ComponentFunction, *, mode: str | None = None) -> None:
    """Define ``func(store, *args)`` as ``name`` in a component ``LinkerInstance``; ``mode`` picks the
    trampoline (default: :func:`component_lists_mode`)."""
    fast = _fast_components()
    if fast is not None and (mode or "fast") == "fast":
        fast.add_func(instance, name, func)
    else:
        instance.add_func(name, func)
