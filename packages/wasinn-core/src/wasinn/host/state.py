"""Kept for imports written before the floors (``from wasinn.host.state import StoreState``).

A store's tables and the wasi-nn operations every ABI shares live in :mod:`wasinn.service.store` (a
loaded graph and backend calls in :mod:`wasinn.service.graphs`); a core module's store state, the
:class:`StoreState` embedders use, in :mod:`wasinn.abi.state`.
"""

from __future__ import annotations

from wasinn.abi.state import StoreState
from wasinn.service.graphs import LoadedGraph, call_backend, graph_lock
from wasinn.service.store import PRELOAD_PREFIX, ContextEntry, StoreService, StoreTables

__all__ = ["PRELOAD_PREFIX", "ContextEntry", "LoadedGraph", "StoreService", "StoreState", "StoreTables",
           "call_backend", "graph_lock"]
