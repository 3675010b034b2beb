"""Shared fixtures for wasinn-core's tests. Backends come from the test-only distribution
``wasinn-test-backends`` (tests/plugins), installed with a real entry point in this env."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import wasinn
from wasinn.testing.guest import TrampolineGuest

TEST_BACKENDS = "fake,fakegpu,broken,incomplete"


@pytest.fixture(autouse=True)
def _clean_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hermetic: only the test backends, even where real ones happen to be installed too.
    for name in ("WASINN_DISABLE_BACKENDS", "WASINN_HARDWARE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WASINN_BACKENDS", TEST_BACKENDS)
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


@pytest.fixture
def no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that register backends in code: the allow-list applies to those too."""
    monkeypatch.delenv("WASINN_BACKENDS")
