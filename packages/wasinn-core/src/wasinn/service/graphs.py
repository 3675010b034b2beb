"""A graph as the host holds it, and how every backend hook is called."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError
from wasinn.hookspecs import Graph
from wasinn.plugins import Backend

log = logging.getLogger("wasinn")


def call_backend(backend: Backend, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a backend hook; anything but a WasiNnError becomes ``runtime_error``.

    The error's message names the exception; the ABI logs it once, through the store's rate-limited
    :class:`~wasinn.guestlog.GuestLog` (a guest decides how often its calls fail).
    """
    try:
        return fn(*args)
    except WasiNnError:
        raise
    except Exception as exc:
        log.debug("backend %s: %s failed", backend.name, hook, exc_info=exc)
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"backend {backend.name}: {hook} failed: "
                                                   f"{type(exc).__name__}: {exc}") from None


@dataclass(eq=False)
class LoadedGraph:
    """A graph as the host holds it: the backend that owns it and its hook functions, resolved once."""

    backend: Backend
    graph: Graph
    description: str
    model_bytes: int
    shared: bool  # a named model's graph, owned by the host rather than a store
    lock: AbstractContextManager[Any] = field(default_factory=nullcontext)
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        unload = self.backend.hook("unload")
        if unload is not None:
            try:
                unload(graph=self.graph)
            except Exception as exc:
                log.warning("backend %s: unload failed: %s", self.backend.name, exc)


def graph_lock(concurrent: bool) -> AbstractContextManager[Any]:
    """A per-graph lock for backends whose contexts must not run concurrently."""
    return nullcontext() if concurrent else threading.Lock()
