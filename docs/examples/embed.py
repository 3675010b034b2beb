"""Run a WASI guest with wasi-nn served by wasinn, from your own wasmtime-py program.

    python docs/examples/embed.py NAME=MODEL DIR GUEST.wasm [GUEST_ARGS...]

registers MODEL as NAME (the guest calls load_by_name(NAME)), lets the guest read DIR as /data, and
exits with the guest's exit status. For the digits demo:

    python docs/examples/embed.py digits=demo/models/digits.onnx demo/images guests/digits/digits.wasm --images /data
"""

from __future__ import annotations

import logging
import sys

import wasmtime

import wasinn


def run(model_name: str, model_path: str, data_dir: str, guest_path: str, guest_args: list[str]) -> int:
    engine = wasmtime.Engine()
    # One host serves any number of stores. It discovers the installed backends, and closing it
    # (the with block) releases the named models' shared graphs.
    with wasinn.WasiNnHost() as host:
        host.register_model(model_name, model_path)  # read and compiled on first use

        # One linker can serve every store of the host.
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        host.add_to_linker(linker)  # wasi_ephemeral_nn, and WAMR's legacy wasi_nn

        # The store's data is wasinn's per-store state: this guest's graphs and contexts.
        store = host.new_store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [guest_path, *guest_args]
        wasi.preopen_dir(data_dir, "/data")
        wasi.inherit_stdout()
        wasi.inherit_stderr()
        store.set_wasi(wasi)

        module = wasmtime.Module.from_file(engine, guest_path)
        instance = host.instantiate(store, linker, module)  # chooses the guest's ABI numbering
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
            status = 0  # _start returned: exit status 0
        except wasmtime.ExitTrap as exit_trap:
            status = exit_trap.code  # the guest called exit()
        finally:
            state = host.state(store)
            print(f"embed: the guest still holds {state.graph_count} graph(s) and {state.context_count} "
                  "context(s); closing the store releases them", file=sys.stderr)
            del state  # holding the state would keep it alive past store.close()
            store.close()
        return status


def main(argv: list[str]) -> int:
    if len(argv) < 3 or "=" not in argv[0]:
        print(__doc__, file=sys.stderr)
        return 2
    # wasinn logs through the standard logging module: show which backend runs each model, and why.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("wasinn").setLevel(logging.INFO)
    name, _, model = argv[0].partition("=")
    return run(name, model, argv[1], argv[2], argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
