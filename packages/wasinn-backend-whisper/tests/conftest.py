"""Fixtures for the whisper backend's tests: a hermetic host (this backend only, CPU-only hardware), the
tiny random-weight whisper.cpp model and a WAV written once per session, and whisper.cpp called
natively (whisper_native.py) for the expected text."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasinn_backend_whisper.testing import write_tiny_whisper, write_wav
from whisper_native import Native

import wasinn
from wasinn import hardware
from wasinn.testing.guest import TrampolineGuest

CPU_ONLY = json.dumps({"accelerators": []})


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WASINN_BACKENDS", "whisper")
    monkeypatch.delenv("WASINN_DISABLE_BACKENDS", raising=False)
    monkeypatch.setenv(hardware.HARDWARE_ENV, CPU_ONLY)
    hardware.probe.cache_clear()
    logging.getLogger("wasinn").propagate = True
    yield
    hardware.probe.cache_clear()


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("whisper")


@pytest.fixture(scope="session")
def tiny(files: Path) -> Path:
    return write_tiny_whisper(files / "tiny.bin")


@pytest.fixture(scope="session")
def audio(files: Path) -> Path:
    return write_wav(files / "audio.wav", 2.0)


@pytest.fixture(scope="session")
def native(tiny: Path) -> Iterator[Native]:
    n = Native(tiny)
    yield n
    n.close()


@pytest.fixture
def host(tiny: Path) -> Iterator[wasinn.WasiNnHost]:
    with wasinn.WasiNnHost() as h:
        h.register_model("default", tiny)
        yield h


@pytest.fixture
def guest(host: wasinn.WasiNnHost) -> Iterator[TrampolineGuest]:
    g = TrampolineGuest(host)
    yield g
    g.close()
