"""The ``yourbackend-affine`` model format: replace it with your runtime's.

A model is one graph builder: a UTF-8 JSON object describing one elementwise operation,
``y = x * scale + bias``, on one input ``x`` and one output ``y`` of the same type and shape::

    {"format": "yourbackend-affine", "version": 1, "dtype": "f32", "shape": [2, 3],
     "scale": 1, "bias": 1}

Tiny on purpose: just enough for every hook, and the conformance kit, to have something real to do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wasinn import TensorType

FORMAT = "yourbackend-affine"
VERSION = 1
#: Larger builders are not this format (detection must stay cheap).
MAX_BYTES = 1 << 16
MAX_ELEMENTS = 1 << 26
INTEGER_TYPES = (TensorType.U8, TensorType.I8, TensorType.I32, TensorType.I64)


class ModelError(ValueError):
    """The bytes are not a valid model of this format."""


@dataclass(frozen=True)
class AffineModel:
    dtype: TensorType
    shape: tuple[int, ...]
    scale: float
    bias: float


def make_model(dtype: TensorType, shape: Sequence[int], scale: float = 1, bias: float = 1) -> bytes:
    """The bytes of a model computing ``x * scale + bias`` on ``dtype[shape]``."""
    document = {"format": FORMAT, "version": VERSION, "dtype": dtype.value, "shape": [int(d) for d in shape],
                "scale": scale, "bias": bias}
    return json.dumps(document).encode()


def _document(data: bytes) -> dict[str, Any] | None:
    if len(data) > MAX_BYTES or not data.lstrip()[:1] == b"{":
        return None
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) and document.get("format") == FORMAT else None


def is_model(data: bytes) -> bool:
    """True when ``data`` claims to be this format (it may still be invalid: :func:`parse` says)."""
    return _document(bytes(data)) is not None


def parse(builders: Sequence[bytes]) -> AffineModel:
    """Validate and read a model; :class:`ModelError` says what is wrong."""
    if len(builders) != 1:
        raise ModelError(f"a {FORMAT} model is one graph builder, got {len(builders)}")
    document = _document(bytes(builders[0]))
    if document is None:
        raise ModelError(f"not a {FORMAT} JSON document")
    if document.get("version") != VERSION:
        raise ModelError(f"version {document.get('version')!r} is not supported (only {VERSION})")
    try:
        dtype = TensorType(document["dtype"])
        shape = tuple(document["shape"])
        scale, bias = document["scale"], document["bias"]
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"bad or missing field: {exc}") from None
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape) or not shape:
        raise ModelError(f"shape must be a list of positive integers, got {document['shape']!r}")
    if math.prod(shape) > MAX_ELEMENTS:
        raise ModelError(f"shape {list(shape)} is too large")
    numbers = (scale, bias)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise ModelError("scale and bias must be finite numbers")
    if dtype in INTEGER_TYPES and not all(float(v).is_integer() for v in numbers):
        raise ModelError(f"scale and bias must be integers for {dtype.value}")
    if dtype is TensorType.BF16:
        raise ModelError("bf16 is not supported")
    return AffineModel(dtype=dtype, shape=shape, scale=scale, bias=bias)
