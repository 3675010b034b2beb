"""Tiny PyTorch models made by the tests themselves (no downloads), as TorchScript and .pt2 bytes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from wasinn import TensorType

REPO = Path(__file__).resolve().parents[3]
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"
DIGITS_GUEST = REPO / "guests" / "digits" / "digits.wasm"
DIGITS_ONNX = REPO / "demo" / "models" / "digits.onnx"
DIGITS_IMAGES = REPO / "demo" / "images"

# witx numbering (Wasmtime; WasmEdge numbers pytorch 3 as well), as nn-run takes it.
ENC_PYTORCH = 3
ENC_AUTODETECT = 6
WITX_TYPE = {"f16": 0, "f32": 1, "f64": 2, "u8": 3, "i32": 4, "i64": 5}
EXIT = {"invalid_argument": 65, "invalid_encoding": 66, "runtime_error": 69, "unsupported_operation": 70}

TORCH_DTYPE = {TensorType.F16: torch.float16, TensorType.BF16: torch.bfloat16, TensorType.F32: torch.float32,
               TensorType.F64: torch.float64, TensorType.U8: torch.uint8, TensorType.I8: torch.int8,
               TensorType.I32: torch.int32, TensorType.I64: torch.int64}


class AddOne(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


class Affine(torch.nn.Module):
    """y = x @ W + b and a second output, y's row sums: two outputs, random (seeded) weights."""

    def __init__(self, inputs: int = 4, outputs: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.weight = torch.nn.Parameter(torch.randn(inputs, outputs, generator=generator))
        self.bias = torch.nn.Parameter(torch.randn(outputs, generator=generator))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x @ self.weight + self.bias
        return y, y.sum(dim=-1)


class Mlp(torch.nn.Module):
    """The demo's digits classifier (64 -> 32 ReLU -> 10 softmax), weights given."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.fc1_weight = torch.nn.Parameter(torch.from_numpy(weights["fc1.weight"].copy()))
        self.fc1_bias = torch.nn.Parameter(torch.from_numpy(weights["fc1.bias"].copy()))
        self.fc2_weight = torch.nn.Parameter(torch.from_numpy(weights["fc2.weight"].copy()))
        self.fc2_bias = torch.nn.Parameter(torch.from_numpy(weights["fc2.bias"].copy()))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(pixels @ self.fc1_weight + self.fc1_bias)
        return torch.softmax(hidden @ self.fc2_weight + self.fc2_bias, dim=-1)


def torchscript(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), buffer)
    return buffer.getvalue()


def exported(module: torch.nn.Module, *example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(module.eval(), example), buffer)
    return buffer.getvalue()


def digits_weights() -> dict[str, np.ndarray]:
    """The demo model's weights, read from its ONNX file (the same numbers, now in PyTorch)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(DIGITS_ONNX)).graph
    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """The archive with some entries' contents replaced (or added)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.pop(info.filename, source.read(info.filename)))
        for name, content in replace.items():
            target.writestr(name, content)
    return out.getvalue()


def entries(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()
