"""End to end: the committed wasm guests (nn-run, digits) under ``wasinn run``, served by ONNX Runtime.

Every tensor here crosses the real ABI: the guest reads the model and input files through WASI,
calls ``wasi_ephemeral_nn``, and writes the outputs to files that the tests read back.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
from onnx import helper
from onnx_test_models import (
    CPU,
    DIGITS_GUEST,
    DIGITS_IMAGES,
    DIGITS_MODEL,
    ENC_AUTODETECT,
    ENC_ONNX,
    ENC_TFLITE,
    EXIT,
    GPU,
    LIGHT,
    LIGHT_MODELS,
    NUMPY,
    TPU,
    WITX_TYPE,
    affine_model,
    expected_unary,
    light_expected,
    light_input,
    model,
    multi_io_model,
    randomized_light,
    unary_model,
    value,
)

from wasinn.cli.main import main

NnRun = Callable[..., int]


def dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


@pytest.fixture
def affine(tmp_path: Path) -> Path:
    (tmp_path / "affine.onnx").write_bytes(affine_model())
    np.arange(4, dtype="<f4").reshape(1, 4).tofile(tmp_path / "in.bin")
    return tmp_path


AFFINE_IO = ("--input", "0", "1", "1x4", "/d/in.bin", "--output", "0", "/d/out.bin")


def read_f32(path: Path) -> list[float]:
    values: list[float] = np.fromfile(path, dtype="<f4").tolist()
    return values


# -- real architectures ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_expected_output(name: str, tmp_path: Path, nn_run: NnRun) -> None:
    """The onnx wheel's nine "light" models (real architectures, 224x224 compute), loaded from
    guest bytes; each output must match the expected tensor shipped with the model."""
    shutil.copy(LIGHT / f"light_{name}.onnx", tmp_path / "model.onnx")
    x = light_input(tmp_path / "model.onnx")
    x.astype("<f4").tofile(tmp_path / "in.bin")
    expected = light_expected(name)
    status = nn_run("--load", ENC_ONNX, CPU, "/d/model.onnx", "--input", "0", WITX_TYPE["f32"], dims(x.shape),
                    "/d/in.bin", "--output", "0", "/d/out.bin", flags=["--backend", "onnx"])
    assert status == 0
    got = np.fromfile(tmp_path / "out.bin", dtype="<f4")
    assert got.size == expected.size
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("name", ["squeezenet", "inception_v1"])
def test_light_architecture_with_random_weights_matches_native(name: str, tmp_path: Path, nn_run: NnRun) -> None:
    """The shipped light models answer a uniform softmax whatever the input; with random weights
    the output depends on every input element, so this checks the data path through the guest."""
    data = randomized_light(name)
    (tmp_path / "model.onnx").write_bytes(data)
    x = light_input(LIGHT / f"light_{name}.onnx")
    x.astype("<f4").tofile(tmp_path / "in.bin")
    status = nn_run("--load", ENC_ONNX, CPU, "/d/model.onnx", "--input", "0", WITX_TYPE["f32"], dims(x.shape),
                    "/d/in.bin", "--output", "0", "/d/out.bin")
    assert status == 0
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    native = session.run(None, {feed: x})[0]
    got = np.fromfile(tmp_path / "out.bin", dtype="<f4").reshape(native.shape)
    np.testing.assert_allclose(got, native, rtol=1e-3, atol=1e-7)
    other = session.run(None, {feed: x[:, ::-1].copy()})[0]
    assert np.abs(other - native).max() > 1e-5  # the comparison above could tell inputs apart


# -- tensor types and layouts ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f16", "f32", "f64", "u8", "i32", "i64"])
def test_every_witx_tensor_type_round_trips(dtype: str, tmp_path: Path, nn_run: NnRun) -> None:
    (tmp_path / "m.onnx").write_bytes(unary_model(dtype, (2, 3)))
    if dtype == "u8":
        x = np.array([[0, 1, 127], [128, 254, 255]], dtype=np.uint8)  # the whole unsigned range
    else:
        x = (np.arange(6).reshape(2, 3) - 2).astype(NUMPY[dtype])
    x.astype(x.dtype.newbyteorder("<")).tofile(tmp_path / "in.bin")
    status = nn_run("--load", ENC_ONNX, CPU, "/d/m.onnx", "--input", "0", WITX_TYPE[dtype], "2x3", "/d/in.bin",
                    "--output", "0", "/d/out.bin")
    assert status == 0
    got = np.fromfile(tmp_path / "out.bin", dtype=np.dtype(NUMPY[dtype]).newbyteorder("<")).reshape(2, 3)
    np.testing.assert_array_equal(got, expected_unary(dtype, x))


def test_several_inputs_and_outputs_by_declared_index(tmp_path: Path, nn_run: NnRun) -> None:
    (tmp_path / "m.onnx").write_bytes(multi_io_model())
    zeta = np.arange(6, dtype="<f4").reshape(2, 3) / 4
    alpha = np.array([5, -7, 1 << 40], dtype="<i8")
    zeta.tofile(tmp_path / "zeta.bin")
    alpha.tofile(tmp_path / "alpha.bin")
    status = nn_run("--load", ENC_ONNX, CPU, "/d/m.onnx",
                    "--input", "1", WITX_TYPE["i64"], "3", "/d/alpha.bin",
                    "--input", "0", WITX_TYPE["f32"], "2x3", "/d/zeta.bin",
                    "--output", "2", "/d/wide.bin", "--output", "0", "/d/double.bin", "--output", "1", "/d/neg.bin")
    assert status == 0
    np.testing.assert_array_equal(np.fromfile(tmp_path / "double.bin", "<f4").reshape(2, 3), zeta * 2)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "neg.bin", "<i8"), -alpha)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "wide.bin", "<f8").reshape(2, 3), zeta.astype("<f8"))


def test_dynamic_batch_dimension(tmp_path: Path, nn_run: NnRun) -> None:
    (tmp_path / "m.onnx").write_bytes(unary_model("f32", ("batch", 4)))
    x = np.arange(12, dtype="<f4").reshape(3, 4)
    x.tofile(tmp_path / "in.bin")
    assert nn_run("--load", ENC_ONNX, CPU, "/d/m.onnx", "--input", "0", "1", "3x4", "/d/in.bin",
                  "--output", "0", "/d/out.bin") == 0
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.bin", "<f4").reshape(3, 4), x * 2)


# -- bad models --------------------------------------------------------------------------------------


def test_garbage_and_truncated_models(tmp_path: Path, nn_run: NnRun, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "garbage.onnx").write_bytes(bytes(range(256)) * 8)
    squeezenet = (LIGHT / "light_squeezenet.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(squeezenet[: len(squeezenet) // 2])
    for name in ("garbage", "truncated"):
        assert nn_run("--load", ENC_ONNX, CPU, f"/d/{name}.onnx") == EXIT["invalid_argument"], name
        assert nn_run("--load", ENC_AUTODETECT, CPU, f"/d/{name}.onnx") == EXIT["invalid_encoding"], name
    capfd.readouterr()


def test_model_that_onnxruntime_cannot_parse(tmp_path: Path, nn_run: NnRun,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    # Top-level fields of a ModelProto (so format detection says ONNX) around a garbage graph.
    garbage_graph = b"\xff\xff\xff\xff\x0f" * 4
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x09" + b"\x3a" + bytes([len(garbage_graph)]) + garbage_graph)
    assert nn_run("--load", ENC_ONNX, CPU, "/d/bad.onnx", flags=["--backend", "onnx"]) == EXIT["invalid_argument"]
    assert "cannot be parsed" in capfd.readouterr().err  # wasinn refuses it before ONNX Runtime sees it


def test_unknown_operator_is_unsupported(tmp_path: Path, nn_run: NnRun, capfd: pytest.CaptureFixture[str]) -> None:
    nodes = [helper.make_node("NoSuchOperator", ["x"], ["y"])]
    (tmp_path / "m.onnx").write_bytes(model(nodes, [value("x", "f32", [1, 4])], [value("y", "f32", [1, 4])],
                                            check=False))
    assert nn_run("--load", ENC_ONNX, CPU, "/d/m.onnx") == EXIT["unsupported_operation"]
    assert "NoSuchOperator" in capfd.readouterr().err


def test_other_formats_are_refused_by_a_forced_onnx_backend(tmp_path: Path, nn_run: NnRun,
                                                            capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    assert nn_run("--load", ENC_TFLITE, CPU, "/d/m.tflite", flags=["--backend", "onnx"]) == EXIT["invalid_encoding"]
    assert "not tflite" in capfd.readouterr().err


# -- bad tensors ---------------------------------------------------------------------------------------


def test_wrong_tensor_type(affine: Path, nn_run: NnRun, capfd: pytest.CaptureFixture[str]) -> None:
    status = nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", "--input", "0", WITX_TYPE["i32"], "1x4", "/d/in.bin",
                    "--output", "0", "/d/out.bin")
    assert status == EXIT["invalid_argument"]
    assert "expects f32[1,4], got i32[1,4]" in capfd.readouterr().err


def test_wrong_shape(affine: Path, nn_run: NnRun, capfd: pytest.CaptureFixture[str]) -> None:
    np.arange(8, dtype="<f4").tofile(affine / "in8.bin")
    status = nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", "--input", "0", "1", "2x4", "/d/in8.bin")
    assert status == EXIT["invalid_argument"]
    assert "expects f32[1,4], got f32[2,4]" in capfd.readouterr().err
    # The rank counts too, even with the same number of elements.
    assert nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", "--input", "0", "1", "4", "/d/in.bin") == \
        EXIT["invalid_argument"]
    assert "expects f32[1,4], got f32[4]" in capfd.readouterr().err


def test_wrong_indexes_and_small_output_buffer(affine: Path, nn_run: NnRun,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    assert nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", "--input", "1", "1", "1x4", "/d/in.bin") == \
        EXIT["invalid_argument"]
    assert nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", "--input", "0", "1", "1x4", "/d/in.bin",
                  "--output", "1", "/d/out.bin") == EXIT["invalid_argument"]
    assert nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", "--input", "0", "1", "1x4", "/d/in.bin",
                  "--output", "0", "/d/out.bin", "8") == EXIT["too_large"]
    err = capfd.readouterr().err
    assert "input index 1 out of range" in err
    assert "output index 1 out of range" in err


def test_compute_without_inputs(affine: Path, nn_run: NnRun, capfd: pytest.CaptureFixture[str]) -> None:
    assert nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", "--output", "0", "/d/out.bin") == \
        EXIT["invalid_argument"]
    assert "input(s) 0 ('x') not set" in capfd.readouterr().err


# -- targets ---------------------------------------------------------------------------------------------


def test_forced_gpu_target_without_gpu_provider_fails_loudly(affine: Path, nn_run: NnRun,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    status = nn_run("--load-by-name", "m", *AFFINE_IO,
                    flags=["--nn-graph", f"m={affine / 'affine.onnx'}", "--backend", "onnx", "--target", "gpu"])
    assert status == EXIT["unsupported_operation"]
    err = capfd.readouterr().err
    assert "unsupported_operation" in err
    assert "backend onnx cannot serve" in err
    assert "GPU" in err
    assert not (affine / "out.bin").exists()  # nothing ran, on the CPU or elsewhere


@pytest.mark.parametrize(("target", "what"), [(GPU, "GPU"), (TPU, "TPU")])
def test_guest_requested_accelerator_is_unsupported(target: str, what: str, affine: Path, nn_run: NnRun,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    assert nn_run("--load", ENC_ONNX, target, "/d/affine.onnx", *AFFINE_IO) == EXIT["unsupported_operation"]
    assert f"no {what} execution provider" in capfd.readouterr().err


def test_explain_names_the_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(DIGITS_MODEL)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"1\. onnx\s+90 \[CPUExecutionProvider\]", out), out
    assert "winner: onnx" in out
    assert main(["explain", "--json", str(DIGITS_MODEL)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["winner"] == "onnx"
    assert report["candidates"][0]["device"] == "CPUExecutionProvider"
    assert main(["explain", "--target", "gpu", str(DIGITS_MODEL)]) == 1
    assert "no GPU execution provider" in capsys.readouterr().out


# -- config, contexts, formats ---------------------------------------------------------------------------


def test_load_by_name_with_config(affine: Path, nn_run: NnRun) -> None:
    config = json.dumps({"intra_op_num_threads": 1, "inter_op_num_threads": 1, "execution_mode": "parallel",
                         "graph_optimization_level": "basic", "allow_spinning": True, "providers": ["cpu"]})
    status = nn_run("--load-by-name-config", "m", config, *AFFINE_IO,
                    flags=["--nn-graph", f"m={affine / 'affine.onnx'}"])
    assert status == 0
    assert read_f32(affine / "out.bin") == [1, 3, 5, 7]


@pytest.mark.parametrize(("config", "message"), [
    ({"threads": 2}, "accepted keys: intra_op_num_threads, inter_op_num_threads"),
    ({"intra_op_num_threads": "2"}, "intra_op_num_threads must be an integer"),
    ({"graph_optimization_level": "max"}, "graph_optimization_level must be one of"),
    ({"providers": ["warp-drive"]}, "unknown execution provider 'warp-drive'"),
])
def test_bad_config_is_invalid_argument(config: dict[str, object], message: str, affine: Path, nn_run: NnRun,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    status = nn_run("--load-by-name-config", "m", json.dumps(config), *AFFINE_IO,
                    flags=["--nn-graph", f"m={affine / 'affine.onnx'}"])
    assert status == EXIT["invalid_argument"]
    assert message in capfd.readouterr().err


def test_several_contexts_on_one_graph(affine: Path, nn_run: NnRun) -> None:
    status = nn_run("--load", ENC_ONNX, CPU, "/d/affine.onnx", *AFFINE_IO, "--contexts", "3", "--repeat", "4",
                    "--unload")
    assert status == 0
    assert read_f32(affine / "out.bin") == [1, 3, 5, 7]


def test_ort_format_model_by_autodetect(tmp_path: Path, nn_run: NnRun, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "affine.onnx").write_bytes(affine_model())
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "affine.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(tmp_path / "affine.onnx"), options, providers=["CPUExecutionProvider"])
    np.arange(4, dtype="<f4").reshape(1, 4).tofile(tmp_path / "in.bin")
    assert nn_run("--load", ENC_AUTODETECT, CPU, "/d/affine.ort", *AFFINE_IO) == 0
    assert read_f32(tmp_path / "out.bin") == [1, 3, 5, 7]
    # An ORT-format file is not what the "onnx" encoding promises.
    assert nn_run("--load", ENC_ONNX, CPU, "/d/affine.ort", *AFFINE_IO) == EXIT["invalid_encoding"]
    assert "bytes are a ort model" in capfd.readouterr().err


# -- the demo ----------------------------------------------------------------------------------------------


def test_digits_demo_classifies_through_onnxruntime(capfd: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "--nn-graph", f"digits={DIGITS_MODEL}", "--dir", f"{DIGITS_IMAGES}::/images",
                   "--backend", "onnx", str(DIGITS_GUEST), "--images", "/images", "--quiet"])
    captured = capfd.readouterr()
    assert status == 0, captured.err
    summary = re.search(r"images: (\d+)\s+correct: (\d+)/(\d+)\s+accuracy: ([\d.]+)%\s+mean time: ", captured.out)
    assert summary, captured.out
    images, correct, labelled, accuracy = (float(g) for g in summary.groups())
    assert images == len(list(DIGITS_IMAGES.glob("*.pgm"))) > 100
    assert labelled == images
    assert correct / labelled > 0.9
    assert accuracy == pytest.approx(100 * correct / labelled, abs=0.01)
    assert "onnx on CPUExecutionProvider" in captured.err
