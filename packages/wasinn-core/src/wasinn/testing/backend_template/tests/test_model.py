"""The model format, on its own."""

from __future__ import annotations

import pytest
from wasinn_backend_yourbackend.model import FORMAT, ModelError, is_model, make_model, parse

from wasinn import TensorType


def test_round_trip() -> None:
    model = parse([make_model(TensorType.I32, (2, 3), scale=2, bias=-1)])
    assert (model.dtype, model.shape, model.scale, model.bias) == (TensorType.I32, (2, 3), 2, -1)
    assert is_model(make_model(TensorType.F32, (1,)))


@pytest.mark.parametrize("data", [b"", b"{}", b"[1, 2]", b"\xff\xfe", b'{"format": "other"}', b"{" * 100_000])
def test_other_bytes_are_not_this_format(data: bytes) -> None:
    assert not is_model(data)
    with pytest.raises(ModelError):
        parse([data])


@pytest.mark.parametrize("change", [{"version": 2}, {"shape": [0]}, {"shape": "2x3"}, {"dtype": "f128"},
                                    {"scale": 0.5, "dtype": "i32"}, {"bias": "1"}])
def test_invalid_models_are_refused(change: dict[str, object]) -> None:
    import json

    document = json.loads(make_model(TensorType.F32, (2, 3)))
    document.update(change)
    assert document["format"] == FORMAT
    with pytest.raises(ModelError):
        parse([json.dumps(document).encode()])
