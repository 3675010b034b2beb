"""Fixtures for the ggml backend's tests: a hermetic host (this backend only, CPU-only hardware), the
tiny random llama written once per session, and llama-cpp-python called natively for expectations."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from ggml_native import Native
from wasinn_backend_ggml.testing import write_tiny_llama

import wasinn
from wasinn import hardware
from wasinn.abi.ephemeral import FUNCTIONS
from wasinn.testing.guest import TrampolineGuest

CPU_ONLY = json.dumps({"accelerators": []})
#: Every import, the streaming ones included: the guest gets WasmEdge's numbering, as GGML guests do.
WASMEDGE_FUNCTIONS = {name: arity for name, (arity, _) in FUNCTIONS.items()}


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WASINN_BACKENDS", "ggml")
    monkeypatch.delenv("WASINN_DISABLE_BACKENDS", raising=False)
    monkeypatch.setenv(hardware.HARDWARE_ENV, CPU_ONLY)
    hardware.probe.cache_clear()
    logging.getLogger("wasinn").propagate = True
    yield
    hardware.probe.cache_clear()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def native(tiny: Path) -> Native:
    return Native(tiny)


@pytest.fixture
def host(tiny: Path) -> Iterator[wasinn.WasiNnHost]:
    with wasinn.WasiNnHost() as h:
        h.register_model("default", tiny)
        yield h


@pytest.fixture
def guest(host: wasinn.WasiNnHost) -> Iterator[TrampolineGuest]:
    g = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
    yield g
    g.close()
