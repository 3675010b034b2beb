"""Broken models for the fake backend: truncated, bit-flipped and random-byte variants of each
canonical model (seeded), loaded through a real guest: success or a documented errno every time,
and the store works afterwards. (The real runtimes get the same treatment in tests/hostile/.)"""

from __future__ import annotations

import random

import pytest
import wasmtime
from hostile_abi import (
    ALLOWED,
    CANONICAL_MODELS,
    SUCCESS,
    AbiHarness,
    Infer,
    Load,
    Unload,
    fake_host,
    make_linker,
    quiet_wasinn,
)

ENGINE = wasmtime.Engine()


def variants(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = [(f"truncated@{n}", data[:n]) for n in sorted({0, 1, 3, 4, 5, 8, len(data) // 2, len(data) - 1})]
    for i in range(24):
        flipped = bytearray(data)
        for _ in range(1 + i % 3):
            position = rng.randrange(len(data))
            flipped[position] ^= 1 << rng.randrange(8)
        out.append((f"bitflip#{i}", bytes(flipped)))
    out += [(f"random#{i}", rng.randbytes(len(data))) for i in range(4)]
    out += [(f"magic+random#{i}", data[:4] + rng.randbytes(len(data) - 4)) for i in range(4)]
    return out


@pytest.mark.parametrize("key", sorted(CANONICAL_MODELS))
def test_broken_variants_get_an_errno_and_the_store_survives(key: str) -> None:
    host = fake_host()
    with quiet_wasinn() as errors:
        h = AbiHarness(host, ENGINE, make_linker(host, ENGINE))
        outcomes: dict[int, int] = {}
        for name, data in variants(CANONICAL_MODELS[key], seed=sum(map(ord, key))):
            errno = h.step(Load((data,)))
            assert errno in ALLOWED["load"], (name, errno)
            outcomes[errno] = outcomes.get(errno, 0) + 1
            if errno == SUCCESS:
                h.step(Infer())  # a variant that loads may still compute (or fail cleanly)
                assert h.step(Unload()) == SUCCESS
        assert sum(n for code, n in outcomes.items() if code != SUCCESS) > 0, "no variant was refused"
        h.finish(errors)
        h.close()
    host.close()
