"""End to end: the committed wasm guests (nn-run, digits) under ``wasinn run``, served by PyTorch,
in Wasmtime's and WasmEdge's numbering, compared with torch called natively."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_models import (
    DIGITS_GUEST,
    DIGITS_IMAGES,
    ENC_AUTODETECT,
    ENC_PYTORCH,
    EXIT,
    WITX_TYPE,
    Affine,
    Mlp,
    digits_weights,
    exported,
    torchscript,
)

from wasinn.cli.main import main


@pytest.mark.parametrize("abi", ["witx", "wasmedge"])  # Wasmtime's numbering, WasmEdge's
@pytest.mark.parametrize("kind", ["torchscript", "pt2"])
def test_nn_run_loads_and_infers_like_native_torch(nn_run: Callable[..., int], tmp_path: Path, abi: str,
                                                  kind: str) -> None:
    module = Affine().eval()
    x = np.random.default_rng(5).standard_normal((1, 4)).astype(np.float32)
    model = torchscript(module) if kind == "torchscript" else exported(module, torch.zeros(1, 4))
    (tmp_path / "model.pt").write_bytes(model)
    x.tofile(tmp_path / "x.f32")
    status = nn_run("--load", str(ENC_PYTORCH), "0", "/d/model.pt", "--input", "0", str(WITX_TYPE["f32"]), "1x4",
                    "/d/x.f32", "--output", "0", "/d/y.bin", "--output", "1", "/d/sums.bin",
                    flags=["--abi", abi, "--allow-guest-code"])
    assert status == 0
    with torch.inference_mode():
        want_y, want_sums = module(torch.from_numpy(x))
    np.testing.assert_array_equal(np.fromfile(tmp_path / "y.bin", np.float32).reshape(1, 3), want_y.numpy())
    np.testing.assert_array_equal(np.fromfile(tmp_path / "sums.bin", np.float32), want_sums.numpy())


def test_wasmtime_directory_syntax_and_autodetect(nn_run: Callable[..., int], tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.pt").write_bytes(torchscript(Affine()))
    np.ones((1, 4), np.float32).tofile(tmp_path / "x.f32")
    status = nn_run("--load-by-name", "models", "--input", "0", str(WITX_TYPE["f32"]), "1x4", "/d/x.f32",
                    "--print-output", "1", str(WITX_TYPE["f32"]), flags=["--nn-graph", f"pytorch::{models}"])
    assert status == 0
    with torch.inference_mode():
        want = Affine().eval()(torch.ones(1, 4))[1]
    assert np.float32(capfd.readouterr().out.split()[0]) == pytest.approx(float(want[0]), rel=1e-6)
    status = nn_run("--load", str(ENC_AUTODETECT), "0", "/d/models/model.pt", "--input", "0", str(WITX_TYPE["f32"]),
                    "1x4", "/d/x.f32", "--output", "0", "/d/y.bin", flags=["--allow-guest-code"])
    assert status == 0


def test_gpu_target_is_refused_clearly(nn_run: Callable[..., int], tmp_path: Path,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.pt").write_bytes(torchscript(Affine()))
    status = nn_run("--load", str(ENC_PYTORCH), "1", "/d/model.pt", flags=["--allow-guest-code"])  # 1 = gpu
    assert status == EXIT["unsupported_operation"]
    assert "needs CUDA" in capfd.readouterr().err


def test_a_refused_model_is_invalid_argument_to_the_guest(nn_run: Callable[..., int], tmp_path: Path) -> None:
    class Reader(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_file("/etc/passwd", False, 16, dtype=torch.uint8)

    (tmp_path / "model.pt").write_bytes(torchscript(Reader()))
    assert nn_run("--load", str(ENC_PYTORCH), "0", "/d/model.pt") == EXIT["invalid_argument"]  # core: no guest code
    assert nn_run("--load", str(ENC_PYTORCH), "0", "/d/model.pt",
                  flags=["--allow-guest-code"]) == EXIT["invalid_argument"]  # the backend's whitelist


def test_digits_demo_classifies_through_torchscript(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    module = Mlp(digits_weights()).eval()
    model = tmp_path / "digits.pt"
    model.write_bytes(torchscript(module))
    status = main(["run", "--nn-graph", f"digits={model}", "--dir", f"{DIGITS_IMAGES}::/images",
                   str(DIGITS_GUEST), "--images", "/images", "--quiet"])
    captured = capfd.readouterr()
    assert status == 0, captured.err
    summary = re.search(r"images: (\d+)\s+correct: (\d+)/(\d+)", captured.out)
    assert summary, captured.out
    # The same images classified by torch natively: the guest must agree image for image in count.
    correct = 0
    paths = sorted(DIGITS_IMAGES.glob("*.pgm"))
    for path in paths:
        pixels = np.frombuffer(path.read_bytes()[-64:], np.uint8).astype(np.float32) / 16.0
        with torch.inference_mode():
            predicted = int(module(torch.from_numpy(pixels).reshape(1, 64)).argmax())
        correct += predicted == int(path.stem.split("-")[1])
    assert (int(summary.group(1)), int(summary.group(2))) == (len(paths), correct)
    assert correct / len(paths) > 0.9
