"""The embedder's entry point: :class:`WasiNnHost`, the only module that knows both guest ABIs.

The graph loader every ABI shares is :class:`~wasinn.service.loader.GraphLoader` (below both ABIs);
``WasiNnHost`` is that loader plus the two ways guests reach it: core modules through
``wasi_ephemeral_nn`` (:mod:`wasinn.abi`) and components through ``wasi:nn`` WIT
(:mod:`wasinn.component`). See ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import wasmtime

from wasinn.abi.state import StoreState, store_state
from wasinn.errors import ConfigurationError
from wasinn.hardware import Hardware
from wasinn.limits import Limits
from wasinn.service.loader import GraphLoader

# The ABI modules are imported by the methods that use them: a host that serves only core modules
# never imports wasmtime.component, and `wasinn explain` neither ABI.


class WasiNnHost(GraphLoader):
    """Serves ``wasi_ephemeral_nn`` to the guests of any number of stores.

    Typical use::

        host = wasinn.WasiNnHost()
        host.register_model("digits", "digits.onnx")
        linker = wasmtime.Linker(engine); linker.define_wasi(); host.add_to_linker(linker)
        store = host.new_store(engine)
        ...

    Parameters: ``backends`` adds backend objects by name (entry points are still discovered
    unless ``entry_points=False``); ``allow``/``deny`` override ``WASINN_BACKENDS`` /
    ``WASINN_DISABLE_BACKENDS``; ``backend`` forces one backend for every load; ``prefer`` maps an
    encoding (or ``"*"``) to backend names that win ties; ``hardware`` replaces the probed
    snapshot; ``limits`` caps what each store may hold; ``abi`` forces a numbering profile
    (default: chosen per module, see :mod:`wasinn.abi.profiles`).

    Models, ranking and loading are :class:`~wasinn.service.loader.GraphLoader`'s (``register_model``,
    ``rank``, ``explain`` ...); this class adds the stores and linkers of both ABIs.
    """

    def __init__(
        self,
        *,
        backends: Mapping[str, object] | None = None,
        entry_points: bool = True,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        backend: str | None = None,
        prefer: Mapping[str, Sequence[str]] | None = None,
        hardware: Hardware | None = None,
        limits: Limits | None = None,
        abi: str | None = None,
    ) -> None:
        if abi is not None:
            from wasinn.abi.profiles import get_profile
            get_profile(abi)  # fail fast on an unknown profile name
        super().__init__(backends=backends, entry_points=entry_points, allow=allow, deny=deny, backend=backend,
                         prefer=prefer, hardware=hardware, limits=limits)
        self.abi = abi

    # -- stores and linking (core modules, wasi_ephemeral_nn) --------------------------------------
    def new_store(self, engine: wasmtime.Engine | None = None, *, data: Any = None,
                  abi: str | None = None) -> wasmtime.Store:
        """A store whose data is this host's per-store state (your own ``data`` is kept as
        ``store.data().user_data``)."""
        store = wasmtime.Store(engine, data=self.new_state(data=data, abi=abi))
        return store

    def new_state(self, *, data: Any = None, abi: str | None = None) -> StoreState:
        from wasinn.abi.profiles import get_profile
        name = abi or self.abi
        return StoreState(self, profile=get_profile(name) if name else None, user_data=data,
                          profile_forced=name is not None)

    def add_to_linker(self, linker: wasmtime.Linker) -> None:
        """Define the ``wasi_ephemeral_nn`` (and legacy WAMR ``wasi_nn``) imports in ``linker``."""
        from wasinn.abi.linking import define_imports
        define_imports(self, linker)

    def instantiate(self, store: wasmtime.Store, linker: wasmtime.Linker, module: wasmtime.Module) -> wasmtime.Instance:
        """Choose the module's numbering profile (unless forced), check its wasi-nn imports and
        instantiate it.

        Instantiate every module of a store through this method (not ``linker.instantiate``): wasinn
        caches the guest's memory for a single-instance store, and must see a second instance to
        stop doing so.
        """
        from wasinn.abi.linking import instantiate
        return instantiate(store, linker, module)

    @staticmethod
    def state(store: wasmtime.Store) -> StoreState:
        """The wasi-nn state of a store made by :meth:`new_store`."""
        return store_state(store)

    # -- components (wasi:nn WIT) -----------------------------------------------------------------
    def new_component_store(self, engine: wasmtime.Engine | None = None, *, data: Any = None) -> wasmtime.Store:
        """A store for a component guest: its data is a :class:`~wasinn.component.state.ComponentState`
        (your own ``data`` is kept as ``store.data().user_data``)."""
        from wasinn.component.state import ComponentState
        return wasmtime.Store(engine, data=ComponentState(self, user_data=data))

    def add_to_component_linker(self, linker: Any, versions: Sequence[str] | None = None) -> None:
        """Define ``wasi:nn/{tensor,graph,inference,errors}`` in a ``wasmtime.component.Linker``
        (every version in :data:`wasinn.component.VERSIONS` unless ``versions`` says otherwise)."""
        from wasinn.component.interface import VERSIONS, define_interfaces
        unknown = [v for v in versions or () if v not in VERSIONS]
        if unknown:
            raise ConfigurationError(f"wasi:nn version(s) {', '.join(unknown)} are not served "
                                     f"(served: {', '.join(VERSIONS)})")
        define_interfaces(linker, tuple(versions) if versions else VERSIONS)

    def instantiate_component(self, store: wasmtime.Store, linker: Any, component: Any) -> Any:
        """Instantiate a component in a store made by :meth:`new_component_store`."""
        from wasinn.component.state import ComponentState
        if not isinstance(store.data(), ComponentState):
            raise ConfigurationError("this store was not created by WasiNnHost.new_component_store()")
        return linker.instantiate(store, component)

    def __enter__(self) -> WasiNnHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
