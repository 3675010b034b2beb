"""Broken real models: the variants, and the worker that loads them through a real guest.

Variants are deterministic (seeded by their id): truncations, bit flips, overwritten bytes, random
bytes and zeroed regions of each backend's real models. The worker is run as a child process by
``test_broken_models.py`` (so that a native crash of a runtime is a failed test naming the variant,
not a dead pytest)::

    python tests/hostile/broken_models.py BACKEND VARIANT_ID [VARIANT_ID ...]
    python tests/hostile/broken_models.py BACKEND --all        # every variant of that backend
    python tests/hostile/broken_models.py BACKEND --list       # just the ids

``BACKEND`` names whose models are broken and, by default, forces that backend (``backend=``). With a
route, the guest's ``load`` goes through the default ranking instead, as in production:
``tflite@default`` (every installed backend), ``tflite@deny=tflite`` (every installed backend but
tflite: the embedder denied it) or ``tflite@allow=openvino`` (only OpenVINO).

For each variant it prints ``BEGIN <id>`` before touching it and ``END <id> <json>`` after, flushed,
so the parent knows which variant a crash happened in. The JSON has the errno of each step: ``load``,
then, if it loaded, ``init``, ``set_input`` (zeros of the shape the backend reports), ``compute``
and ``get_output``; ``backend`` names the backend that loaded it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wasinn.testing.models import third_party_dir

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "models"
WAMR_MODELS = third_party_dir(__file__) / "wamr-tflite-test-models"  # checked against SOURCES.md


def onnx_light_model() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"


@dataclass(frozen=True)
class Model:
    """A real model: its builders' files (OpenVINO IR: XML then weights)."""

    key: str
    files: Callable[[], list[Path]]

    def builders(self) -> list[bytes]:
        return [path.read_bytes() for path in self.files()]


MODELS: dict[str, list[Model]] = {
    "onnx": [
        Model("digits.onnx", lambda: [DEMO / "digits.onnx"]),
        Model("light_squeezenet.onnx", lambda: [onnx_light_model()]),
    ],
    "openvino": [
        Model("digits.xml+bin", lambda: [DEMO / "digits.xml", DEMO / "digits.bin"]),
        Model("digits.onnx", lambda: [DEMO / "digits.onnx"]),
    ],
    "tflite": [
        Model("digits.tflite", lambda: [DEMO / "digits.tflite"]),
        *[Model(f"wamr/{name}.tflite", lambda name=name: [WAMR_MODELS / f"{name}.tflite"])  # type: ignore[misc]
          for name in ("average", "max", "mult_dim", "mult_out", "quantized_model", "sum")],
    ],
}

#: Variant kinds and how many of each per builder (seeded by the variant id). ``WASINN_BROKEN_SCALE=N``
#: makes N times as many (the by-hand sweep; CI runs 1x).
KINDS = {"original": 1, "truncate": 8, "flip": 10, "flip-many": 4, "overwrite": 4, "random": 2,
         "header+random": 2, "zero-run": 3, "extend": 1}
SCALE = int(os.environ.get("WASINN_BROKEN_SCALE", "1"))


def variant_ids(backend: str) -> list[str]:
    """``<model>|<builder index>|<kind>|<n>``, every variant of every model of ``backend``."""
    ids = []
    for model in MODELS[backend]:
        count = len(model.files())
        for builder in range(count):
            for kind, n in KINDS.items():
                if kind == "original" and builder:
                    continue
                ids += [f"{model.key}|{builder}|{kind}|{i}" for i in range(n if kind == "original" else n * SCALE)]
    return ids


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    size = len(data)
    if kind == "original":
        return data
    if kind == "truncate":  # anywhere, with a bias to the start where the headers are
        cut = rng.choice([0, 1, 4, 8, 16, 64]) if rng.random() < 0.3 else rng.randrange(size)
        return data[:cut]
    if kind in ("flip", "flip-many"):
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 3) if kind == "flip" else max(1, size // 100)):
            flipped[rng.randrange(size)] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    if kind == "overwrite":  # a 32-bit value (an offset, a length, a count) replaced by an interesting one
        position = rng.randrange(max(size - 4, 1)) & ~3
        value = rng.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, size, size + 4, rng.getrandbits(32)])
        return data[:position] + struct.pack("<I", value) + data[position + 4:]
    if kind == "random":
        return rng.randbytes(size)
    if kind == "header+random":
        keep = rng.choice([4, 8, 16, 32])
        return data[:keep] + rng.randbytes(max(size - keep, 0))
    if kind == "zero-run":
        start = rng.randrange(size)
        length = rng.randint(1, max(size // 8, 1))
        return data[:start] + bytes(min(length, size - start)) + data[start + length:]
    if kind == "extend":
        return data + rng.randbytes(rng.randint(1, 4096))
    raise ValueError(kind)


def variant(backend: str, variant_id: str) -> list[bytes]:
    key, builder, kind, _ = variant_id.split("|")
    model = next(m for m in MODELS[backend] if m.key == key)
    builders = model.builders()
    rng = random.Random(f"{backend}|{variant_id}")  # str seeds are hashed with SHA-512: stable everywhere
    builders[int(builder)] = mutate(builders[int(builder)], kind, rng)
    return builders


# ---- the worker -----------------------------------------------------------------------------------------
def split_route(spec: str) -> tuple[str, str]:
    """``tflite@default`` -> (``tflite``, ``default``); a bare backend name has route ``""`` (forced)."""
    backend, _, route = spec.partition("@")
    return backend, route


def host_for(spec: str) -> object:
    """The host a variant of ``spec`` is loaded by: the backend forced, or the default ranking."""
    import wasinn

    backend, route = split_route(spec)
    if not route:
        return wasinn.WasiNnHost(allow=[backend], backend=backend)
    if route == "default":
        return wasinn.WasiNnHost()
    kind, _, names = route.partition("=")
    if kind == "deny":
        return wasinn.WasiNnHost(deny=names.split(","))
    if kind == "allow":
        return wasinn.WasiNnHost(allow=names.split(","))
    raise ValueError(f"route {route!r}: default, deny=NAMES or allow=NAMES")


def run_variant(spec: str, variant_id: str) -> dict[str, int | str]:
    import numpy as np

    import wasinn
    from wasinn.testing.guest import TENSOR_TYPE, TrampolineGuest

    backend, _ = split_route(spec)
    results: dict[str, int | str] = {}
    host = host_for(spec)
    assert isinstance(host, wasinn.WasiNnHost)
    guest = TrampolineGuest(host)
    try:
        loaded = guest.load(variant(backend, variant_id), "autodetect")
        results["load"] = loaded.errno
        if not loaded.ok or loaded.value is None:
            return results
        results["backend"] = guest.state.graph(loaded.value).backend.name
        made = guest.init_execution_context(loaded.value)
        results["init"] = made.errno
        if not made.ok or made.value is None:
            return results
        graph = guest.state.graph(loaded.value).graph
        for index, spec in enumerate(graph.inputs):
            shape = tuple(1 if d is None or d < 0 else min(d, 4096) for d in (spec.shape or (1,)))
            dtype = spec.dtype.numpy_dtype if spec.dtype is not None else np.dtype(np.float32)
            array = np.zeros(shape, dtype)
            number = TENSOR_TYPE.get(spec.dtype, 1) if spec.dtype is not None else 1
            results[f"set_input{index}"] = guest.set_input(made.value, index, array, number).errno
        results["compute"] = guest.compute(made.value).errno
        if results["compute"] == 0:
            for index in range(len(graph.outputs)):
                call, _ = guest.get_output_bytes(made.value, index, 16 << 20)
                results[f"get_output{index}"] = call.errno
        return results
    finally:
        guest.close()
        host.close()


def main(argv: list[str]) -> int:
    logging.getLogger("wasinn").setLevel(logging.CRITICAL)
    spec, rest = argv[0], argv[1:]
    backend, _ = split_route(spec)
    if rest == ["--list"]:
        print("\n".join(variant_ids(backend)))
        return 0
    ids = variant_ids(backend) if rest == ["--all"] else rest
    for variant_id in ids:
        print(f"BEGIN {variant_id}", flush=True)
        try:
            outcome: object = run_variant(spec, variant_id)
        except Exception as exc:  # a Python exception out of wasinn is a finding too, not a crash
            outcome = {"exception": f"{type(exc).__name__}: {exc}"}
        print(f"END {variant_id} {json.dumps(outcome)}", flush=True)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
