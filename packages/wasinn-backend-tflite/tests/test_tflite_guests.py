"""End to end: real wasm guests (nn-run, digits) on ``wasinn run`` with the tflite backend.

Every model and tensor here crosses the real wasi_ephemeral_nn ABI from guest linear memory.
"""

from __future__ import annotations

import numpy as np
import pytest
from tflite_testlib import (
    BIRDS,
    BIRDS_MODEL,
    DATA,
    DIGITS_GUEST,
    DIGITS_IMAGES,
    DIGITS_MODEL,
    ENC_TFLITE,
    TYPE,
    WAMR,
    Guests,
    accuracy,
    exit_for,
)

# (model, input dims, expected outputs by index) for an input x[i] = i, from WAMR's own tests.
WAMR_CASES = [
    ("sum", (1, 5, 5, 1), {0: [300.0]}),
    ("max", (1, 5, 5, 1), {0: [24.0]}),
    ("average", (1, 5, 5, 1), {0: [12.0]}),
    ("mult_dim", (1, 3, 3, 1), {0: [float(i) for i in range(9)]}),
    ("mult_out", (1, 4, 4, 1), {0: [24.0, 28.0, 32.0, 36.0], 1: [6.0, 7.0, 8.0, 9.0]}),
]


def dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


@pytest.mark.parametrize(("name", "shape", "expected"), WAMR_CASES, ids=[c[0] for c in WAMR_CASES])
def test_wamr_models_by_name(guests: Guests, name: str, shape: tuple[int, ...], expected: dict[int, list[float]]):
    x = guests.write("x.bin", np.arange(np.prod(shape), dtype=np.float32))
    args = ["--load-by-name", "m", "--input", "0", "1", dims(shape), x]
    for index in expected:
        args += ["--output", str(index), f"/d/out{index}.bin"]
    run = guests.run(args, models={"m": WAMR / f"{name}.tflite"})
    assert run.rc == 0, run.err
    for index, values in expected.items():
        np.testing.assert_array_equal(run.output(f"out{index}.bin", np.float32), values)


@pytest.mark.parametrize(("name", "shape", "expected"), WAMR_CASES, ids=[c[0] for c in WAMR_CASES])
def test_wamr_models_loaded_from_guest_bytes(guests: Guests, name: str, shape: tuple[int, ...],
                                             expected: dict[int, list[float]]):
    # The guest reads the model itself and hands the bytes to load(tensorflowlite, cpu).
    model = guests.write("model.tflite", (WAMR / f"{name}.tflite").read_bytes())
    x = guests.write("x.bin", np.arange(np.prod(shape), dtype=np.float32))
    args = ["--load", str(ENC_TFLITE), "0", model, "--input", "0", "1", dims(shape), x]
    for index in expected:
        args += ["--print-output", str(index), "1"]
    run = guests.run(args)
    assert run.rc == 0, run.err
    for line, values in enumerate(expected.values()):
        assert run.floats(line) == values


def test_dynamic_batch_is_resized(guests: Guests):
    # sum.tflite declares [-1,5,5,1]: a batch of 2 reallocates the context's interpreter.
    x = guests.write("x.bin", np.arange(50, dtype=np.float32))
    run = guests.run(["--load-by-name", "m", "--input", "0", "1", "2x5x5x1", x, "--print-output", "0", "1"],
                     models={"m": WAMR / "sum.tflite"})
    assert run.rc == 0, run.err
    assert run.floats() == [300.0, float(sum(range(25, 50)))]


def test_contexts_and_repeats(guests: Guests):
    x = guests.write("x.bin", np.arange(25, dtype=np.float32))
    run = guests.run(["--load-by-name", "m", "--contexts", "3", "--repeat", "2", "--input", "0", "1", "1x5x5x1", x,
                      "--print-output", "0", "1", "--unload"], models={"m": WAMR / "average.tflite"})
    assert run.rc == 0, run.err
    assert run.out.split() == ["12"] * 6


def test_birds_classifier_ranks_the_mandarin_duck_first(guests: Guests):
    from PIL import Image
    with Image.open(BIRDS / "bird.jpg") as image:
        pixels = np.asarray(image.convert("RGB").resize((224, 224)), dtype=np.uint8)
    x = guests.write("bird.rgb", pixels)
    run = guests.run(["--load-by-name", "birds", "--input", "0", str(TYPE["u8"]), "1x224x224x3", x,
                      "--output", "0", "/d/scores.bin"], models={"birds": BIRDS_MODEL})
    assert run.rc == 0, run.err
    scores = run.output("scores.bin", np.uint8)
    assert scores.shape == (965,)
    assert int(np.argmax(scores)) == 166
    assert scores[166] > 128  # a confident u8 probability (scale 1/256), not a tie


def test_digits_demo_guest_is_accurate(guests: Guests):
    run = guests.run(["--images", "/images", "--quiet"], models={"digits": DIGITS_MODEL}, guest=DIGITS_GUEST,
                     extra=["--dir", f"{DIGITS_IMAGES}::/images"])
    assert run.rc == 0, run.err
    assert accuracy(run.out) > 90.0


def test_every_witx_tensor_type_round_trips(guests: Guests):
    # types.tflite reshapes one [2,3] input per type to [3,2]; the bytes must come back unchanged.
    kinds = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "u8": np.uint8, "i32": np.int32,
             "i64": np.int64}
    args = ["--load-by-name", "types"]
    values = {}
    for index, (name, dtype) in enumerate(kinds.items()):
        values[name] = (np.arange(6) * 3 - (0 if name == "u8" else 5)).astype(dtype)
        args += ["--input", str(index), str(TYPE[name]), "2x3", guests.write(f"{name}.bin", values[name])]
    for index, name in enumerate(kinds):
        args += ["--output", str(index), f"/d/out_{name}.bin"]
    run = guests.run(args, models={"types": DATA / "types.tflite"})
    assert run.rc == 0, run.err
    for name, dtype in kinds.items():
        np.testing.assert_array_equal(run.output(f"out_{name}.bin", dtype), values[name])


# -- errors reach the guest as error codes -----------------------------------------------------------
@pytest.mark.parametrize("target", [1, 2], ids=["gpu", "tpu"])
def test_gpu_or_tpu_without_a_delegate_is_unsupported(guests: Guests, target: int):
    model = guests.write("model.tflite", (WAMR / "sum.tflite").read_bytes())
    run = guests.run(["--load", str(ENC_TFLITE), str(target), model])
    assert run.rc == exit_for("unsupported_operation"), run.err


def test_gpu_target_of_a_named_model_is_unsupported(guests: Guests):
    run = guests.run(["--load-by-name", "m"], models={"m": WAMR / "sum.tflite"}, extra=["--target", "gpu"])
    assert run.rc == exit_for("unsupported_operation"), run.err


def test_garbage_bytes_are_an_error_not_a_crash(guests: Guests):
    rng = np.random.default_rng(7)
    garbage = guests.write("garbage.tflite", rng.integers(0, 256, 4096, dtype=np.uint8))
    run = guests.run(["--load", str(ENC_TFLITE), "0", garbage])
    assert run.rc == exit_for("invalid_argument"), run.err  # not a TFLite file at all: the core says so
    tagged = bytearray(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    tagged[4:8] = b"TFL3"
    fake = guests.write("tagged.tflite", bytes(tagged))
    run = guests.run(["--load", str(ENC_TFLITE), "0", fake])
    assert run.rc == exit_for("invalid_argument"), run.err  # looks like TFLite: the verifier rejects it


@pytest.mark.parametrize("keep", [8, 100, 600, 1000])
def test_truncated_model_is_invalid_argument(guests: Guests, keep: int):
    model = guests.write("cut.tflite", (WAMR / "mult_out.tflite").read_bytes()[:keep])
    run = guests.run(["--load", str(ENC_TFLITE), "0", model])
    assert run.rc == exit_for("invalid_argument"), run.err


def test_truncated_birds_model_is_invalid_argument(guests: Guests):
    model = guests.write("cut.tflite", BIRDS_MODEL.read_bytes()[:3_000_000])
    run = guests.run(["--load", str(ENC_TFLITE), "0", model])
    assert run.rc == exit_for("invalid_argument"), run.err


def test_unrouted_malformed_model_is_still_an_error(guests: Guests):
    # Without --backend the core ranks every installed backend; whatever it picks, the guest
    # gets an error code for a TFL3-tagged wreck (and the process survives).
    data = bytearray((WAMR / "sum.tflite").read_bytes())
    data[12:400] = bytes(388)
    model = guests.write("wreck.tflite", bytes(data))
    run = guests.run(["--load", str(ENC_TFLITE), "0", model], backend=None, extra=["--prefer", "tflite"])
    assert run.rc in (exit_for("invalid_argument"), exit_for("invalid_encoding")), run.err


def test_wrong_dtype_is_invalid_argument(guests: Guests):
    x = guests.write("x.bin", np.arange(25, dtype=np.uint8))
    run = guests.run(["--load-by-name", "m", "--input", "0", str(TYPE["u8"]), "1x5x5x1", x],
                     models={"m": WAMR / "sum.tflite"})
    assert run.rc == exit_for("invalid_argument"), run.err
    assert "expects f32[?,5,5,1]" in run.err


def test_wrong_static_shape_is_invalid_argument(guests: Guests):
    x = guests.write("x.bin", np.zeros(65, dtype=np.float32))
    run = guests.run(["--load-by-name", "digits", "--input", "0", "1", "1x65", x], models={"digits": DIGITS_MODEL})
    assert run.rc == exit_for("invalid_argument"), run.err
    assert "expects f32[1,64]" in run.err


def test_wrong_rank_of_dynamic_input_is_invalid_argument(guests: Guests):
    x = guests.write("x.bin", np.zeros(25, dtype=np.float32))
    run = guests.run(["--load-by-name", "m", "--input", "0", "1", "25", x], models={"m": WAMR / "sum.tflite"})
    assert run.rc == exit_for("invalid_argument"), run.err


def test_birds_wants_u8_not_f32(guests: Guests):
    x = guests.write("x.bin", np.zeros(224 * 224 * 3, dtype=np.float32))
    run = guests.run(["--load-by-name", "birds", "--input", "0", "1", "1x224x224x3", x],
                     models={"birds": BIRDS_MODEL})
    assert run.rc == exit_for("invalid_argument"), run.err
    assert "expects u8[1,224,224,3]" in run.err


def test_output_index_out_of_range(guests: Guests):
    x = guests.write("x.bin", np.arange(25, dtype=np.float32))
    run = guests.run(["--load-by-name", "m", "--input", "0", "1", "1x5x5x1", x, "--print-output", "1", "1"],
                     models={"m": WAMR / "sum.tflite"})
    assert run.rc == exit_for("invalid_argument"), run.err


def test_output_buffer_too_small(guests: Guests):
    x = guests.write("x.bin", np.arange(16, dtype=np.float32))
    run = guests.run(["--load-by-name", "m", "--input", "0", "1", "1x4x4x1", x, "--output", "0", "/d/o.bin", "8"],
                     models={"m": WAMR / "mult_out.tflite"})
    assert run.rc == exit_for("too_large"), run.err


def test_compute_without_inputs_is_invalid_argument(guests: Guests):
    run = guests.run(["--load-by-name", "m", "--print-output", "0", "1"], models={"m": WAMR / "sum.tflite"})
    assert run.rc == exit_for("invalid_argument"), run.err


def test_custom_op_model_is_unsupported(guests: Guests):
    model = guests.write("custom.tflite", (DATA / "custom_op.tflite").read_bytes())
    run = guests.run(["--load", str(ENC_TFLITE), "0", model])
    assert run.rc == exit_for("unsupported_operation"), run.err
    assert "WasinnNoSuchOp" in run.err


def test_operator_unknown_to_the_runtime_is_unsupported(guests: Guests):
    model = guests.write("future.tflite", (DATA / "future_op.tflite").read_bytes())
    run = guests.run(["--load", str(ENC_TFLITE), "0", model])
    assert run.rc == exit_for("unsupported_operation"), run.err


def test_config_from_the_guest(guests: Guests):
    x = guests.write("x.bin", np.arange(25, dtype=np.float32))
    ok = guests.run(["--load-by-name-config", "m", '{"num_threads": 1, "xnnpack": false}',
                     "--input", "0", "1", "1x5x5x1", x, "--print-output", "0", "1"], models={"m": WAMR / "sum.tflite"})
    assert ok.rc == 0, ok.err
    assert ok.floats() == [300.0]
    unknown = guests.run(["--load-by-name-config", "m", '{"threads": 1}'], models={"m": WAMR / "sum.tflite"})
    assert unknown.rc == exit_for("invalid_argument"), unknown.err
    # A guest cannot make the host dlopen a library of its choosing.
    delegate = guests.run(["--load-by-name-config", "m", '{"delegate": "/d/evil.so"}'],
                          models={"m": WAMR / "sum.tflite"})
    assert delegate.rc == exit_for("unsupported_operation"), delegate.err
