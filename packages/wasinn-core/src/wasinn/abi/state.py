"""Per-store state of a core-module guest: the shared tables and operations, plus what only the
witx ABI needs (the guest's numbering profile, its memory, the per-context input checks).

The graphs, contexts, limits, runtime budget and guest log are :class:`~wasinn.service.store.StoreService`'s,
the same as a component store's; this class adds the numbering profile the store's module was prepared
with (:mod:`wasinn.abi.profiles`), the tensor-type corrections logged so far, the cached guest memory
(:class:`~wasinn.abi.memory.CachedMemory`) and how many instances the store holds.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from wasinn.abi.profiles import DEFAULT_PROFILE, PROFILES, AbiProfile
from wasinn.enums import ErrorCode, TensorType
from wasinn.errors import ConfigurationError, WasiNnError
from wasinn.service.graphs import call_backend
from wasinn.service.loader import GraphLoader
from wasinn.service.store import ContextEntry, StoreService
from wasinn.tensor import checked_tensor, element_count

if TYPE_CHECKING:
    import wasmtime

    from wasinn.abi.memory import CachedMemory, GuestMemory

log = logging.getLogger("wasinn.abi")

MAX_CHECKED_SIGNATURES = 16  # per context: input signatures whose checks passed (bounded memory)


class StoreState(StoreService):
    """The wasi-nn state of one wasmtime store, kept as the store's data (``store.data()``).

    ``user_data`` carries the embedder's own store data, if any.
    """

    def __init__(self, host: GraphLoader, profile: AbiProfile | None = None, user_data: Any = None,
                 *, profile_forced: bool = False) -> None:
        super().__init__(host, user_data)
        #: The guest's numbering; ``None`` until a module is prepared (then the default, witx).
        self.profile: AbiProfile | None = profile
        #: True when the embedder or ``--abi`` chose the profile: no inference, no corrections.
        self.profile_forced = profile_forced
        self.corrections_logged: set[str] = set()
        #: The guest's exported memory, cached by ``WasiNnHost.instantiate`` to spare a lookup per
        #: call; only while the store holds a single instance (a second one turns the cache off).
        self.memory: CachedMemory | None = None
        self.instances = 0

    def set_guest_input(self, entry: ContextEntry, index: int, type_number: int, dims: tuple[int, ...],
                        memory: GuestMemory, data_ptr: int, data_len: int) -> None:
        """A witx ``set_input``: the guest's tensor record, read, checked and handed to the backend.

        A guest sends the same tensor signature on every inference: its checks run once per context
        and the signature is kept (at most :data:`MAX_CHECKED_SIGNATURES` of them).
        """
        signature = (index, type_number, dims, data_len)
        dtype = entry.checked_inputs.get(signature)
        if dtype is None:
            dtype = resolve_tensor_type(self, entry, index, type_number, dims, data_len)
            self.check_input(entry, index, dtype, dims, data_len)
            if len(entry.checked_inputs) >= MAX_CHECKED_SIGNATURES:
                entry.checked_inputs.clear()
            entry.checked_inputs[signature] = dtype
        tensor = checked_tensor(dtype, dims, memory.view(data_ptr, data_len, "tensor data"))
        with entry.loaded.lock:
            call_backend(entry.loaded.backend, "set_input", entry.set_input, entry.context, index, tensor)


def store_state(store: wasmtime.Store) -> StoreState:
    """The wasi-nn state of a store made by :meth:`WasiNnHost.new_store`."""
    data = store.data()
    if not isinstance(data, StoreState):
        raise ConfigurationError("this store was not created by WasiNnHost.new_store()")
    return data


def profile_of(state: StoreState) -> AbiProfile:
    return state.profile or PROFILES[DEFAULT_PROFILE]


def resolve_tensor_type(state: StoreState, entry: ContextEntry, index: int, number: int,
                        dims: tuple[int, ...], data_len: int, profile: AbiProfile | None = None) -> TensorType:
    """The guest's tensor type number, read by its profile, corrected where the data says so.

    Guests built against older numberings (``u8 = 2`` before 2023) send numbers that mean something
    else today. If exactly one of the profile's known readings fits the tensor's byte length and the
    model's declared input type, that reading wins (and the correction is logged once per store).
    """
    profile = profile or profile_of(state)
    primary = profile.tensor_types.get(number)
    if state.profile_forced or not profile.tensor_type_alternates:
        if primary is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown tensor type {number} "
                                                          f"(ABI profile {profile.name})")
        return primary
    spec = entry.loaded.graph.inputs[index].dtype if index < entry.input_count else None
    count = element_count(dims)
    if primary is not None and count * primary.itemsize == data_len and spec in (None, primary):
        return primary  # the common case: the profile's reading fits; no need to consider others
    readings: list[tuple[str, TensorType]] = []
    for name in (profile.name, *profile.tensor_type_alternates):
        reading = PROFILES[name].tensor_types.get(number)
        if reading is not None and reading not in (r for _, r in readings):
            readings.append((name, reading))
    fitting = [(name, r) for name, r in readings if count * r.itemsize == data_len]
    if spec is not None and any(r is spec for _, r in fitting):
        fitting = [(name, r) for name, r in fitting if r is spec]
    if primary is not None and any(r is primary for _, r in fitting):
        return primary
    if len(fitting) == 1:
        name, reading = fitting[0]
        key = f"{number}->{reading.value}"
        if key not in state.corrections_logged:
            state.corrections_logged.add(key)
            was = primary.value if primary else "nothing"
            log.info("tensor type %d read as %s (ABI profile %s), not %s (profile %s): only that fits the "
                     "data length and the model input", number, reading.value, name, was, profile.name)
        return reading
    if primary is None:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"unknown tensor type {number} (ABI profile {profile.name})")
    return primary
