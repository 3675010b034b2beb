"""Per-store state of a component guest: the shared tables plus the component's own resources.

Graphs and execution contexts are the :class:`~wasinn.service.store.StoreService` handles the witx path
uses too (the handle number is the resource's *rep*); tensors and errors exist only on the component
path and live in their own tables here. Every table entry is released when the guest drops its
resource, and everything left when the store is closed or collected.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from wasinn.enums import ErrorCode, TensorType
from wasinn.errors import WasiNnError
from wasinn.service.loader import GraphLoader
from wasinn.service.store import StoreService

log = logging.getLogger("wasinn.component")

#: Tensors one store may hold at once (guest-made inputs and host-made outputs together), unless
#: ``Limits.max_tensors_per_store`` says otherwise.
MAX_TENSORS_PER_STORE = 4096
#: Error resources one store may hold at once, unless ``Limits.max_errors_per_store`` says otherwise: a
#: guest that never drops its errors gets ``runtime-error`` errors that are not kept (the oldest are
#: forgotten, not the host's memory).
MAX_ERRORS_PER_STORE = 1024


def _cap(limit: int | None, default: int) -> int:
    # Read at each use: the module constants are the defaults (tests lower them).
    return default if limit is None else limit


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """A tensor resource: its bytes are owned by the host (a copy of the guest's list<u8>)."""

    dims: tuple[int, ...]
    dtype: TensorType
    data: bytes


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """An error resource: the code and the message the witx path logs for the same failure."""

    code: ErrorCode
    operation: str
    message: str


class ComponentState(StoreService):
    """The store data of a component store (made by :meth:`WasiNnHost.new_component_store`)."""

    def __init__(self, host: GraphLoader, user_data: Any = None) -> None:
        super().__init__(host, user_data)
        self.tensors: dict[int, TensorEntry] = {}
        self.tensor_bytes = 0
        self.errors: dict[int, ErrorEntry] = {}
        self._next_tensor = 1
        self._next_error = 1

    # -- tensors ---------------------------------------------------------------------------------
    def add_tensor(self, entry: TensorEntry) -> int:
        if self.tables.closed:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, "this store's wasi-nn state was closed")
        limit = _cap(self.limits.max_tensors_per_store, MAX_TENSORS_PER_STORE)
        if len(self.tensors) >= limit:
            raise WasiNnError(ErrorCode.BUSY, f"store already holds {len(self.tensors)} tensors "
                                              f"(limit {limit}); drop some first")
        size = len(entry.data)
        if size > self.limits.max_tensor_bytes:
            raise WasiNnError(ErrorCode.TOO_LARGE, f"tensor of {size} bytes exceeds the limit of "
                                                   f"{self.limits.max_tensor_bytes} bytes")
        if self.tensor_bytes + size > self.limits.max_store_bytes:
            raise WasiNnError(ErrorCode.TOO_LARGE, f"store would hold {self.tensor_bytes + size} bytes of "
                                                   f"tensors (limit {self.limits.max_store_bytes})")
        rep = self._next_tensor
        self._next_tensor += 1
        self.tensors[rep] = entry
        self.tensor_bytes += size
        return rep

    def tensor(self, rep: int) -> TensorEntry:
        entry = self.tensors.get(rep)
        if entry is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown tensor {rep} (dropped, or never made)")
        return entry

    def drop_tensor(self, rep: int) -> None:
        entry = self.tensors.pop(rep, None)
        if entry is not None:
            self.tensor_bytes -= len(entry.data)

    # -- errors ----------------------------------------------------------------------------------
    def add_error(self, entry: ErrorEntry) -> int:
        if len(self.errors) >= _cap(self.limits.max_errors_per_store, MAX_ERRORS_PER_STORE):
            oldest = next(iter(self.errors))
            del self.errors[oldest]
        rep = self._next_error
        self._next_error += 1
        self.errors[rep] = entry
        return rep

    def error(self, rep: int) -> ErrorEntry:
        entry = self.errors.get(rep)
        if entry is None:
            kept = _cap(self.limits.max_errors_per_store, MAX_ERRORS_PER_STORE)
            return ErrorEntry(ErrorCode.RUNTIME_ERROR, "error", f"error resource {rep} is no longer held "
                                                                f"by the host (more than {kept} errors undropped)")
        return entry

    def drop_error(self, rep: int) -> None:
        self.errors.pop(rep, None)

    # -- graphs and contexts dropped by the guest ------------------------------------------------
    def drop_graph(self, rep: int) -> None:
        if self.tables.closed or rep not in self.tables.graphs:
            return
        self.unload(rep)

    def drop_context(self, rep: int) -> None:
        if self.tables.closed or rep not in self.tables.contexts:
            return
        self.finalize_execution_context(rep)

    def close(self) -> None:
        self.tensors.clear()
        self.tensor_bytes = 0
        self.errors.clear()
        super().close()
