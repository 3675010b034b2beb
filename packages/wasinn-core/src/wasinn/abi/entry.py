"""How a wasm call enters a wasi-nn import: the trampoline between wasmtime and the function bodies.

wasmtime-py's ``Linker.define_func`` runs every call through a Python trampoline that builds a
``Caller`` and one ``Val`` object per parameter and converts the result back: 8-10 µs per call on
this project's machines, more than most of wasinn's own work in a host call. wasmtime's C API has an
*unchecked* variant, ``wasmtime_linker_define_func_unchecked``, which hands the callback the raw
parameter slots in one buffer (the result goes back into slot 0). wasinn defines its imports with it
through wasmtime-py's own ctypes library (no extension to compile): 0.4-0.7 µs per empty call.

Nothing about safety changes: the signature of every import is still checked by wasmtime at
instantiation (the function type is given), each body still bounds-checks every pointer against the
memory as it is at that call, and exceptions are still caught. A Python exception that is not a
:class:`~wasinn.errors.WasiNnError` from outside the body (an embedder mistake, ``KeyboardInterrupt``)
becomes a trap that re-raises it at the embedder's call site, as wasmtime-py's trampoline does.

When wasmtime-py's internals are not what this module expects (another layout of its bindings), or
``WASINN_HOST_CALLS=portable`` is set, the imports are defined with ``Linker.define_func`` instead:
slower, the same behaviour.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
from collections.abc import Callable
from typing import Any

import wasmtime

log = logging.getLogger("wasinn.abi")

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
    if os.environ.get("WASINN_HOST_CALLS", "").strip().lower() == "portable":
        log.info("host calls through wasmtime-py's Linker.define_func (WASINN_HOST_CALLS=portable)")
        return None
    try:
        return _Unchecked()
    except (ImportError, AttributeError, KeyError, OSError, RuntimeError, TypeError) as exc:
        log.info("host calls through wasmtime-py's Linker.define_func: the unchecked C API is not "
                 "reachable in this wasmtime-py (%s)", exc)
        return None


_UNCHECKED = _load_unchecked()
#: Which trampoline this process uses: ``"unchecked"`` (wasmtime's raw C API) or ``"portable"``.
MODE = "unchecked" if _UNCHECKED is not None else "portable"


def _i32s(count: int) -> wasmtime.FuncType:
    i32 = wasmtime.ValType.i32()
    return wasmtime.FuncType([i32] * count, [i32])


def define(linker: wasmtime.Linker, module: str, name: str, arity: int, function: ImportFunction) -> None:
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
