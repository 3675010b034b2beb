"""Fixtures: a private model cache for every test, and pretend OpenVINO devices."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasinn_backend_openvino import config, runtime


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Named models cache their blobs here, never in the developer's ~/.cache."""
    cache = tmp_path / "ov-cache"
    monkeypatch.setenv(config.CACHE_ENV, str(cache))
    return cache


@pytest.fixture(autouse=True)
def _wasinn_logs_reach_caplog() -> Iterator[None]:
    # `wasinn run` (cli main) gives the "wasinn" logger its own stderr handler and level and stops it
    # propagating: undo that for each test, so that caplog sees the backend's warnings.
    log = logging.getLogger("wasinn")
    saved = (log.propagate, log.level, log.handlers[:])
    log.propagate, log.handlers[:] = True, []
    log.setLevel(logging.NOTSET)
    yield
    log.propagate, log.handlers[:] = saved[0], saved[2]
    log.setLevel(saved[1])


@pytest.fixture
def fake_devices(monkeypatch: pytest.MonkeyPatch):
    """Pretend OpenVINO sees other devices (for scoring; nothing is compiled on them)."""

    def pretend(*names: str) -> None:
        monkeypatch.setattr(runtime, "_devices", tuple(names))
        monkeypatch.setattr(runtime, "device_name", lambda device: f"Pretend {device}")

    return pretend
