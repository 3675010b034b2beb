"""How a wasm call enters a wasi-nn import: the trampoline between wasmtime and the function bodies.

The trampoline lives in :mod:`wasinn.boundary.wasmtime_internals`, with every other use of
wasmtime-py's private API; this module keeps the names the ABI (and benchmarks, tests) use.
``MODE`` is ``"unchecked"`` (wasmtime's raw C API) or ``"portable"`` (``WASINN_HOST_CALLS=portable``,
or a wasmtime-py whose internals differ).
"""

from __future__ import annotations

from wasinn.boundary.wasmtime_internals import _UNCHECKED, HostCall, ImportFunction, store_data
from wasinn.boundary.wasmtime_internals import HOST_CALLS_MODE as MODE
from wasinn.boundary.wasmtime_internals import define_import as define

__all__ = ["MODE", "_UNCHECKED", "HostCall", "ImportFunction", "define", "store_data"]
