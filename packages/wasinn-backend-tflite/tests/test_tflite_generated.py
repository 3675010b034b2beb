"""The committed generated files match their generators (needs LiteRT's schema module)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from tflite_testlib import DATA, HERE

# Only the tflite-runtime environment lacks LiteRT (and its schema); there these are reported skipped.
needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="the generators need ai_edge_litert.schema_py_generated")


@needs_litert
def test_test_models_are_up_to_date():
    result = subprocess.run([sys.executable, str(DATA / "make_models.py"), "--check"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr


@needs_litert
def test_schema_tables_are_up_to_date():
    script = HERE.parent / "scripts" / "gen_schema.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
