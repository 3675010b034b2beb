#!/usr/bin/env python3
"""MB/s of tensor data across the guest boundary: the component path against the witx path.

One inference per measurement on the test backend ``fake`` (an identity model on u8[N], so the
backend's own work is a numpy copy): the guest sends N bytes and reads N bytes back.

* component, fast:     guests/component/probe ``bulk N R`` with wasinn's list<u8> trampoline
* component, portable: the same with WASINN_COMPONENT_LISTS=portable semantics (wasmtime-py's add_func)
* witx:                wasinn's trampoline guest: set_input + compute + get_output on the same model

MB/s counts both directions (2N bytes per inference), best of ``--repeat``, after one warm-up; the
component's per-inference time excludes its load (see component_seconds), as the witx one does.
A size the runtime refuses is reported as such (wasmtime's hostcall fuel, see
component_list_repro.py). Run by hand, from the repository root, in an env with wasinn-core and
wasinn-test-backends (``tox -e core`` has both)::

    .tox/core/bin/python benchmarks/component_transfer.py [--max-mib 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
from pathlib import Path

os.environ.setdefault("WASINN_BACKENDS", "fake")

import wasmtime
from wasmtime.component import Component, Linker

import wasinn
from wasinn.component.interface import define_interfaces
from wasinn.testing.guest import TrampolineGuest
from wasinn_test_backends import make_model

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "guests" / "component" / "probe" / "probe.wasm"


def identity(n: int) -> bytes:
    spec = {"name": "x", "dtype": "u8", "shape": [n]}
    return make_model({"inputs": [spec], "outputs": [{**spec, "name": "y"}], "scale": 1, "bias": 0})


def component_seconds(host: wasinn.WasiNnHost, engine: wasmtime.Engine, component: Component, mode: str,
                      n: int, repeat: int, rounds: int) -> float | str:
    """Seconds per inference: the probe's ``bulk N R`` loads once and runs R inferences; the time of
    R = 1 + rounds minus that of R = 1 (best of ``repeat`` each), over ``rounds``."""
    linker = Linker(engine)
    define_interfaces(linker, mode=mode)
    model = identity(n)
    store = host.new_component_store(engine)  # a trap poisons the instance: a store per measurement
    try:
        instance = linker.instantiate(store, component)
        probe = instance.get_func(store, "probe")
        assert probe is not None

        def timed(count: int) -> float:
            started = time.perf_counter()
            answer = probe(store, f"bulk {n} {count}", model)
            elapsed = time.perf_counter() - started
            probe.post_return(store)
            if answer != f"ok {n}":
                raise RuntimeError(answer)
            return elapsed

        timed(1)  # warm-up
        one = min(timed(1) for _ in range(repeat))
        many = min(timed(1 + rounds) for _ in range(repeat))
        return max(many - one, 1e-9) / rounds
    except wasmtime.WasmtimeError as exc:
        text = str(exc)
        return "refused: hostcall fuel" if "too much data" in text else f"failed: {text.splitlines()[-1]}"
    except RuntimeError as exc:
        return f"failed: {exc}"
    finally:
        store.close()


def witx_seconds(host: wasinn.WasiNnHost, n: int, repeat: int) -> float | str:
    guest = TrampolineGuest(host)
    try:
        graph = guest.load([identity(n)])
        assert graph.ok and graph.value is not None, graph
        ctx = guest.init_execution_context(graph.value)
        assert ctx.ok and ctx.value is not None, ctx
        record = guest.tensor_record(bytes(i & 0xFF for i in range(n)), [n], 3)  # witx u8 = 3
        out, written = guest.alloc(max(n, 1)), guest.alloc(4)
        best = float("inf")
        for attempt in range(repeat + 1):
            started = time.perf_counter()
            errnos = (guest.call("set_input", ctx.value, 0, record), guest.call("compute", ctx.value),
                      guest.call("get_output", ctx.value, 0, out, n, written))
            elapsed = time.perf_counter() - started
            if any(errnos) or struct.unpack("<I", guest.read(written, 4))[0] != n:
                return f"failed: errnos {errnos}"
            if attempt:
                best = min(best, elapsed)
        return best
    finally:
        guest.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-mib", type=float, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="inferences per timed component call, beyond one")
    parser.add_argument("--portable-max-mib", type=float, default=1,
                        help="largest size for the slow portable path (about 1 MB/s)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    sizes = [1 << 10, 16 << 10, 256 << 10, 1 << 20, 2 << 20, int(2.5 * (1 << 20)), int(2.75 * (1 << 20)),
             4 << 20, 16 << 20]
    sizes = [s for s in sizes if s <= args.max_mib * (1 << 20)]
    engine = wasmtime.Engine()
    component = Component.from_file(engine, str(PROBE))
    rows = []
    from importlib.metadata import version
    print(f"wasmtime-py {version('wasmtime')}; MB/s = 2N bytes per inference / best time")
    print(f"{'size':>10} | {'component fast':>18} | {'component portable':>18} | {'witx':>12} | fast/witx")
    with wasinn.WasiNnHost() as host:
        for n in sizes:
            fast = component_seconds(host, engine, component, "fast", n, args.repeat, args.rounds)
            portable: float | str = "skipped"
            if n <= args.portable_max_mib * (1 << 20):
                portable = component_seconds(host, engine, component, "portable", n, 1, 1)
            witx = witx_seconds(host, n, args.repeat)

            def rate(value: float | str, n: int = n) -> str:
                return f"{2 * n / value / 1e6:10.1f} MB/s" if isinstance(value, float) else value

            ratio = f"{witx / fast:.3f}" if isinstance(fast, float) and isinstance(witx, float) else "-"
            label = f"{n / (1 << 20):.2f} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"
            print(f"{label:>10} | {rate(fast):>18} | {rate(portable):>18} | {rate(witx):>12} | {ratio}")
            rows.append({"bytes": n, "component_fast_s": fast, "component_portable_s": portable, "witx_s": witx})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
