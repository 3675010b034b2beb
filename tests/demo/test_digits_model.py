"""The committed demo digits model: reproducible bytes and agreeing runtimes."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

# Runs in the integration env, which installs scikit-learn, onnx and all three runtimes: a missing
# one is a broken environment and must fail, not skip.
DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
SCRIPT = DEMO_DIR / "train_digits.py"
# OpenVINO's serializer writes its own version into the XML's <rt_info>.
OV_VERSION_RE = re.compile(rb'(<info name="OpenVINO Runtime" value=")[^"]*(")')


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_digits", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def td() -> ModuleType:
    return _load_script()


@pytest.fixture(scope="module")
def regenerated(td: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    assert td.main(["--out", str(out)]) == 0
    return out


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for sub in ("models", "images")
        for p in sorted((root / sub).iterdir())
        if p.is_file()
    }


def test_regeneration_is_byte_identical(regenerated: Path) -> None:
    committed = _files(DEMO_DIR)
    fresh = _files(regenerated)
    assert sorted(fresh) == sorted(committed)
    assert sum(name.endswith(".pgm") for name in committed) == 360

    import openvino

    different = []
    for name, path in committed.items():
        old, new = path.read_bytes(), fresh[name].read_bytes()
        if old == new:
            continue
        if name.endswith(".xml") and openvino.__version__.encode() not in old:
            # Written by another OpenVINO release: only its version line may
            # differ (a changed layout still fails; then regenerate).
            def unversioned(data: bytes) -> bytes:
                return OV_VERSION_RE.sub(rb"\1\2", data)

            if unversioned(old) == unversioned(new):
                continue
        different.append(name)
    assert not different, f"regenerate with demo/train_digits.py: {different}"


def test_contract(td: ModuleType) -> None:
    import onnx
    import openvino as ov
    from ai_edge_litert.interpreter import Interpreter

    models = DEMO_DIR / "models"

    graph = onnx.load(models / "digits.onnx").graph
    io = [
        (
            v.name,
            [d.dim_value for d in v.type.tensor_type.shape.dim],
            v.type.tensor_type.elem_type,
        )
        for v in (*graph.input, *graph.output)
    ]
    assert io == [
        ("pixels", [1, 64], onnx.TensorProto.FLOAT),
        ("probabilities", [1, 10], onnx.TensorProto.FLOAT),
    ]

    model = ov.Core().read_model(models / "digits.xml")
    assert [
        (p.get_any_name(), p.get_shape(), p.get_element_type()) for p in model.inputs
    ] == [("pixels", ov.Shape([1, 64]), ov.Type.f32)]
    assert [
        (p.get_any_name(), p.get_shape(), p.get_element_type()) for p in model.outputs
    ] == [("probabilities", ov.Shape([1, 10]), ov.Type.f32)]

    interp = Interpreter(model_path=str(models / "digits.tflite"))
    details = [*interp.get_input_details(), *interp.get_output_details()]
    assert [(d["name"], d["shape"].tolist(), d["dtype"]) for d in details] == [
        ("pixels", [1, 64], np.float32),
        ("probabilities", [1, 10], np.float32),
    ]


def test_runtimes_agree_on_committed_images(td: ModuleType) -> None:
    pixels, labels = td.load_images(DEMO_DIR / "images")
    assert pixels.shape == (360, 64) and pixels.max() <= 16
    x = pixels.astype(np.float32) / np.float32(16.0)

    probs = td.run_all(DEMO_DIR / "models", x)
    assert sorted(probs) == ["litert", "onnxruntime", "openvino"]

    ref = probs["onnxruntime"].argmax(axis=1)
    for name, p in probs.items():
        assert p.shape == (360, 10) and p.dtype == np.float32, name
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(
            p, probs["onnxruntime"], rtol=0, atol=1e-5, err_msg=name
        )
        assert np.array_equal(p.argmax(axis=1), ref), name
        accuracy = float((p.argmax(axis=1) == labels).mean())
        assert accuracy > 0.9, (name, accuracy)
