#!/usr/bin/env python3
"""Minimal reproduction, wasmtime-py only (no wasinn): a ``list<u8>`` across the component boundary.

A 30-line WAT component imports ``take: func(d: list<u8>) -> u32`` (guest -> host) and
``give: func(n: u32) -> list<u8>`` (host -> guest); its exports call them with N bytes. The host
side is defined three ways:

* ``add_func``: wasmtime-py's ``LinkerInstance.add_func`` (it converts every element in Python);
* ``raw C, ignore``: a ctypes callback of wasmtime's C API type that does *nothing* with the value
  (frees it; ``give`` returns an uninitialised-then-zeroed list of N u8 values). This is the floor:
  what wasmtime's C API costs for the list, with no Python per element;
* a size past about 2.67 MiB guest -> host: wasmtime refuses it (``too much data is being copied
  between the host and the guest``), its per-store *hostcall fuel* (128 MiB by default); the
  cut-off, between 2.6 and 2.7 MiB, is 128 MiB / 48 bytes, fuel spent per dynamically typed ``Val``
  (one per byte). wasmtime's C API (so wasmtime-py) has no setter for it.

Run: ``python benchmarks/component_list_repro.py [--max-mib 4]`` (any env with wasmtime>=51).
"""

from __future__ import annotations

import argparse
import ctypes
import time

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime.component import Component, Linker
from wasmtime.component._enter import catch_exceptions

WAT = r"""
(component
  (import "take" (func $take (param "d" (list u8)) (result u32)))
  (import "give" (func $give (param "n" u32) (result (list u8))))
  (core module $mem
    (memory (export "m") 1024)
    (global $next (mut i32) (i32.const 65536))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      global.get $next local.set $p
      global.get $next local.get 3 i32.add global.set $next
      local.get $p))
  (core instance $mi (instantiate $mem))
  (alias core export $mi "m" (core memory $m))
  (alias core export $mi "realloc" (core func $realloc))
  (core func $take_l (canon lower (func $take) (memory $m)))
  (core func $give_l (canon lower (func $give) (memory $m) (realloc $realloc)))
  (core module $main
    (import "h" "take" (func $take (param i32 i32) (result i32)))
    (import "h" "give" (func $give (param i32 i32)))
    (import "h" "m" (memory 1))
    (func (export "run-take") (param i32) (result i32)
      i32.const 65536 local.get 0 call $take)
    (func (export "run-give") (param i32) (result i32)
      local.get 0 i32.const 16 call $give
      i32.const 20 i32.load))
  (core instance $i (instantiate $main (with "h" (instance
      (export "take" (func $take_l)) (export "give" (func $give_l)) (export "m" (memory $m))))))
  (func (export "run-take") (param "n" u32) (result u32) (canon lift (core func $i "run-take")))
  (func (export "run-give") (param "n" u32) (result u32) (canon lift (core func $i "run-give")))
)
"""


def raw_take(env, context, ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    def run(store: object) -> None:
        n = int(args[0].of.list.size)
        ffi.wasmtime_component_vallist_delete(ctypes.byref(args[0].of.list))
        args[0].kind = ffi.WASMTIME_COMPONENT_BOOL.value
        results[0].kind = ffi.WASMTIME_COMPONENT_U32.value
        results[0].of.u32 = n

    return catch_exceptions(context, run)


def raw_give(env, context, ty, args, nargs, results, nresults):  # type: ignore[no-untyped-def]
    def run(store: object) -> None:
        n = int(args[0].of.u32)
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:  # kind U8 (2), value 0, for every element: one memset-like pass
            size = ctypes.sizeof(ffi.wasmtime_component_val_t)
            table = (ctypes.c_uint8 * (n * size)).from_address(ctypes.addressof(raw.data.contents))
            ctypes.memset(table, 0, n * size)
            view = memoryview(table).cast("B")
            view[0::size] = bytes([ffi.WASMTIME_COMPONENT_U8.value]) * n
        results[0].kind = ffi.WASMTIME_COMPONENT_LIST.value
        results[0].of.list = raw

    return catch_exceptions(context, run)


RAW_TAKE = ffi.wasmtime_component_func_callback_t(raw_take)
RAW_GIVE = ffi.wasmtime_component_func_callback_t(raw_give)
NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))


def linker_for(engine: wasmtime.Engine, way: str) -> Linker:
    linker = Linker(engine)
    with linker.root() as root:
        if way == "add_func":
            root.add_func("take", lambda store, data: len(data))
            root.add_func("give", lambda store, n: bytes(n))
        else:
            for name, callback in (("take", RAW_TAKE), ("give", RAW_GIVE)):
                encoded = name.encode()
                error = ffi.wasmtime_component_linker_instance_add_func(
                    root.ptr(), ctypes.create_string_buffer(encoded), len(encoded), callback, None, NO_FINALIZER)
                if error:
                    raise wasmtime.WasmtimeError._from_ptr(error)
    return linker


def measure(engine: wasmtime.Engine, component: Component, way: str, export: str, n: int) -> str:
    store = wasmtime.Store(engine)  # a trap poisons the instance: one store per measurement
    try:
        instance = linker_for(engine, way).instantiate(store, component)
        func = instance.get_func(store, export)
        assert func is not None
        started = time.perf_counter()
        got = func(store, n)
        elapsed = time.perf_counter() - started
        func.post_return(store)
        assert got in (n, 0), got
        return f"{n / elapsed / 1e6:9.2f} MB/s"
    except wasmtime.WasmtimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if any("too much data" in line for line in lines):
            return "refused (hostcall fuel)"
        return "failed: " + lines[-1][:60]
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-mib", type=float, default=4)
    parser.add_argument("--add-func-max-mib", type=float, default=1, help="add_func moves about 1 MB/s")
    args = parser.parse_args()
    engine = wasmtime.Engine()
    component = Component(engine, WAT)
    sizes = [1 << 10, 64 << 10, 1 << 20, 2 << 20, int(2.6 * (1 << 20)), int(2.7 * (1 << 20)), 4 << 20, 16 << 20]
    print(f"{'bytes':>10} | {'way':<15} | {'guest -> host':>24} | {'host -> guest':>24}")
    for n in [s for s in sizes if s <= args.max_mib * (1 << 20)]:
        for way in ("add_func", "raw C, ignore"):
            if way == "add_func" and n > args.add_func_max_mib * (1 << 20):
                continue
            take = measure(engine, component, way, "run-take", n)
            give = measure(engine, component, way, "run-give", n)
            print(f"{n:>10} | {way:<15} | {take:>24} | {give:>24}")


if __name__ == "__main__":
    main()
