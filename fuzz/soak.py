#!/usr/bin/env python
"""The by-hand soak: many store lifecycles, then RSS drift and what is left in the backends.

    python fuzz/soak.py                      # 10,000 cycles on the fake backend (all seven ways a store ends)
    python fuzz/soak.py --cycles 2000 --backend onnx --backend tflite   # real runtimes, demo digits model

Prints one JSON object per run (cycles, seconds, RSS at start and end, drift). The figures of the
last run are in docs/security.md. CI runs the same cycles, fewer of them
(packages/wasinn-core/tests/hostile/test_leaks.py, tests/hostile/test_real_backends.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "wasinn-core" / "tests" / "hostile"))

import numpy as np  # noqa: E402
import wasmtime  # noqa: E402
from hostile_abi import FastGuest, make_linker, quiet_wasinn  # noqa: E402
from hostile_soak import Soak, rss_bytes  # noqa: E402

import wasinn  # noqa: E402

FILES = {
    "onnx": ["demo/models/digits.onnx"],
    "openvino": ["demo/models/digits.xml", "demo/models/digits.bin"],
    "tflite": ["demo/models/digits.tflite"],
}


def soak_fake(cycles: int) -> dict[str, object]:
    with quiet_wasinn() as errors:
        result = Soak().run(cycles)
    return {"backend": "fake", **result, "internal_errors": len(errors.records)}


def soak_real(backend: str, cycles: int) -> dict[str, object]:
    logging.getLogger("wasinn").setLevel(logging.ERROR)
    paths = [ROOT / f for f in FILES[backend]]
    model = [p.read_bytes() for p in paths]
    image = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)
    with wasinn.WasiNnHost(allow=[backend], backend=backend) as host:
        host.register_model("digits", paths)
        engine = wasmtime.Engine()
        linker = make_linker(host, engine)
        left: list[tuple[int, int]] = []

        def cycle(i: int) -> None:
            guest = FastGuest(host, engine, linker)
            loaded = guest.load(model) if i % 2 else guest.load_by_name("digits")
            assert loaded.ok and loaded.value is not None, loaded
            out = guest.infer(loaded.value, [image], [(np.float32, (1, 10))])
            assert abs(float(out[0].sum()) - 1) < 1e-4
            if i % 3:
                state = guest.state
                guest.unload(loaded.value)
                left.append((state.graph_count, state.context_count - 1))  # infer() leaves its context
                del state
            guest.close()

        warmup = max(cycles // 10, 20)
        started = time.perf_counter()
        for i in range(warmup):
            cycle(i)
        gc.collect()
        rss_start = rss_bytes()
        for i in range(cycles):
            cycle(i)
        gc.collect()
        rss_end = rss_bytes()
    return {"backend": backend, "cycles": cycles, "seconds": round(time.perf_counter() - started, 1),
            "rss_start_mb": round(rss_start / 1e6, 1), "rss_end_mb": round(rss_end / 1e6, 1),
            "rss_drift_mb": round((rss_end - rss_start) / 1e6, 2),
            "stores_left_holding_something": sum(1 for counts in left if counts != (0, 0))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--backend", action="append", default=[], choices=sorted(FILES),
                        help="soak a real runtime instead of the fake backend (repeatable)")
    args = parser.parse_args()
    for backend in args.backend or ["fake"]:
        result = soak_fake(args.cycles) if backend == "fake" else soak_real(backend, args.cycles)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
