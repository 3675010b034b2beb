"""Fixtures of the tflite tests (helpers and paths live in ``tflite_testlib``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tflite_testlib import Guests


@pytest.fixture
def guests(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> Guests:
    return Guests(tmp_path, capfd)
