"""``wasinn run`` of a component: its ``wasi:cli/run`` export, with WASIp2 from wasmtime-py and ``wasi:nn``
from wasinn (core modules: :mod:`wasinn.cli.run`)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import wasmtime
from wasmtime.component import Component, Linker, Variant

from wasinn.cli.common import TRAP_EXIT_STATUS as TRAP_EXIT_STATUS
from wasinn.errors import ConfigurationError
from wasinn.host.host import WasiNnHost

RUN_INTERFACE = "wasi:cli/run@0.2.0"


def load_component(engine: wasmtime.Engine, path: Path) -> Component:
    if not path.is_file():
        raise ConfigurationError(f"{path} is not a file")
    try:
        if path.suffix == ".wat":
            return Component(engine, path.read_text())
        return Component.from_file(engine, str(path))
    except wasmtime.WasmtimeError as exc:
        raise ConfigurationError(f"{path} is not a valid WebAssembly component: {exc}") from None


def run_export(store: wasmtime.Store, instance: wasmtime.component.Instance, what: str) -> None:
    """Call ``wasi:cli/run.run``; a guest's ``Err`` is exit status 1 (as in Wasmtime's CLI)."""
    interface = instance.get_export_index(store, RUN_INTERFACE)
    index = instance.get_export_index(store, "run", interface) if interface is not None else None
    func = instance.get_func(store, index) if index is not None else None
    if func is None:
        raise ConfigurationError(f"{what} does not export {RUN_INTERFACE} (is it a command component?)")
    result = func(store)
    func.post_return(store)
    # result (no payloads) lifts to Variant('ok') or Variant('err')
    if isinstance(result, Variant) and result.tag != "ok":
        raise _GuestFailed()


class _GuestFailed(Exception):
    """The guest's run returned ``Err``."""


def run_component(host: WasiNnHost, engine: wasmtime.Engine, path: Path, args: Sequence[str], *,
                  env: Sequence[tuple[str, str]] = (), dirs: Sequence[tuple[str, str]] = (),
                  fuel: int | None = None, max_memory: int | None = None,
                  timer: threading.Timer | None = None) -> int:
    """Instantiate the component at ``path`` and run it; returns its exit status (0, the guest's
    ``exit(n)``, 1 for ``run`` returning ``Err``, 134 for a trap)."""
    component = load_component(engine, path)
    linker = Linker(engine)
    linker.add_wasip2()
    host.add_to_component_linker(linker)
    store = host.new_component_store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [path.name, *args]
    wasi.env = [list(pair) for pair in env]
    for host_dir, guest_dir in dirs:
        wasi.preopen_dir(host_dir, guest_dir)
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    if fuel is not None:
        store.set_fuel(fuel)
    if max_memory is not None:
        store.set_limits(memory_size=max_memory)
    if timer is not None:  # --timeout: the engine was made with epoch interruption
        store.set_epoch_deadline(1)
        timer.start()
    try:
        try:
            instance = linker.instantiate(store, component)
        except wasmtime.WasmtimeError as exc:
            if isinstance(exc, wasmtime.Trap | wasmtime.ExitTrap):
                raise
            raise ConfigurationError(f"cannot instantiate {path}: {exc}") from None
        run_export(store, instance, str(path))
        return 0
    except _GuestFailed:
        return 1
    except wasmtime.ExitTrap as exit_trap:
        return int(exit_trap.code)
    except wasmtime.WasmtimeError as exc:
        print(f"wasinn: error: the guest trapped: {exc}", file=sys.stderr)
        return TRAP_EXIT_STATUS
    finally:
        sys.stdout.flush()
        store.close()
