"""Fuzz worker: loads mutated tiny GGUFs through a real guest, in this process, and prints one line
per case. Run by test_ggml_hostile.py in a child process: if llama.cpp kills this process, the test
sees which case did it (the last line printed) instead of dying itself.

    python ggml_fuzz_worker.py MODEL.gguf SEED CASES
"""

from __future__ import annotations

import json
import logging
import struct
import sys

import numpy as np
from wasinn_backend_ggml import validate

import wasinn
from wasinn.abi.ephemeral import FUNCTIONS
from wasinn.testing.guest import TrampolineGuest

U32_VALUES = (0, 1, 3, 64, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
U64_VALUES = (0, 1, 7, 2**32, 2**63, 2**64 - 1)
FUNCTIONS_ALL = {name: arity for name, (arity, _) in FUNCTIONS.items()}


def mutate(data: bytes, header_end: int, rng: np.random.Generator) -> tuple[str, bytes]:
    buf = bytearray(data)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # flip a few bytes in the metadata (keys, values, tokens, tensor table)
        for _ in range(int(rng.integers(1, 4))):
            buf[int(rng.integers(0, header_end))] ^= 1 << int(rng.integers(0, 8))
        return "flip", bytes(buf)
    if kind == 1:  # overwrite an aligned 4-byte field with an extreme value
        pos = int(rng.integers(0, header_end - 4)) & ~3
        buf[pos:pos + 4] = struct.pack("<I", U32_VALUES[int(rng.integers(0, len(U32_VALUES)))])
        return "u32", bytes(buf)
    if kind == 2:  # overwrite an 8-byte field
        pos = int(rng.integers(0, header_end - 8))
        buf[pos:pos + 8] = struct.pack("<Q", U64_VALUES[int(rng.integers(0, len(U64_VALUES)))])
        return "u64", bytes(buf)
    if kind == 3:  # truncate
        return "truncate", bytes(buf[:int(rng.integers(0, len(buf)))])
    if kind == 4:  # random bytes spliced into the metadata
        pos = int(rng.integers(0, header_end))
        n = int(rng.integers(1, 32))
        buf[pos:pos + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return "splice", bytes(buf)
    # flip bytes anywhere, the weights included
    for _ in range(int(rng.integers(1, 16))):
        buf[int(rng.integers(0, len(buf)))] ^= 0xFF
    return "anywhere", bytes(buf)


def main() -> None:
    path, seed, cases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.disable(logging.CRITICAL)
    data = open(path, "rb").read()
    header_end = validate.read_bytes(data).data_offset
    rng = np.random.default_rng(seed)
    host = wasinn.WasiNnHost(allow=["ggml"])
    guest = TrampolineGuest(host, functions=FUNCTIONS_ALL)
    outcomes: dict[str, int] = {}
    options = json.dumps({"temp": 0.0, "n-predict": 3, "ctx-size": 64}).encode()
    for case in range(cases):
        kind, mutated = mutate(data, header_end, rng)
        print(f"case {case} {kind}", flush=True)
        guest.reset_heap()
        graph = guest.load([mutated], encoding=6)  # GGML under the WasmEdge numbering
        result = f"load:{graph.errno}"
        if graph.ok:
            ctx = guest.init_execution_context(graph.value)  # type: ignore[arg-type]
            if ctx.ok:
                c = ctx.value
                assert c is not None
                guest.call("set_input", c, 0, guest.tensor_record(b"hello \xff world", [1], 3))
                guest.call("set_input", c, 1, guest.tensor_record(options, [1], 3))
                result = f"compute:{guest.compute(c).errno}"
                guest.finalize_execution_context(c)
            guest.unload(graph.value)  # type: ignore[arg-type]
        outcomes[result] = outcomes.get(result, 0) + 1
    print("outcomes " + json.dumps(outcomes, sort_keys=True), flush=True)
    guest.close()
    host.close()


if __name__ == "__main__":
    main()
