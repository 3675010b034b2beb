"""The pure-Python flatbuffer verifier: real models pass, every known way to crash LiteRT is refused.

The corruptions are byte patches (no schema needed), several of them the reproducers that fuzzing
LiteRT 2.3 found: each made the bare interpreter segfault or abort.
"""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import pytest
from tflite_testlib import BIRDS_MODEL, DATA, DIGITS_MODEL, WAMR

from wasinn_backend_tflite._verify import ModelError, verify

ALL_MODELS = [*sorted(WAMR.glob("*.tflite")), BIRDS_MODEL, DIGITS_MODEL,
              *sorted(p for p in DATA.glob("*.tflite")
                      if p.name not in ("no_split_options.tflite", "one_input_batch_matmul.tflite")
                      and not p.name.startswith("degenerate_"))]


@pytest.mark.parametrize("path", ALL_MODELS, ids=[p.name for p in ALL_MODELS])
def test_real_models_verify(path: Path):
    info = verify(path.read_bytes())
    assert info.version == 3 and info.subgraphs == 1 and info.inputs and info.outputs


def test_model_info_describes_inputs_and_outputs():
    info = verify((WAMR / "mult_out.tflite").read_bytes())
    assert [(t.name, t.type, t.shape, t.signature) for t in info.inputs] == [
        ("serving_default_input_1:0", "FLOAT32", (1, 4, 4, 1), (-1, 4, 4, 1))]
    assert [t.index for t in info.outputs] == [4, 3]
    assert info.inputs[0].dynamic
    birds = verify(BIRDS_MODEL.read_bytes())
    assert birds.inputs[0].type == "UINT8" and birds.inputs[0].shape == (1, 224, 224, 3)
    assert birds.builtin_ops == {"ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                                 "SOFTMAX"}
    assert verify((DATA / "custom_op.tflite").read_bytes()).custom_ops == {"WasinnNoSuchOp"}


@pytest.mark.parametrize("data", [b"", b"TFL3", b"\x00" * 8, b"\x10\x00\x00\x00TFL2" + b"\x00" * 64],
                         ids=["empty", "short", "no-identifier", "wrong-identifier"])
def test_not_tflite(data: bytes):
    with pytest.raises(ModelError, match="TFL3"):
        verify(data)


def test_every_truncation_is_refused():
    data = (DATA / "affine.tflite").read_bytes()
    for keep in range(len(data)):
        with pytest.raises(ModelError):
            verify(data[:keep])


def test_random_bytes_never_escape_as_another_exception():
    rng = random.Random(3)
    for size in range(8, 600, 7):
        body = bytearray(rng.randbytes(size))
        body[4:8] = b"TFL3"
        with pytest.raises(ModelError):
            verify(bytes(body))


def test_every_single_bit_flip_of_a_small_model_verifies_or_fails_cleanly():
    data = (WAMR / "max.tflite").read_bytes()
    outcomes = {"ok": 0, "refused": 0}
    for pos in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            try:
                verify(bytes(flipped))
                outcomes["ok"] += 1
            except ModelError:
                outcomes["refused"] += 1
    assert outcomes["refused"] > outcomes["ok"] > 0


def patched(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with its only occurrence of ``old`` replaced by ``new``."""
    assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times"
    return data.replace(old, new)


def f32(value: float) -> bytes:
    return struct.pack("<f", value)


def test_root_offset_outside_the_model():
    data = bytearray((WAMR / "sum.tflite").read_bytes())
    data[0:4] = struct.pack("<I", 0xFFFFFF00)
    with pytest.raises(ModelError, match="root table"):
        verify(bytes(data))


def test_negative_pool_filter():  # fuzz reproducer: SIGSEGV in invoke
    data = (WAMR / "max.tflite").read_bytes()
    # The Pool2DOptions table of max.tflite: its vtable offset (14), then filter_height 5, filter_width 5,
    # stride_h 5 (the fuzzer's flip set filter_height to INT_MIN).
    options = struct.pack("<iiii", 14, 5, 5, 5)
    bad = patched(data, options, struct.pack("<iiii", 14, -(1 << 31), 5, 5))
    with pytest.raises(ModelError, match=r"Pool2DOptions\.Filter"):
        verify(bad)


def test_subnormal_quantization_scale():  # fuzz reproducer: SIGSEGV in allocate_tensors
    data = (DATA / "quant.tflite").read_bytes()
    with pytest.raises(ModelError, match="quantization scale"):
        verify(patched(data, f32(0.5), struct.pack("<I", 0x56C)))
    with pytest.raises(ModelError, match="quantization scale"):
        verify(patched(data, f32(0.5), f32(0.0)))
    with pytest.raises(ModelError, match="quantization scale"):
        verify(patched(data, f32(0.25), f32(float("nan"))))


@pytest.mark.parametrize(("old", "new"), [(10, 256), (10, -1), (-3, -129), (-3, 128)])
def test_zero_point_outside_the_type(old: int, new: int):  # fuzz reproducer: SIGSEGV in allocate
    data = (DATA / "quant.tflite").read_bytes()
    with pytest.raises(ModelError, match="zero point"):
        verify(patched(data, struct.pack("<q", old), struct.pack("<q", new)))


def test_scale_without_zero_point():  # fuzz reproducer (birds): SIGABRT in allocate_tensors
    data = (DATA / "quant.tflite").read_bytes()
    # The scale vector [0.5]: length 1 -> 0, so 0 scales but 1 zero point.
    with pytest.raises(ModelError, match="0 quantization scale"):
        verify(patched(data, struct.pack("<I", 1) + f32(0.5), struct.pack("<I", 0) + f32(0.5)))


def test_missing_first_input():  # fuzz reproducer: QUANTIZE with input -1, SIGSEGV
    data = (DATA / "affine.tflite").read_bytes()
    inputs = struct.pack("<Iii", 2, 3, 2)  # ADD's inputs [doubled, one]
    with pytest.raises(ModelError, match="input 0 is missing"):
        verify(patched(data, inputs, struct.pack("<Iii", 2, -1, 2)))
    with pytest.raises(ModelError, match="input 1 is missing"):
        verify(patched(data, inputs, struct.pack("<Iii", 2, 3, -1)))


def test_tensor_index_out_of_range():
    data = (DATA / "affine.tflite").read_bytes()
    with pytest.raises(ModelError, match="index 9 out of range"):
        verify(patched(data, struct.pack("<Iii", 2, 3, 2), struct.pack("<Iii", 2, 3, 9)))


def test_operator_writing_a_constant():
    data = (DATA / "affine.tflite").read_bytes()
    # MUL's outputs [doubled=3] -> [two=1], a tensor backed by a constant buffer.
    with pytest.raises(ModelError, match="writes constant tensor 1"):
        verify(patched(data, struct.pack("<Ii", 1, 3), struct.pack("<Ii", 1, 1)))


def test_constant_buffer_must_match_its_tensor():
    data = (DATA / "types.tflite").read_bytes()
    # new_shape's data: 8 bytes (int32 [3, 2]) -> claim 4.
    with pytest.raises(ModelError, match="holds 4 bytes"):
        verify(patched(data, struct.pack("<Iii", 8, 3, 2), struct.pack("<Iii", 4, 3, 2)))


def test_shape_must_be_sane():
    data = (DIGITS_MODEL).read_bytes()
    shape = struct.pack("<Iii", 2, 1, 64)  # pixels: [1, 64]
    assert data.count(shape) == 1
    with pytest.raises(ModelError, match="invalid shape"):
        verify(patched(data, shape, struct.pack("<Iii", 2, 1, -64)))


def test_verification_is_fast_enough_for_can_handle():
    data = BIRDS_MODEL.read_bytes()
    started = time.perf_counter()
    verify(data)
    assert time.perf_counter() - started < 1.0  # 12-25 ms here; generous for a busy CI machine


def test_operator_carrying_another_operators_options():  # fuzz reproducer: opcode flips
    data = (DATA / "affine.tflite").read_bytes()
    # MUL's operator code: builtin_code 18 -> 22 (RESHAPE), while it still carries MulOptions.
    with pytest.raises(ModelError, match="carries MulOptions, not ReshapeOptions"):
        verify(patched(data, struct.pack("<i", 18), struct.pack("<i", 22)))


def test_split_without_options():  # crashes LiteRT 2.3 in allocate_tensors
    with pytest.raises(ModelError, match="has no SplitOptions"):
        verify((DATA / "no_split_options.tflite").read_bytes())


def test_operator_with_too_few_inputs():  # fuzz reproducer: crashes LiteRT 2.3 in allocate_tensors
    with pytest.raises(ModelError, match="1 inputs, not 2"):
        verify((DATA / "one_input_batch_matmul.tflite").read_bytes())


def test_tensor_too_large_for_int32_kernels():  # fuzz reproducer: [1073741825, 4] crashed in get_tensor
    data = DIGITS_MODEL.read_bytes()
    with pytest.raises(ModelError, match="too large"):
        verify(patched(data, struct.pack("<Iii", 2, 1, 64), struct.pack("<Iii", 2, 1 << 26, 64)))


def test_model_output_of_an_opaque_type():  # fuzz reproducer: a VARIANT output crashed get_tensor
    data = bytearray((DATA / "types.tflite").read_bytes())
    position = 771  # out_f64's type byte in the committed file (make_models.py --check keeps it there)
    assert data[position] == 10  # FLOAT64
    data[position] = 14  # VARIANT
    with pytest.raises(ModelError, match="of type VARIANT"):
        verify(bytes(data))
