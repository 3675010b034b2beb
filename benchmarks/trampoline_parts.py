"""Where wasinn's empty host call goes: the trampoline's steps timed one by one, in Python.

    python benchmarks/trampoline_parts.py

The overhead section of ``run.py`` shows wasinn's empty import costing about 3x a bare ctypes
callback (the least a Python host function can cost: ctypes' own entry into the interpreter). This
script is the reproduction behind that gap: each step that ``wasinn.abi.entry`` takes on every call,
outside wasm, timed with ``timeit`` (best of 5 x 200 000). The steps are CPython/ctypes costs that any
Python host pays for the same work; the sum is close to the measured trampoline minus the bare callback.
"""

from __future__ import annotations

import ctypes
import struct
import timeit

import wasmtime

from wasinn.abi import entry

NUMBER = 200_000


def best_ns(statement: str, namespace: dict[str, object]) -> float:
    return min(timeit.repeat(statement, globals=namespace, number=NUMBER, repeat=5)) / NUMBER * 1e9


def main() -> int:
    if entry._UNCHECKED is None:
        print("wasinn runs its portable trampoline here (WASINN_HOST_CALLS=portable?): nothing to decompose")
        return 1
    store = wasmtime.Store()
    context = ctypes.cast(store._context(), ctypes.c_void_p).value
    slots_type = ctypes.c_char * 80
    slots = slots_type()
    address = ctypes.addressof(slots)
    namespace: dict[str, object] = {
        "slots_type": slots_type, "address": address, "buffer": slots_type.from_address(address),
        "params5": struct.Struct("<" + "i12x" * 5), "result": struct.Struct("<i"), "entry": entry,
        "context_data": entry._UNCHECKED.context_data, "context": context, "call": entry.HostCall(1, 2),
        "body": lambda call, *args: 0,
    }
    steps = [
        ("view the parameter slots (ctypes array from_address)", "slots_type.from_address(address)"),
        ("one ctypes call into wasmtime's C API (caller -> context)", "context_data(context)"),
        ("make the HostCall", "entry.HostCall(1, 2)"),
        ("unpack 5 i32 parameters", "params5.unpack_from(buffer)"),
        ("call the body (empty) with them", "body(call, 1, 2, 3, 4, 5)"),
        ("write the errno result", "result.pack_into(buffer, 0, 0)"),
        ("end the HostCall", "call.end()"),
    ]
    total = 0.0
    for label, statement in steps:
        cost = best_ns(statement, namespace)
        total += cost
        print(f"  {label:60s} {cost:6.0f} ns")
    print(f"  {'sum':60s} {total:6.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
