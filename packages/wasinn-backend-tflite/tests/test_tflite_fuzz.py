"""Corrupted models must give an error code, never a crash: each batch runs in a child process.

Deterministic variants (truncations, bit flips, random bytes, overwritten 32-bit words) of the
real models go through the whole backend in ``tflite_fuzz_worker.py``. A variant that kills the child
(SIGSEGV, SIGABRT) fails the test with its number, and pytest survives to say so.

``test_byte_level_variants`` runs with the probe off, so it tests the verifier alone; the
semantic reproducers (found by fuzzing LiteRT 2.3) need the probe and run with it on.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from tflite_testlib import BIRDS_MODEL, DATA, DIGITS_MODEL, HERE, WAMR

WORKER = HERE / "tflite_fuzz_worker.py"


def mutate(data: bytes, count: int, seed: int) -> list[bytes]:
    """``count`` corrupted copies of ``data``; the same list for the same seed, everywhere."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        buf = bytearray(data)
        kind = k % 4
        if kind == 0:
            buf = buf[:rng.randrange(8, len(buf))]
        elif kind == 1:
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(buf))
                buf[pos] ^= 1 << rng.randrange(8)
        elif kind == 2:
            pos, length = rng.randrange(8, len(buf)), rng.randint(1, 16)
            buf[pos:pos + length] = bytes(rng.randrange(256) for _ in range(length))[:len(buf) - pos]
        else:
            pos = rng.randrange(8, len(buf) - 4) & ~3
            word = rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, len(data), len(data) - 4, 0xFFFF])
            buf[pos:pos + 4] = struct.pack("<I", word)
        out.append(bytes(buf))
    return out


def run_batch(tmp_path: Path, items: list[bytes], probe: str) -> tuple[int, int]:
    """Run the worker over ``items``; restart after a crash only to report every crashing variant."""
    blob = tmp_path / "variants.bin"
    blob.write_bytes(b"".join(struct.pack("<I", len(v)) + v for v in items))
    progress = tmp_path / "progress.txt"
    env = {**os.environ, "WASINN_TFLITE_PROBE": probe}
    crashed = []
    start = 0
    while True:
        result = subprocess.run([sys.executable, str(WORKER), str(blob), str(progress), str(start)],
                                capture_output=True, text=True, env=env, timeout=600, check=False)
        text = progress.read_text() if progress.exists() else ""
        if result.returncode == 0 and text.startswith("done"):
            break
        if not text or text.startswith("done"):
            pytest.fail(f"fuzz worker failed (exit {result.returncode}): {result.stderr[-2000:]}")
        crashed.append((int(text), result.returncode))
        start = int(text) + 1
    assert not crashed, f"variants that crashed the process (index, exit status): {crashed}"
    counts = dict(part.split("=") for part in text.split()[1:])
    return int(counts["ok"]), int(counts["error"])


SMALL_MODELS = [WAMR / f"{name}.tflite" for name in ("sum", "max", "average", "mult_dim", "mult_out",
                                                       "quantized_model")] + [DIGITS_MODEL, DATA / "quant.tflite"]


def test_byte_level_variants_of_small_models(tmp_path: Path):
    items = [v for seed, path in enumerate(SMALL_MODELS) for v in mutate(path.read_bytes(), 60, 1000 + seed)]
    ok, errors = run_batch(tmp_path, items, probe="never")
    assert ok + errors == len(items)
    assert errors > len(items) // 2  # most corruptions are caught (not silently run)
    assert ok > 0  # ... and harmless ones (a flipped weight) still load


def test_byte_level_variants_of_the_birds_model(tmp_path: Path):
    data = BIRDS_MODEL.read_bytes()
    # Aim at the flatbuffer's structure: its first 880 bytes and the 61 kB of tables after the
    # weights (the 3.5 MB between are weights, where a flipped bit changes nothing but a score).
    head, tail = data[:2048], data[-61_440:]
    items = []
    for k, variant in enumerate(mutate(tail, 24, 77)):
        if k % 4 == 0:
            items.append(data[:len(data) - len(tail) + len(variant)])  # a truncation of the whole
        else:
            items.append(data[:len(data) - len(tail)] + variant)
    items += [variant + data[len(head):] for k, variant in enumerate(mutate(head, 16, 78)) if k % 4]
    ok, errors = run_batch(tmp_path, items, probe="never")
    assert ok + errors == len(items)
    assert errors > 0


def test_random_bytes_with_a_tflite_header(tmp_path: Path):
    rng = random.Random(5)
    items = []
    for size in (8, 12, 64, 300, 4096):
        for _ in range(4):
            body = bytearray(rng.randbytes(size))
            body[4:8] = b"TFL3"
            items.append(bytes(body))
    ok, errors = run_batch(tmp_path, items, probe="never")
    assert (ok, errors) == (0, len(items))


def test_semantic_crasher_is_caught_by_the_probe(tmp_path: Path):
    # A well-formed flatbuffer whose meaning crashes the interpreter in invoke: the probe must turn
    # it into an error (made by tests/data/make_models.py).
    model = (DATA / "crash_depthwise_no_bias.tflite").read_bytes()
    ok, errors = run_batch(tmp_path, [model], probe="always")
    assert (ok, errors) == (0, 1)
