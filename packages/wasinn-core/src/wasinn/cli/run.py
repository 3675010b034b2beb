"""``wasinn run``: a WASI preview1 runner with wasi-nn served by wasinn (components: :mod:`wasinn.cli.component`)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import wasmtime

from wasinn.cli.common import TRAP_EXIT_STATUS as TRAP_EXIT_STATUS
from wasinn.cli.options import (
    parse_dir,
    parse_env,
    parse_nn_graph,
    parse_nn_preload,
    parse_nn_remotes,
    parse_prefer,
    parse_target,
)
from wasinn.errors import ConfigurationError
from wasinn.host.host import WasiNnHost
from wasinn.limits import Limits

log = logging.getLogger("wasinn.cli")


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """A progress spinner on stderr while a model loads, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    started = time.perf_counter()

    def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            if done.wait(0.1):
                break
            sys.stderr.write(f"\r{frame} {message} ({time.perf_counter() - started:.1f} s)")
            sys.stderr.flush()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def load_module(engine: wasmtime.Engine, path: Path) -> wasmtime.Module:
    if not path.is_file():
        raise ConfigurationError(f"{path} is not a file")
    try:
        if path.suffix == ".wat":
            return wasmtime.Module(engine, path.read_text())
        return wasmtime.Module.from_file(engine, str(path))
    except wasmtime.WasmtimeError as exc:
        raise ConfigurationError(f"{path} is not a valid WebAssembly module: {exc}") from None


def run_command(args: argparse.Namespace) -> int:
    prefer: dict[str, list[str]] = {}
    for item in args.prefer:
        key, names = parse_prefer(item)
        prefer[key] = names
    limits = Limits(allow_guest_code=bool(args.allow_guest_code), guest_models=args.guest_models)
    host = WasiNnHost(backend=args.backend, prefer=prefer, abi=args.abi, limits=limits)
    if args.guest_models == "isolate":
        from wasinn.worker import isolation_missing
        missing = isolation_missing()
        if missing:  # said at startup, not first at the guest's first load
            logging.getLogger("wasinn").warning("a guest's models will run in workers without: %s", "; ".join(missing))
    host.load_progress = spinner
    default_target = parse_target(args.target) if args.target else None
    for flag in [parse_nn_graph(v) for v in args.nn_graph] + [parse_nn_preload(v) for v in args.nn_preload]:
        if flag.missing:
            log.warning("--nn-preload %s: %s does not exist; not registered (the guest's load of it gets "
                        "ModelNotFound)", flag.name, ", ".join(map(str, flag.missing)))
            continue
        host.register_model(flag.name, flag.paths, encoding=flag.encoding,
                            target=flag.target or default_target or "cpu")
    for name, (uri, options) in parse_nn_remotes(args.nn_remote, args.nn_remote_option).items():
        host.register_remote(name, uri, options=options, target=default_target or "cpu")

    config = wasmtime.Config()
    if args.fuel is not None:
        config.consume_fuel = True
    if args.timeout is not None:
        config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    from wasinn.component.detect import is_component
    if Path(args.module).is_file() and is_component(args.module):
        return _run_component(host, engine, args)
    module = load_module(engine, Path(args.module))
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    host.add_to_linker(linker)

    store = host.new_store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [Path(args.module).name, *args.args]
    wasi.env = [parse_env(item) for item in args.env]
    for item in args.dir:
        host_dir, guest_dir = parse_dir(item)
        wasi.preopen_dir(host_dir, guest_dir)
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    if args.fuel is not None:
        store.set_fuel(args.fuel)
    if args.max_memory is not None:
        store.set_limits(memory_size=args.max_memory)
    timer = None
    if args.timeout is not None:
        store.set_epoch_deadline(1)
        timer = threading.Timer(args.timeout, engine.increment_epoch)
        timer.daemon = True
        timer.start()
    try:
        instance = host.instantiate(store, linker, module)
        start = instance.exports(store).get("_start")
        if not isinstance(start, wasmtime.Func):
            raise ConfigurationError(f"{args.module} has no _start function: is it a WASI command?")
        start(store)
        return 0
    except wasmtime.ExitTrap as exit_trap:
        return int(exit_trap.code)
    except wasmtime.Trap as trap:
        print(f"wasinn: error: the guest trapped: {trap.message}", file=sys.stderr)
        return TRAP_EXIT_STATUS
    except wasmtime.WasmtimeError as exc:
        raise ConfigurationError(f"cannot instantiate {args.module}: {exc}") from None
    finally:
        if timer is not None:
            timer.cancel()
        sys.stdout.flush()
        store.close()
        host.close()


def _run_component(host: WasiNnHost, engine: wasmtime.Engine, args: argparse.Namespace) -> int:
    """A component: its ``wasi:cli/run`` export, with WASIp2 from wasmtime-py (see docs/components.md)."""
    from wasinn.cli.component import run_component
    if args.abi is not None:
        host.close()
        raise ConfigurationError(f"--abi {args.abi}: numbering profiles are for core modules; "
                                 f"{args.module} is a component (wasi:nn WIT has one numbering)")
    timer = None
    if args.timeout is not None:
        timer = threading.Timer(args.timeout, engine.increment_epoch)
        timer.daemon = True
    try:
        return run_component(host, engine, Path(args.module), args.args,
                             env=[parse_env(item) for item in args.env],
                             dirs=[parse_dir(item) for item in args.dir],
                             fuel=args.fuel, max_memory=args.max_memory, timer=timer)
    finally:
        if timer is not None:
            timer.cancel()
        host.close()
