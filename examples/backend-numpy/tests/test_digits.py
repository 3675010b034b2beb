"""The demo digits model, exported to npz-mlp, runs on the numpy backend exactly as on onnxruntime:
chosen by ranking among every installed backend, through the demo's own wasm guest and the CLI."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import wasinn
from wasinn.cli.main import main as wasinn_main

EXAMPLE = Path(__file__).resolve().parents[1]
REPO = EXAMPLE.parents[1]
DEMO = REPO / "demo"
ONNX_MODEL = DEMO / "models" / "digits.onnx"
IMAGES = DEMO / "images"
GUEST = REPO / "guests" / "digits" / "digits.wasm"
SUMMARY = re.compile(r"images: (\d+)  correct: (\d+)/(\d+)  accuracy: ([\d.]+)%  mean time: ")
PREDICTION = re.compile(r"^(\S+\.pgm)  predicted (\d)  label (\d)", re.MULTILINE)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_digits", EXAMPLE / "scripts" / "export_digits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def read_pgm(path: Path) -> np.ndarray:
    """An 8x8 P5 PGM with maxval 16 (the demo's images), as f32[1, 64] = pixel / 16."""
    magic, dims, maxval, pixels = path.read_bytes().split(b"\n", 3)
    assert (magic, dims, maxval, len(pixels)) == (b"P5", b"8 8", b"16", 64), path
    return (np.frombuffer(pixels, np.uint8).astype(np.float32) / np.float32(16)).reshape(1, 64)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits") / "digits.npz"
    _script().export(ONNX_MODEL, out)
    return out


@pytest.fixture(scope="module")
def onnxruntime_predictions() -> dict[str, tuple[int, np.ndarray]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(ONNX_MODEL), providers=["CPUExecutionProvider"])
    results = {}
    for path in sorted(IMAGES.glob("*.pgm")):
        probabilities = session.run(None, {"pixels": read_pgm(path)})[0]
        results[path.name] = (int(np.argmax(probabilities)), probabilities)
    assert len(results) == 360
    return results


@pytest.fixture
def all_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WASINN_BACKENDS", "WASINN_DISABLE_BACKENDS", "WASINN_HARDWARE"):
        monkeypatch.delenv(name, raising=False)


def test_same_probabilities_as_onnxruntime(npz: Path, onnxruntime_predictions: dict[str, tuple[int, np.ndarray]],
                                           all_backends: None) -> None:
    with wasinn.WasiNnHost() as host:
        host.register_model("digits", npz)
        state = host.new_state()  # the embedder API: the same hooks, no guest
        context = state.init_execution_context(state.load_by_name("digits"))
        for name, (_, reference) in onnxruntime_predictions.items():
            state.set_input(context, 0, wasinn.Tensor.from_numpy(read_pgm(IMAGES / name)))
            state.compute(context)
            np.testing.assert_allclose(state.get_output(context, 0), reference, rtol=1e-5, atol=1e-6,
                                       err_msg=name)
        state.close()


def test_ranking_chooses_the_numpy_backend(npz: Path, all_backends: None) -> None:
    with wasinn.WasiNnHost() as host:
        ranking = host.explain([npz.read_bytes()])
    assert ranking.model.format == "npz-mlp"
    assert ranking.winner is not None and ranking.winner.backend == "numpy", ranking.summary()
    assert not ranking.runners_up, "no other backend reads npz-mlp"


def test_the_digits_guest_classifies_like_onnxruntime(npz: Path, capfd: pytest.CaptureFixture[str],
                                                      onnxruntime_predictions: dict[str, tuple[int, np.ndarray]],
                                                      all_backends: None) -> None:
    argv = ["run", "--dir", f"{IMAGES}::/images", "--nn-graph", f"digits={npz}", str(GUEST), "--images", "/images"]
    assert wasinn_main([*argv, "--quiet"]) == 0
    quiet = capfd.readouterr()
    assert "-> numpy" in quiet.err, f"the numpy backend was not chosen: {quiet.err}"
    expected_correct = sum(pred == int(name[5]) for name, (pred, _) in onnxruntime_predictions.items())
    summary = SUMMARY.search(quiet.out)
    assert summary is not None, quiet.out
    assert summary.groups()[:4] == ("360", str(expected_correct), "360", f"{100 * expected_correct / 360:.2f}")

    assert wasinn_main(argv) == 0  # without --quiet the guest prints every prediction
    guest = {name: int(pred) for name, pred, _ in PREDICTION.findall(capfd.readouterr().out)}
    native = {name: pred for name, (pred, _) in onnxruntime_predictions.items()}
    assert guest == native
