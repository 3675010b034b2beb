"""Tensor data across the component boundary (``list<u8>``): how wasinn's component functions are defined.

The fast trampoline (``list<u8>`` in one numpy pass instead of one Python conversion per byte) lives
in :mod:`wasinn.boundary.wasmtime_internals`, with every other use of wasmtime-py's private API; this
module keeps the names the component ABI (and benchmarks, tests) use. ``MODE`` is ``"fast"`` or
``"portable"`` (``WASINN_COMPONENT_LISTS=portable``, or a wasmtime-py whose bindings differ).
"""

from __future__ import annotations

from typing import Any

from wasinn.boundary.wasmtime_internals import ComponentFunction, add_component_func, component_lists_mode

HostFunction = ComponentFunction
#: ``"fast"`` (list<u8> in one numpy pass) or ``"portable"`` (wasmtime-py's per-element conversion).
MODE = component_lists_mode()


def add_func(instance: Any, name: str, func: HostFunction, *, mode: str | None = None) -> None:
    """Define ``func(store, *args)`` as ``name`` in a component ``LinkerInstance``."""
    add_component_func(instance, name, func, mode=mode)


def bytes_result(data: bytes) -> Any:
    """The value a host function returns for a ``list<u8>`` result."""
    return data
