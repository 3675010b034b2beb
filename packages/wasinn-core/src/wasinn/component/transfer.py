"""Tensor data across the component boundary (``list<u8>``).

wasmtime-py lifts and lowers a ``list<u8>`` one element at a time: the C API hands the host a
``wasmtime_component_val_t`` per byte, and wasmtime-py converts each through Python. That is the
runtime's limit (see ``benchmarks/component_list_repro.py``); this module is where wasinn meets it.
"""

from __future__ import annotations

from typing import Any


def bytes_result(data: bytes) -> Any:
    """The value a host function returns for a ``list<u8>`` result."""
    return data
