"""Memory a runtime holds on a guest's behalf, counted per execution context and per store.

Model bytes are counted by the store (``Limits.max_store_bytes``), but a runtime can allocate far
more than the model's size on the guest's behalf: an LLM's KV cache grows with the context size, an
ONNX graph's intermediate tensors with the shapes it computes, and every context keeps its outputs.
Backends declare such memory *before* allocating it, by name::

    context.budget.hold("kv-cache", n_ctx * bytes_per_token)   # raises TOO_LARGE past the limits
    ...
    context.budget.hold("kv-cache", 0)                         # freed

The core gives every context it creates a budget bound to its store (``Limits.max_runtime_bytes_per_
context`` and ``max_runtime_bytes_per_store``) and releases whatever is still held when the context is
finalized, so a backend never has to. A context made outside a store (the conformance kit, direct
calls) gets a budget of its own with the default per-context limit.
"""

from __future__ import annotations

import threading

from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError
from wasinn.limits import Limits


def _size(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.1f} MiB" if nbytes >= 1 << 20 else f"{nbytes} bytes"


class StoreBudget:
    """The runtime memory one store's contexts hold together."""

    def __init__(self, limit: int, source: str = "Limits.max_runtime_bytes_per_store") -> None:
        self.limit = limit
        #: What sets ``limit``, for the error message (a worker's budget is its memory cap).
        self.source = source
        self.held = 0
        self.lock = threading.Lock()


class ContextBudget:
    """The runtime memory one execution context holds, by name (``"kv-cache"``, ``"outputs"`` ...)."""

    def __init__(self, limit: int | None = None, store: StoreBudget | None = None) -> None:
        self.limit = Limits().max_runtime_bytes_per_context if limit is None else limit
        self.store = store
        self._held: dict[str, int] = {}
        self._lock = store.lock if store is not None else threading.Lock()

    @property
    def held(self) -> int:
        """Bytes this context holds now, all names together."""
        return sum(self._held.values())

    def holding(self, name: str) -> int:
        return self._held.get(name, 0)

    def hold(self, name: str, nbytes: int) -> None:
        """Set what this context holds under ``name`` to ``nbytes`` (replacing the previous amount).

        Raises ``WasiNnError(TOO_LARGE)`` and changes nothing when the context's or the store's limit
        would be exceeded. Call it before the runtime allocates, with an upper bound of what it will.
        """
        if nbytes < 0:
            raise ValueError(f"cannot hold {nbytes} bytes")
        with self._lock:
            change = nbytes - self._held.get(name, 0)
            total = self.held + change
            if change > 0 and total > self.limit:
                raise WasiNnError(ErrorCode.TOO_LARGE, f"{name} needs {_size(nbytes)}: the context would hold "
                                                       f"{_size(total)} of runtime memory (limit "
                                                       f"{_size(self.limit)}, Limits.max_runtime_bytes_per_context)")
            store = self.store
            if store is not None and change > 0 and store.held + change > store.limit:
                raise WasiNnError(ErrorCode.TOO_LARGE, f"{name} needs {_size(nbytes)}: the store's contexts would "
                                                       f"hold {_size(store.held + change)} of runtime memory (limit "
                                                       f"{_size(store.limit)}, {store.source})")
            if nbytes:
                self._held[name] = nbytes
            else:
                self._held.pop(name, None)
            if store is not None:
                store.held += change

    def release(self) -> None:
        """Give back everything this context holds (the core calls it when the context goes)."""
        with self._lock:
            if self.store is not None:
                self.store.held -= self.held
            self._held.clear()

    def move_to(self, other: ContextBudget) -> None:
        """Charge what this budget holds to ``other`` instead (the core does this for what a backend
        held during ``init_execution_context``, before the store's budget was attached)."""
        for name, nbytes in list(self._held.items()):
            other.hold(name, other.holding(name) + nbytes)
        self.release()
