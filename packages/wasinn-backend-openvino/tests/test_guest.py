"""Real wasm guests (the committed nn-run and digits) on this backend, through ``wasinn run``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ov_helpers import ACCURACY, DIGITS_GUEST, DIGITS_MODELS, EXIT, NN_RUN, digits_images, native_digits, run_guest

DIGITS_FILES = {"ir": "digits.xml", "onnx": "digits.onnx", "tflite": "digits.tflite"}


@pytest.mark.parametrize("fmt", list(DIGITS_FILES))
def test_digits_guest_named_model(fmt: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    rc = run_guest(DIGITS_GUEST, ["--images", "/demo/images", "--quiet"], tmp_path,
                   "--nn-graph", f"digits={DIGITS_MODELS / DIGITS_FILES[fmt]}")
    out = capfd.readouterr().out
    assert rc == 0, out
    found = ACCURACY.search(out)
    assert found is not None, out
    assert found.group(1) == "97.22"


@pytest.mark.parametrize(("files", "encoding"), [
    ("/demo/models/digits.xml,/demo/models/digits.bin", "0"),
    ("/demo/models/digits.onnx", "1"),
    ("/demo/models/digits.tflite", "4"),
])
def test_digits_guest_loads_the_bytes_itself(files: str, encoding: str, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    rc = run_guest(DIGITS_GUEST, ["--images", "/demo/images", "--quiet", "--model-file", files,
                                  "--encoding", encoding], tmp_path)
    out = capfd.readouterr().out
    assert rc == 0, out
    assert "accuracy: 97.22%" in out


def test_nn_run_ir_matches_the_native_runtimes(tmp_path: Path) -> None:
    images, _ = digits_images()
    batch = images[:3]
    for name in ("digits.xml", "digits.bin", "digits.onnx", "digits.tflite"):
        shutil.copy(DIGITS_MODELS / name, tmp_path / name)
    reference = native_digits(batch)
    loads = {"ir": ["0", "0", "/d/digits.xml,/d/digits.bin"], "onnx": ["1", "0", "/d/digits.onnx"],
             "tflite": ["4", "0", "/d/digits.tflite"]}
    for fmt, load in loads.items():
        for i, image in enumerate(batch):
            (tmp_path / "in.bin").write_bytes(image.tobytes())
            rc = run_guest(NN_RUN, ["--load", *load, "--input", "0", "1", "1x64", "/d/in.bin",
                                    "--output", "0", "/d/out.bin"], tmp_path)
            assert rc == 0, (fmt, i)
            ours = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)
            for runtime, expected in reference.items():
                np.testing.assert_allclose(ours, expected[i], atol=1e-5, rtol=0, err_msg=f"{fmt} vs {runtime}")


@pytest.fixture
def digits_dir(tmp_path: Path) -> Path:
    for name in ("digits.xml", "digits.bin"):
        shutil.copy(DIGITS_MODELS / name, tmp_path / name)
    (tmp_path / "in.bin").write_bytes(np.zeros(64, np.float32).tobytes())
    return tmp_path


def nn_run(tmp_path: Path, load: list[str], *host_flags: str) -> int:
    """nn-run with one all-zero digits input; ``host_flags`` go to ``wasinn run``."""
    return run_guest(NN_RUN, [*load, "--input", "0", "1", "1x64", "/d/in.bin", "--output", "0", "/d/out.bin"],
                     tmp_path, *host_flags)


def test_bad_models_from_a_guest(digits_dir: Path) -> None:
    xml = (digits_dir / "digits.xml").read_bytes()
    weights = (digits_dir / "digits.bin").read_bytes()
    (digits_dir / "garbage.xml").write_bytes(b"<net name='x' version='11'><layers><layer id=" + b"\x00" * 40)
    (digits_dir / "short.bin").write_bytes(weights[: len(weights) // 3])
    (digits_dir / "random.bin").write_bytes(bytes(np.random.default_rng(3).integers(0, 256, 4096, np.uint8)))
    assert xml
    cases = {
        "/d/garbage.xml,/d/digits.bin": EXIT["invalid_argument"],
        "/d/digits.xml,/d/short.bin": EXIT["invalid_argument"],
        "/d/digits.xml,/d/random.bin": EXIT["invalid_argument"],
        "/d/random.bin,/d/digits.bin": EXIT["invalid_argument"],
    }
    for files, status in cases.items():
        assert nn_run(digits_dir, ["--load", "0", "0", files]) == status, files


def test_bad_tensors_from_a_guest(digits_dir: Path) -> None:
    load = ["--load", "0", "0", "/d/digits.xml,/d/digits.bin"]
    (digits_dir / "in64.bin").write_bytes(np.zeros(64, np.float64).tobytes())
    wrong_type = run_guest(NN_RUN, [*load, "--input", "0", "2", "1x64", "/d/in64.bin"], digits_dir)
    wrong_shape = run_guest(NN_RUN, [*load, "--input", "0", "1", "8x8", "/d/in.bin"], digits_dir)
    wrong_index = run_guest(NN_RUN, [*load, "--input", "1", "1", "1x64", "/d/in.bin"], digits_dir)
    unset = run_guest(NN_RUN, [*load, "--output", "0", "/d/out.bin"], digits_dir)
    too_small = run_guest(NN_RUN, [*load, "--input", "0", "1", "1x64", "/d/in.bin",
                                   "--output", "0", "/d/out.bin", "16"], digits_dir)
    assert (wrong_type, wrong_shape, wrong_index, unset) == (EXIT["invalid_argument"],) * 4
    assert too_small == 64 + 7  # too_large: the core checks the guest's buffer


def test_gpu_target_on_a_cpu_only_machine(digits_dir: Path) -> None:
    assert nn_run(digits_dir, ["--load", "0", "1", "/d/digits.xml,/d/digits.bin"]) == EXIT["unsupported_operation"]
    assert nn_run(digits_dir, ["--load-by-name", "digits"], "--nn-graph", f"digits={digits_dir / 'digits.xml'}",
                  "--target", "gpu") == EXIT["unsupported_operation"]


def test_config_from_the_guest(digits_dir: Path) -> None:
    graph = ["--nn-graph", f"digits={digits_dir / 'digits.xml'}"]
    assert nn_run(digits_dir, ["--load-by-name-config", "digits", '{"precision": "f32", "num_threads": 1}'],
                  *graph) == 0
    assert nn_run(digits_dir, ["--load-by-name-config", "digits", '{"colour": "blue"}'], *graph) \
        == EXIT["invalid_argument"]
    assert nn_run(digits_dir, ["--load-by-name-config", "digits", '{"device": "NPU"}'], *graph) \
        == EXIT["unsupported_operation"]


def test_a_guest_cannot_choose_a_host_path(digits_dir: Path, tmp_path: Path) -> None:
    graph = ["--nn-graph", f"digits={digits_dir / 'digits.xml'}"]
    target = tmp_path / "guest-chosen"
    for config in ({"cache_dir": str(target)}, {"properties": {"CACHE_DIR": str(target)}}):
        assert nn_run(digits_dir, ["--load-by-name-config", "digits", json.dumps(config)], *graph) \
            == EXIT["invalid_argument"]
    assert not target.exists()
