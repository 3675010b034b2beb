"""Shared fixtures for wasinn-core's tests. Backends come from the test-only distribution
``wasinn-test-backends`` (tests/plugins), installed with a real entry point in this env."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import wasinn
from wasinn.testing.guest import TrampolineGuest

REPO = Path(__file__).resolve().parents[3]
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"


@pytest.fixture(autouse=True)
def _clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WASINN_BACKENDS", "WASINN_DISABLE_BACKENDS", "WASINN_HARDWARE"):
        monkeypatch.delenv(name, raising=False)
    logging.getLogger("wasinn").propagate = True


@pytest.fixture
def host() -> Iterator[wasinn.WasiNnHost]:
    with wasinn.WasiNnHost() as h:
        yield h


@pytest.fixture
def guest(host: wasinn.WasiNnHost) -> Iterator[TrampolineGuest]:
    g = TrampolineGuest(host)
    yield g
    g.close()
