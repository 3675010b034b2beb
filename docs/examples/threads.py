"""Run one guest in several threads at once: one host, one store per thread.

    python docs/examples/threads.py THREADS NAME=MODEL DIR GUEST.wasm [GUEST_ARGS...]

The named model is compiled once and shared by every thread's store; each thread's guest makes its
own contexts. Prints each thread's exit status and output.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import wasmtime

import wasinn


def main(argv: list[str]) -> int:
    if len(argv) < 4 or "=" not in argv[1]:
        print(__doc__, file=sys.stderr)
        return 2
    threads = int(argv[0])
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("wasinn").setLevel(logging.INFO)  # one line per model compiled: here, one in all
    logging.getLogger("wasinn.abi").setLevel(logging.WARNING)
    name, _, model = argv[1].partition("=")
    data_dir, guest_path, guest_args = argv[2], argv[3], argv[4:]

    engine = wasmtime.Engine()
    module = wasmtime.Module.from_file(engine, guest_path)  # compiled once, used by every thread
    with wasinn.WasiNnHost() as host:
        host.register_model(name, model)  # compiled once, on first use, shared by every store
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        host.add_to_linker(linker)

        def worker(index: int) -> tuple[int, str]:
            store = host.new_store(engine)  # this thread's store: never touched by another thread
            with tempfile.TemporaryDirectory() as tmp:
                output = Path(tmp) / "stdout"
                wasi = wasmtime.WasiConfig()
                wasi.argv = [guest_path, *guest_args]
                wasi.preopen_dir(data_dir, "/data")
                wasi.stdout_file = str(output)
                wasi.inherit_stderr()
                store.set_wasi(wasi)
                instance = host.instantiate(store, linker, module)
                start = instance.exports(store)["_start"]
                assert isinstance(start, wasmtime.Func)
                try:
                    start(store)
                    status = 0
                except wasmtime.ExitTrap as exit_trap:
                    status = exit_trap.code
                finally:
                    store.close()
                return status, output.read_text()

        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(worker, range(threads)))

    for index, (status, text) in enumerate(results):
        print(f"thread {index}: status {status}: {text.strip()}")
    return max(status for status, _ in results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
