"""Test-only wasinn backends. ``fake`` serves the tiny ``wasinn-test`` format (``WTST`` + JSON)."""

from __future__ import annotations

import json
from typing import Any

FORMAT = "wasinn-test"
MAGIC = b"WTST"


def make_model(spec: dict[str, Any]) -> bytes:
    """Model bytes for the fake backends: ``WTST`` then a JSON description.

    ``spec`` keys: ``inputs``/``outputs`` (lists of ``{"name", "dtype", "shape"}``), ``scale`` and
    ``bias`` (output j = input[j % inputs] * scale + bias), ``fail`` (``"load"``, ``"init"``,
    ``"compute"``, ``"get_output"``, ``"set_input"``: that hook raises), ``only_targets``, ``misbehave``
    (``{"hook": "compute", "do": "write", "arg": path}``: that hook does what a hostile model's code
    would, see :func:`wasinn_test_backends.fake.misbehave`).
    """
    return MAGIC + json.dumps(spec).encode()


def affine_model(dtype: str = "f32", shape: tuple[int, ...] = (1, 4), outputs: int = 1, **extra: Any) -> bytes:
    spec: dict[str, Any] = {
        "inputs": [{"name": "x", "dtype": dtype, "shape": list(shape)}],
        "outputs": [{"name": f"y{j}", "dtype": dtype, "shape": list(shape)} for j in range(outputs)],
        "scale": 2,
        "bias": 1,
    }
    spec.update(extra)
    return make_model(spec)
