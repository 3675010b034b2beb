from __future__ import annotations

import io
import struct
import zipfile

import pytest

from wasinn import ModelFormat, detect_format
from wasinn.formats import is_onnx

IR_XML = b'<?xml version="1.0"?>\n<net name="affine" version="11">\n<layers/></net>'


def onnx_like(fields: bytes) -> bytes:
    return fields


def field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = bytes([number << 3 | wire])
    if wire == 0:
        assert isinstance(payload, int)
        return key + bytes([payload])
    assert isinstance(payload, bytes)
    return key + bytes([len(payload)]) + payload


def zipped(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    return buffer.getvalue()


MINIMAL_ONNX = field(1, 0, 9) + field(2, 2, b"test") + field(7, 2, b"\x0a\x00") + field(8, 2, b"\x10\x0d")


@pytest.mark.parametrize(
    ("builders", "expected"),
    [
        ([b"\x1c\x00\x00\x00TFL3" + b"\0" * 16], ModelFormat.TFLITE),
        ([b"GGUF\x03\x00\x00\x00"], ModelFormat.GGUF),
        ([zipped("m/data.pkl", "m/constants.pkl", "m/code/__torch__/m.py", "m/version")], ModelFormat.TORCHSCRIPT),
        ([zipped("archive/archive_format", "archive/models/model.json", "archive/data/weights/w0")],
         ModelFormat.TORCH_EXPORT),
        ([b"PK\x03\x04....archive/data.pkl...."], ModelFormat.UNKNOWN),  # the name, but no zip
        ([zipped("ckpt/data.pkl", "ckpt/data/0", "ckpt/version")], ModelFormat.UNKNOWN),  # torch.save checkpoint
        ([zipped("archive/archive_format", "archive/other.json")], ModelFormat.UNKNOWN),
        ([zipped("m/data.pkl", "m/constants.pkl", "m/code/__torch__/m.py")[:-30]], ModelFormat.UNKNOWN),  # truncated
        ([IR_XML, b"\0" * 8], ModelFormat.OPENVINO_IR),
        ([MINIMAL_ONNX], ModelFormat.ONNX),
        ([IR_XML], ModelFormat.UNKNOWN),  # IR without weights cannot be loaded
        ([b"PK\x03\x04 an npz, not torchscript"], ModelFormat.UNKNOWN),
        ([b"random bytes that are nothing"], ModelFormat.UNKNOWN),
        ([b""], ModelFormat.UNKNOWN),
        ([], ModelFormat.UNKNOWN),
        ([MINIMAL_ONNX, MINIMAL_ONNX], ModelFormat.UNKNOWN),
    ],
)
def test_detect_format(builders: list[bytes], expected: ModelFormat) -> None:
    assert detect_format(builders) == expected


def test_onnx_needs_graph_and_ir_version() -> None:
    assert not is_onnx(field(1, 0, 9))  # no graph
    assert not is_onnx(field(7, 2, b""))  # no ir_version
    assert not is_onnx(MINIMAL_ONNX[:-1])  # truncated
    assert not is_onnx(MINIMAL_ONNX + field(15, 2, b"x"))  # field ModelProto does not have
    assert not is_onnx(field(1, 2, b"x") + field(7, 2, b""))  # right field, wrong wire type


def test_onnx_walk_survives_hostile_varints() -> None:
    assert not is_onnx(b"\x08" + b"\xff" * 20)
    assert not is_onnx(b"\x3a" + b"\xff\xff\xff\xff\x0f")  # length far past the end
    assert not is_onnx(struct.pack("<I", 0xFFFFFFFF) * 4)


def test_real_onnx_model_is_detected() -> None:
    from core_paths import REPO

    model = REPO / "demo" / "models" / "digits.onnx"
    assert detect_format([model.read_bytes()]) == ModelFormat.ONNX
    tflite = REPO / "demo" / "models" / "digits.tflite"
    assert detect_format([tflite.read_bytes()]) == ModelFormat.TFLITE
    xml, weights = REPO / "demo" / "models" / "digits.xml", REPO / "demo" / "models" / "digits.bin"
    assert detect_format([xml.read_bytes(), weights.read_bytes()]) == ModelFormat.OPENVINO_IR


def test_model_format_is_an_open_string_type() -> None:
    custom = ModelFormat("npz-mlp")
    assert custom == "npz-mlp" and custom.value == "npz-mlp"
    assert ModelFormat("onnx") == ModelFormat.ONNX
