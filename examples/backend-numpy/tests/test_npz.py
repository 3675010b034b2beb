"""The npz-mlp format on its own: writing, reading, detecting, refusing, computing."""

from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from wasinn_backend_numpy.npz import FORMAT, Mlp, ModelError, Port, affine_mlp, dump_mlp, is_npz_mlp, load_mlp

SOURCES = Path(__file__).resolve().parents[1] / "src" / "wasinn_backend_numpy"


def two_layers(dtype: str = "float32") -> Mlp:
    rng = np.random.default_rng(0)
    return Mlp(weights=(rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(3, 2)).astype(dtype)),
               biases=(rng.normal(size=3).astype(dtype), rng.normal(size=2).astype(dtype)),
               input=Port("in", (None, 4)), output=Port("out", (None, 2)), activation="relu",
               output_activation="softmax")


def test_round_trip_and_forward() -> None:
    mlp = two_layers()
    data = dump_mlp(mlp)
    assert data == dump_mlp(mlp), "archives are reproducible"
    assert is_npz_mlp(data)
    back = load_mlp(data)
    assert back.input == Port("in", (None, 4)) and back.output == Port("out", (None, 2))
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    hidden = np.maximum(x @ mlp.weights[0] + mlp.biases[0], 0)
    logits = hidden @ mlp.weights[1] + mlp.biases[1]
    want = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(back.forward(x), want, rtol=1e-6)
    assert back.forward(x).dtype == np.float32


def test_numpy_reads_the_archives_too() -> None:
    data = np.load(io.BytesIO(dump_mlp(two_layers())))
    assert sorted(data.files) == ["W0", "W1", "b0", "b1", "meta"]
    assert '"format": "npz-mlp"' in str(data["meta"])


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04", b"PK\x03\x04" + bytes(100), b"not a zip at all"])
def test_other_bytes_are_not_npz_mlp(data: bytes) -> None:
    assert not is_npz_mlp(data)
    with pytest.raises(ModelError):
        load_mlp(data)


def test_a_plain_npz_is_not_npz_mlp() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.ones(3))
    assert not is_npz_mlp(buffer.getvalue())


def _rewrite(data: bytes, name: str, payload: bytes, compress: int = zipfile.ZIP_STORED) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compress) as archive:
        for info in source.infolist():
            archive.writestr(info.filename, payload if info.filename == name else source.read(info.filename))
    return buffer.getvalue()


def test_decompression_bombs_are_refused_before_decompressing() -> None:
    data = _rewrite(dump_mlp(affine_mlp("float32", (1, 4))), "W0.npy", bytes(40 << 20), zipfile.ZIP_DEFLATED)
    assert len(data) < 1 << 20
    with pytest.raises(ModelError, match="expand"):
        load_mlp(data)


def test_pickles_are_refused() -> None:
    member = io.BytesIO()
    np.lib.format.write_array(member, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelError, match=r"W0\.npy"):
        load_mlp(_rewrite(dump_mlp(affine_mlp("float32", (1, 4))), "W0.npy", member.getvalue()))


@pytest.mark.parametrize("meta", ['{"format": "other"}', '{"format": "npz-mlp", "version": 2}', "[]", "not json",
                                  '{"format": "npz-mlp", "version": 1, "layers": 0}'])
def test_bad_metadata_is_refused(meta: str) -> None:
    member = io.BytesIO()
    np.lib.format.write_array(member, np.array(meta))
    with pytest.raises(ModelError):
        load_mlp(_rewrite(dump_mlp(affine_mlp("float32", (1, 4))), "meta.npy", member.getvalue()))


def test_ports_must_match_the_layers() -> None:
    mlp = affine_mlp("float64", (2, 3))
    with pytest.raises(ModelError, match="last dimension"):
        dump_mlp(Mlp(mlp.weights, mlp.biases, Port("x", (2, 4)), mlp.output))


def test_format_name() -> None:
    assert FORMAT == "npz-mlp"


def test_only_the_public_api_is_used() -> None:
    """A third-party backend imports ``wasinn`` itself, never its internals (wasinn.host, wasinn.abi...)."""
    internal = []
    for path in SOURCES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            internal += [f"{path.name}: {n}" for n in names if n.startswith("wasinn.")]
    assert not internal, internal
