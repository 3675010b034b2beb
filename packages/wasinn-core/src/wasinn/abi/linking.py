"""Putting the wasi-nn imports into a ``wasmtime.Linker``, choosing a module's numbering profile and
instantiating it in a store (:meth:`WasiNnHost.add_to_linker` and :meth:`WasiNnHost.instantiate`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import wasmtime

from wasinn.abi import entry, ephemeral, wamr_legacy
from wasinn.abi.memory import CachedMemory
from wasinn.abi.profiles import DEFAULT_PROFILE, PROFILES, AbiProfile
from wasinn.abi.state import store_state
from wasinn.errors import ConfigurationError

if TYPE_CHECKING:
    from wasinn.service.loader import GraphLoader

log = logging.getLogger("wasinn.abi")

EPHEMERAL_MODULE = "wasi_ephemeral_nn"
LEGACY_MODULE = "wasi_nn"
WASMEDGE_ONLY_IMPORTS = frozenset({"compute_single", "get_output_single", "fini_single"})


def define_imports(host: GraphLoader, linker: wasmtime.Linker) -> None:
    """Define every wasi-nn import wasinn serves. The functions find their store's state through
    the caller, so one linker serves any number of stores of ``host``."""
    del host  # state is per store; kept in the signature so the API can grow host-wide options
    for name, (arity, function) in ephemeral.FUNCTIONS.items():
        entry.define(linker, EPHEMERAL_MODULE, name, arity, function)
    for name, (arity, function) in wamr_legacy.FUNCTIONS.items():
        entry.define(linker, LEGACY_MODULE, name, arity, function)


def choose_profile(module: wasmtime.Module) -> AbiProfile:
    """Infer the numbering profile from the module's imports, where they are decisive."""
    names = {(imp.module, imp.name) for imp in module.imports}
    if any(mod == LEGACY_MODULE for mod, _ in names):
        return PROFILES["wamr-legacy"]
    ephemeral_names = {name for mod, name in names if mod == EPHEMERAL_MODULE}
    if ephemeral_names & WASMEDGE_ONLY_IMPORTS:
        return PROFILES["wasmedge"]
    return PROFILES[DEFAULT_PROFILE]


def check_imports(module: wasmtime.Module) -> None:
    """Fail with a message naming the import when a module wants a wasi-nn function we lack."""
    for imp in module.imports:
        known = {EPHEMERAL_MODULE: ephemeral.FUNCTIONS, LEGACY_MODULE: wamr_legacy.FUNCTIONS}.get(imp.module)
        if known is None:
            continue
        if imp.name not in known:
            raise ConfigurationError(f"the module imports {imp.module}::{imp.name}, which wasinn does not provide "
                                     f"(it provides: {', '.join(sorted(known))})")
        ty = imp.type
        arity = known[imp.name][0]
        if not isinstance(ty, wasmtime.FuncType) or len(ty.params) != arity or len(ty.results) != 1:
            raise ConfigurationError(f"the module imports {imp.module}::{imp.name} with signature {ty}, "
                                     f"but wasinn defines it as {arity} i32 parameters returning i32")


def prepare_module(store: wasmtime.Store, module: wasmtime.Module) -> None:
    """Check the imports and set the store's profile, unless one was forced."""
    check_imports(module)
    state = store_state(store)
    if state.profile_forced:
        log.info("ABI profile %s (forced)", state.profile.name if state.profile else DEFAULT_PROFILE)
        return
    profile = choose_profile(module)
    state.profile = profile
    log.info("ABI profile %s (%s), inferred from the module's imports", profile.name, profile.description)


def instantiate(store: wasmtime.Store, linker: wasmtime.Linker, module: wasmtime.Module) -> wasmtime.Instance:
    """Prepare ``module`` (:func:`prepare_module`), instantiate it, and cache its memory while it is the
    store's only instance."""
    prepare_module(store, module)
    instance = linker.instantiate(store, module)
    state = store_state(store)
    state.instances += 1
    memory = instance.exports(store).get("memory") if state.instances == 1 else None
    state.memory = CachedMemory(memory) if isinstance(memory, wasmtime.Memory) else None
    return instance
