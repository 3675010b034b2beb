"""Property-based fuzzing of every wasi-nn import, both import modules, through a real wasm guest.

Each example is a sequence of up to 30 calls with corrupted pointers, lengths, handles, enum values,
tensor records and dims (see hostile_abi for the oracles). The CI profile is derandomized; the long
run is ``WASINN_FUZZ_PROFILE=long`` (numbers in docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import wasmtime
from hostile_abi import (
    CANONICAL_MODELS,
    FAST_LIMITS,
    AbiHarness,
    Init,
    Load,
    LoadByName,
    SetInput,
    Unload,
    fake_host,
    make_linker,
    quiet_wasinn,
)
from hostile_settings import fuzz_settings
from hostile_strategies import op_sequences
from hypothesis import example, given
from hypothesis import strategies as st

from wasinn import Limits

ENGINE = wasmtime.Engine()


@pytest.fixture(autouse=True, scope="module")
def _quiet() -> Iterator[None]:
    with quiet_wasinn():
        yield


def run_sequence(ops: list, *, legacy: bool, limits: Limits, release: bool = True) -> None:
    host = fake_host(limits)
    linker = make_linker(host, ENGINE)
    with quiet_wasinn() as errors:
        harness = AbiHarness(host, ENGINE, linker, legacy=legacy)
        try:
            harness.run(ops)
            harness.finish(errors, release=release)
        finally:
            harness.guest.close()
        harness.close()
        host.close()


F32 = (CANONICAL_MODELS["f32"],)
# Regression seeds: what the fuzzers found (see docs/security.md), run first every time.
LEAK_OF_UNLOADED_GRAPH = [Load(F32), Init(), Unload()]  # then the store closes with the context live
DEEP_CONFIG = [LoadByName(b"m", b"[" * 50_000 + b"]" * 50_000)]  # RecursionError in json.loads
LEGACY_TYPE_0x101 = [Load(F32), Init(), SetInput(type_number=0x101)]  # read as f32 (1) by `& 0xFF`


@fuzz_settings(ci_examples=150)
@given(ops=op_sequences, release=st.booleans())
@example(ops=LEAK_OF_UNLOADED_GRAPH, release=False)
@example(ops=DEEP_CONFIG, release=True)
def test_fuzz_wasi_ephemeral_nn_tight_limits(ops: list, release: bool) -> None:
    run_sequence(ops, legacy=False, limits=FAST_LIMITS, release=release)


@fuzz_settings(ci_examples=60)
@given(ops=op_sequences, release=st.booleans())
def test_fuzz_wasi_ephemeral_nn_default_limits(ops: list, release: bool) -> None:
    run_sequence(ops, legacy=False, limits=Limits(), release=release)


@fuzz_settings(ci_examples=100)
@given(ops=op_sequences)
@example(ops=LEGACY_TYPE_0x101)
def test_fuzz_legacy_wamr_wasi_nn(ops: list) -> None:
    run_sequence(ops, legacy=True, limits=Limits(max_model_bytes=1 << 16, max_tensor_bytes=1 << 16))
