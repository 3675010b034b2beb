"""Fixtures for the pytorch backend's tests: only this backend, a CPU-only hardware snapshot, and
``nn_run`` to run the committed nn-run guest through ``wasinn run``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from torch_models import NN_RUN

from wasinn import hardware
from wasinn.cli.main import main

CPU_ONLY = json.dumps({"accelerators": []})


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WASINN_BACKENDS", "pytorch")
    monkeypatch.delenv("WASINN_DISABLE_BACKENDS", raising=False)
    monkeypatch.setenv(hardware.HARDWARE_ENV, CPU_ONLY)
    hardware.probe.cache_clear()
    logging.getLogger("wasinn").propagate = True  # the CLI turns it off; caplog needs it
    yield
    hardware.probe.cache_clear()
    logging.getLogger("wasinn").propagate = True


@pytest.fixture
def nn_run(tmp_path: Path) -> Callable[..., int]:
    """Run nn-run with ``tmp_path`` preopened as ``/d``: ``nn_run(*guest_args, flags=[...])``."""

    def run(*guest_args: str, flags: tuple[str, ...] | list[str] = ()) -> int:
        return main(["run", "--dir", f"{tmp_path}::/d", *flags, str(NN_RUN), *guest_args])

    return run
