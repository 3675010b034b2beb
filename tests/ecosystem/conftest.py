"""Fixtures of the ecosystem tests (the helpers are in venvs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from venvs import Venv, make_venv


@pytest.fixture
def fresh_venv(tmp_path: Path) -> Venv:
    return make_venv(tmp_path / "venv")
