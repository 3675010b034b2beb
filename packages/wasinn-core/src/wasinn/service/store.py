"""One store's graphs and execution contexts, and the wasi-nn operations on them.

Everything here speaks symbols (enums, ndarrays, :class:`~wasinn.tensor.Tensor`), never guest
pointers: each ABI (:mod:`wasinn.abi` for core modules, :mod:`wasinn.component` for components) reads
its guest's arguments, then calls these operations; embedders can call them directly. Errors are
raised as :class:`~wasinn.errors.WasiNnError`.

:class:`StoreService` is what every store's state shares: the handle tables, the runtime-memory budget,
the limits and the guest's rate-limited log. Each ABI keeps its own per-store state on top of it
(:class:`wasinn.abi.state.StoreState`, :class:`wasinn.component.state.ComponentState`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from wasinn.budget import ContextBudget, StoreBudget
from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, TensorType
from wasinn.errors import WasiNnError
from wasinn.guestlog import GuestLog
from wasinn.hookspecs import Context
from wasinn.service.graphs import LoadedGraph, call_backend
from wasinn.service.loader import GraphLoader
from wasinn.tensor import Tensor, element_count

log = logging.getLogger("wasinn")
_R = TypeVar("_R")
#: WasmEdge's builder for a model preloaded by the embedder: ``preload:<path>``.
PRELOAD_PREFIX = b"preload:"


def _identity(array: np.ndarray) -> np.ndarray:
    return array


@dataclass(eq=False, slots=True)
class ContextEntry:
    """A context in a store's table, with the hot-path hooks bound for cheap dispatch."""

    loaded: LoadedGraph
    context: Context
    set_input: Callable[..., None]
    compute: Callable[..., None]
    get_output: Callable[..., Any]
    input_count: int
    output_count: int
    #: The optional streaming hooks (``None`` where the backend does not stream).
    compute_single: Callable[..., None] | None = None
    get_output_single: Callable[..., Any] | None = None
    fini_single: Callable[..., None] | None = None
    #: (index, guest type number, dims, byte length) -> tensor type, for inputs that passed every check
    #: (kept by a core module's store state: :meth:`wasinn.abi.state.StoreState.set_guest_input`).
    checked_inputs: dict[tuple[int, int, tuple[int, ...], int], TensorType] = field(default_factory=dict)


class StoreTables:
    """The handle tables of one store. Kept apart from the store's state so that the store's
    finalizer can release them without keeping the state object alive."""

    def __init__(self, runtime_bytes: int | None = None) -> None:
        self.graphs: dict[int, LoadedGraph] = {}
        #: Runtime memory held on behalf of this store's contexts (see :mod:`wasinn.budget`).
        self.budget = StoreBudget(runtime_bytes if runtime_bytes is not None else 1 << 62)
        self.contexts: dict[int, ContextEntry] = {}
        self.next_graph = 0
        self.next_context = 0
        self.store_bytes = 0
        self.closed = False

    def release_all(self) -> None:
        """Finalize every context and unload every graph this store owns (idempotent)."""
        if self.closed:
            return
        self.closed = True
        # Graphs the guest unloaded while their contexts lived are no longer in the graph table.
        orphans = [e.loaded for e in self.contexts.values() if e.loaded not in self.graphs.values()]
        for entry in list(self.contexts.values()):
            _finalize_context(entry)
        self.contexts.clear()
        for loaded in [*self.graphs.values(), *orphans]:  # release() is idempotent
            if not loaded.shared:
                loaded.release()
        self.graphs.clear()
        self.store_bytes = 0


def _release_if_unused(tables: StoreTables, loaded: LoadedGraph) -> None:
    """Release a store-owned graph once it has no handle and no context left; until then it stays
    in ``store_bytes`` (a graph unloaded while its contexts live goes with its last context)."""
    if loaded.shared or loaded in tables.graphs.values():
        return
    if not any(entry.loaded is loaded for entry in tables.contexts.values()):
        tables.store_bytes -= loaded.model_bytes
        loaded.release()


def _finalize_context(entry: ContextEntry) -> None:
    finalize = entry.loaded.backend.hook("finalize_execution_context")
    if finalize is not None:
        try:
            finalize(context=entry.context)
        except Exception as exc:
            log.warning("backend %s: finalize_execution_context failed: %s", entry.loaded.backend.name, exc)
    entry.context.budget.release()


class StoreService:
    """The wasi-nn service one store sees: its graph and context tables and the operations on them.

    ``host`` loads the graphs (:class:`~wasinn.service.loader.GraphLoader`, usually the
    :class:`~wasinn.WasiNnHost`); ``user_data`` carries the embedder's own store data, if any.
    """

    def __init__(self, host: GraphLoader, user_data: Any = None) -> None:
        self.host = host
        self.limits = host.limits
        self.user_data = user_data
        self.tables = StoreTables(self.limits.max_runtime_bytes_per_store)
        #: Lines this store's guest causes (its failures) are escaped and rate-limited here.
        self.guest_log = GuestLog()
        # Runs on store.close() and on garbage collection of the store (wasmtime drops its data).
        self._finalizer = weakref.finalize(self, self.tables.release_all)
        host.prestart_workers()  # a guest may call load next

    # -- introspection -------------------------------------------------------------------------
    @property
    def graph_count(self) -> int:
        return len(self.tables.graphs)

    @property
    def context_count(self) -> int:
        return len(self.tables.contexts)

    def close(self) -> None:
        """Release everything now (also happens when the store is closed or collected)."""
        self._finalizer()

    # -- the operations --------------------------------------------------------------------------
    def _check_open(self) -> StoreTables:
        tables = self.tables
        if tables.closed:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, "this store's wasi-nn state was closed")
        return tables

    def _check_graph_room(self, tables: StoreTables) -> None:
        if len(tables.graphs) >= self.limits.max_graphs_per_store:
            raise WasiNnError(ErrorCode.BUSY, f"store already holds {len(tables.graphs)} graphs "
                                              f"(limit {self.limits.max_graphs_per_store}); unload some first")

    def _add_graph(self, loaded: LoadedGraph) -> int:
        tables = self._check_open()
        try:
            self._check_graph_room(tables)  # again: another thread may have filled the table meanwhile
        except WasiNnError:
            if not loaded.shared:
                loaded.release()
            raise
        handle = tables.next_graph
        tables.next_graph += 1
        tables.graphs[handle] = loaded
        if not loaded.shared:
            tables.store_bytes += loaded.model_bytes
        return handle

    def load(self, builders: Sequence[bytes | bytearray | memoryview], encoding: GraphEncoding,
             target: ExecutionTarget) -> int:
        """``load``: model bytes from the guest. Returns the new graph handle.

        A single builder ``preload:<path>`` (what WasmEdge guests send for a preloaded GGUF) names a
        model the embedder registered from that file: its shared graph is used, and the weights are
        never copied through guest memory. Any other path is refused: a guest never picks host files.
        """
        tables = self._check_open()
        if len(builders) == 1 and bytes(builders[0][:len(PRELOAD_PREFIX)]) == PRELOAD_PREFIX:
            self._check_graph_room(tables)
            return self._add_graph(self.host.load_preloaded(bytes(builders[0][len(PRELOAD_PREFIX):])))
        size = sum(len(b) for b in builders)
        self._check_graph_room(tables)  # before the model is compiled
        if size > self.limits.max_model_bytes:
            raise WasiNnError(ErrorCode.TOO_LARGE, f"model of {size} bytes exceeds the limit of "
                                                   f"{self.limits.max_model_bytes} bytes")
        if tables.store_bytes + size > self.limits.max_store_bytes:
            raise WasiNnError(ErrorCode.TOO_LARGE, f"store would hold {tables.store_bytes + size} bytes of "
                                                   f"models (limit {self.limits.max_store_bytes})")
        loaded = self.host.load_model(builders, encoding=encoding, target=target)
        return self._add_graph(loaded)

    def load_by_name(self, name: str, config: Mapping[str, Any] | None = None) -> int:
        """``load_by_name`` / ``load_by_name_with_config``: a model the embedder registered."""
        self._check_graph_room(self._check_open())  # before a variant is compiled
        # A guest's config variant is the store's own graph: its limits apply, unload releases it.
        return self._add_graph(self.host.load_named(name, config, share_variants=False))

    def graph(self, handle: int) -> LoadedGraph:
        loaded = self.tables.graphs.get(handle)
        if loaded is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown graph handle {handle}")
        return loaded

    def context(self, handle: int) -> ContextEntry:
        entry = self.tables.contexts.get(handle)
        if entry is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown execution context handle {handle}")
        return entry

    def init_execution_context(self, graph_handle: int) -> int:
        tables = self._check_open()
        loaded = self.graph(graph_handle)
        if len(tables.contexts) >= self.limits.max_contexts_per_store:
            raise WasiNnError(ErrorCode.BUSY, f"store already holds {len(tables.contexts)} contexts "
                                              f"(limit {self.limits.max_contexts_per_store})")
        backend = loaded.backend
        context = call_backend(backend, "init_execution_context", backend.hooks["init_execution_context"],
                               loaded.graph)
        if not isinstance(context, Context):
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"backend {backend.name}: init_execution_context "
                                                       f"returned {type(context).__name__}, not Context")
        budget = ContextBudget(self.limits.max_runtime_bytes_per_context, tables.budget)
        try:
            context.budget.move_to(budget)  # what the backend held while creating the context
        except WasiNnError:
            finalize = backend.hook("finalize_execution_context")
            if finalize is not None:
                call_backend(backend, "finalize_execution_context", finalize, context)
            raise
        context.budget = budget
        entry = ContextEntry(
            loaded=loaded,
            context=context,
            set_input=backend.hooks["set_input"],
            compute=backend.hooks["compute"],
            get_output=backend.hooks["get_output"],
            input_count=len(loaded.graph.inputs),
            output_count=len(loaded.graph.outputs),
            compute_single=backend.hook("compute_single"),
            get_output_single=backend.hook("get_output_single"),
            fini_single=backend.hook("fini_single"),
        )
        handle = tables.next_context
        tables.next_context += 1
        tables.contexts[handle] = entry
        return handle

    def check_input(self, entry: ContextEntry, index: int, dtype: TensorType, dims: Sequence[int],
                    data_len: int) -> None:
        """The checks every input passes before a backend sees it."""
        if entry.input_count and not 0 <= index < entry.input_count:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input index {index} out of range: the model has "
                                                          f"{entry.input_count} input(s)")
        expected = element_count(dims) * dtype.itemsize
        if expected != data_len and not _any_length(entry, index):
            shape = "x".join(str(d) for d in dims) or "scalar"
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {index}: {data_len} bytes of data but "
                                                          f"{dtype.value}[{shape}] needs {expected}")
        if data_len > self.limits.max_tensor_bytes:
            raise WasiNnError(ErrorCode.TOO_LARGE, f"input {index} of {data_len} bytes exceeds the limit "
                                                   f"of {self.limits.max_tensor_bytes} bytes")

    def set_input(self, context_handle: int, index: int, tensor: Tensor) -> None:
        entry = self.context(context_handle)
        self.check_input(entry, index, tensor.dtype, tensor.shape, len(tensor.data))
        self.run_set_input(entry, index, tensor)

    def run_set_input(self, entry: ContextEntry, index: int, tensor: Tensor) -> None:
        """Hand a checked input to the backend (under the graph's lock)."""
        with entry.loaded.lock:
            call_backend(entry.loaded.backend, "set_input", entry.set_input, entry.context, index, tensor)

    def compute(self, context_handle: int) -> None:
        entry = self.context(context_handle)
        with entry.loaded.lock:
            call_backend(entry.loaded.backend, "compute", entry.compute, entry.context)

    def get_output(self, context_handle: int, index: int) -> np.ndarray:
        """The output as a C-contiguous ndarray the caller may keep (a copy where the backend
        serialises its contexts: its buffer may be reused as soon as the graph's lock is released)."""
        serialised = not isinstance(self.context(context_handle).loaded.lock, nullcontext)
        return self.read_output(context_handle, index, np.array if serialised else _identity)

    def read_output(self, context_handle: int, index: int, consume: Callable[[np.ndarray], _R], *,
                    step: bool = False) -> _R:
        """Hand output ``index`` (C-contiguous, possibly a view of the runtime's buffer) to ``consume``
        while the graph's lock is held, so that no other context of the graph can overwrite it.

        ``step``: the output of the last ``compute_single`` step (``get_output_single``), not of
        ``compute``; the same outputs, indices and checks.
        """
        entry = self.context(context_handle)
        if step:
            hook_name, what = "get_output_single", "step output"
            hook = self._streaming(entry, hook_name, entry.get_output_single)
        else:
            hook_name, what, hook = "get_output", "output", entry.get_output
        if entry.output_count and not 0 <= index < entry.output_count:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"{what} index {index} out of range: the model has "
                                                          f"{entry.output_count} output(s)")
        with entry.loaded.lock:
            result = call_backend(entry.loaded.backend, hook_name, hook, entry.context, index)
            if not isinstance(result, np.ndarray):
                raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"backend {entry.loaded.backend.name}: {hook_name} "
                                                           f"returned {type(result).__name__}, not an ndarray")
            if result.nbytes > self.limits.max_tensor_bytes:
                raise WasiNnError(ErrorCode.TOO_LARGE, f"output {index} of {result.nbytes} bytes exceeds the "
                                                       f"limit of {self.limits.max_tensor_bytes} bytes")
            return consume(result if result.flags.c_contiguous else np.ascontiguousarray(result))

    def unload(self, graph_handle: int) -> None:
        """Drop a graph handle. Contexts made from it stay usable until finalized."""
        tables = self._check_open()
        loaded = tables.graphs.pop(graph_handle, None)
        if loaded is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown graph handle {graph_handle}")
        _release_if_unused(tables, loaded)

    # -- streaming (WasmEdge's compute_single / get_output_single / fini_single) ----------------
    def _streaming(self, entry: ContextEntry, operation: str, hook: Callable[..., Any] | None) -> Callable[..., Any]:
        if hook is None:
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"backend {entry.loaded.backend.name} does not "
                                                               f"stream ({operation} is not implemented)")
        return hook

    def compute_single(self, context_handle: int) -> None:
        """One step of a step-wise computation (one generated token)."""
        entry = self.context(context_handle)
        hook = self._streaming(entry, "compute_single", entry.compute_single)
        with entry.loaded.lock:
            call_backend(entry.loaded.backend, "compute_single", hook, entry.context)

    def get_output_single(self, context_handle: int, index: int) -> np.ndarray:
        """The last step's output as an ndarray the caller may keep."""
        return self.read_output(context_handle, index, np.array, step=True)

    def fini_single(self, context_handle: int) -> None:
        """End a step-wise computation."""
        entry = self.context(context_handle)
        hook = self._streaming(entry, "fini_single", entry.fini_single)
        with entry.loaded.lock:
            call_backend(entry.loaded.backend, "fini_single", hook, entry.context)

    def finalize_execution_context(self, context_handle: int) -> None:
        tables = self._check_open()
        entry = tables.contexts.pop(context_handle, None)
        if entry is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown execution context handle {context_handle}")
        _finalize_context(entry)
        _release_if_unused(tables, entry.loaded)


def _any_length(entry: ContextEntry, index: int) -> bool:
    inputs = entry.loaded.graph.inputs
    return 0 <= index < len(inputs) and inputs[index].any_length
