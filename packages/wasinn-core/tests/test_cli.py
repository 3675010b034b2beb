"""The `wasinn` command line, in-process, with the test backends and the committed nn-run guest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from core_paths import NN_RUN

from wasinn.cli.main import main
from wasinn_test_backends import affine_model


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "m.wtst").write_bytes(affine_model())
    np.arange(4, dtype="<f4").reshape(1, 4).tofile(tmp_path / "in.bin")
    return tmp_path


def run(workdir: Path, *flags: str, guest_args: tuple[str, ...] = ()) -> int:
    return main(["run", "--dir", f"{workdir}::/d", *flags, str(NN_RUN), *guest_args])


def output(workdir: Path) -> list[float]:
    return np.fromfile(workdir / "out.bin", dtype="<f4").tolist()


IO = ("--input", "0", "1", "1x4", "/d/in.bin", "--output", "0", "/d/out.bin")


def test_run_with_named_model(workdir: Path) -> None:
    assert run(workdir, "--nn-graph", f"m={workdir / 'm.wtst'}", guest_args=("--load-by-name", "m", *IO)) == 0
    assert output(workdir) == [1, 3, 5, 7]


def test_run_with_load_from_guest_bytes(workdir: Path) -> None:
    assert run(workdir, guest_args=("--load", "5", "0", "/d/m.wtst", *IO)) == 0
    assert output(workdir) == [1, 3, 5, 7]


def test_wasmedge_nn_preload_syntax(workdir: Path) -> None:
    preload = f"m:autodetect:cpu:{workdir / 'm.wtst'}"
    assert run(workdir, "--nn-preload", preload, guest_args=("--load-by-name", "m", *IO)) == 0
    assert output(workdir) == [1, 3, 5, 7]


def test_wasmtime_encoding_dir_syntax(workdir: Path) -> None:
    folder = workdir / "affine"
    folder.mkdir()
    (folder / "model.tflite").write_bytes((Path(__file__).parents[3] / "demo/models/digits.tflite").read_bytes())
    with pytest.raises(SystemExit):
        main(["run", "--nn-graph"])  # argparse: missing value
    # the named model's name is the directory's basename; no TFLite backend in this env -> invalid_encoding
    rc = run(workdir, "--nn-graph", f"tensorflowlite::{folder}", guest_args=("--load-by-name", "affine"))
    assert rc == 64 + 2


def test_exit_status_is_the_guests(workdir: Path) -> None:
    assert run(workdir, guest_args=("--load-by-name", "missing")) == 64 + 8
    assert run(workdir, guest_args=("--bogus",)) == 2


def test_backend_and_target_flags(workdir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    flags = ("--nn-graph", f"m={workdir / 'm.wtst'}")
    assert run(workdir, *flags, "--backend", "fakegpu", guest_args=("--load-by-name", "m", *IO)) == 0
    assert "fakegpu" in capfd.readouterr().err
    assert run(workdir, *flags, "--target", "gpu", guest_args=("--load-by-name", "m")) == 64 + 6
    assert "no GPU" in capfd.readouterr().err


def test_user_mistakes_are_one_line_errors(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "missing.wasm")]) == 2
    assert main(["run", "--nn-graph", "m=/does/not/exist.onnx", str(NN_RUN)]) == 2
    assert main(["run", "--backend", "nope", str(NN_RUN)]) == 2
    assert main(["run", "--dir", "/does/not/exist", str(NN_RUN)]) == 2
    (tmp_path / "bad.wasm").write_bytes(b"\0asm garbage")
    assert main(["run", str(tmp_path / "bad.wasm")]) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err.count("wasinn: error:") == 5


def test_guest_environment_and_traps(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    wat = tmp_path / "trap.wat"
    wat.write_text('(module (memory (export "memory") 1) (func (export "_start") unreachable))')
    assert main(["run", str(wat)]) == 134
    assert "trapped" in capfd.readouterr().err


def test_backends_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    listing = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert listing["fake"]["available"] and listing["fake"]["distribution"] == "wasinn-test-backends"
    assert not listing["broken"]["available"]
    assert main(["backends"]) == 0
    text = capsys.readouterr().out
    assert "fake: available" in text and "broken: UNAVAILABLE" in text


def test_explain(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--json", str(workdir / "m.wtst")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["winner"] == "fake" and data["format"] == "wasinn-test"
    assert [c["backend"] for c in data["candidates"]][:2] == ["fake", "fakegpu"]
    assert main(["explain", "--target", "gpu", str(workdir / "m.wtst")]) == 1
    assert "winner: none" in capsys.readouterr().out


def test_hardware(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hardware"]) == 0
    assert json.loads(capsys.readouterr().out)["cpu"]["cores"] >= 1


def test_python_dash_m_and_console_script() -> None:
    result = subprocess.run([sys.executable, "-m", "wasinn", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("wasinn ")
