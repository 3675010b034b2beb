"""Shared paths and helpers of the tflite tests: models, guests, running a guest with ``wasinn run``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from wasinn.testing.models import third_party_dir

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
REPO = HERE.parents[2]
THIRD_PARTY = third_party_dir(__file__)  # models/third-party, checked against SOURCES.md
WAMR = THIRD_PARTY / "wamr-tflite-test-models"
BIRDS = THIRD_PARTY / "wasmedge-tflite-birds"
BIRDS_MODEL = BIRDS / "lite-model_aiy_vision_classifier_birds_V1_3.tflite"
DIGITS_MODEL = REPO / "demo" / "models" / "digits.tflite"
DIGITS_IMAGES = REPO / "demo" / "images"
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"
DIGITS_GUEST = REPO / "guests" / "digits" / "digits.wasm"

# witx numbering, as nn-run takes it on its command line
ENC_TFLITE = 4
TYPE = {"f16": 0, "f32": 1, "f64": 2, "u8": 3, "i32": 4, "i64": 5}
ERRNO = {"invalid_argument": 1, "invalid_encoding": 2, "busy": 4, "runtime_error": 5, "unsupported_operation": 6,
         "too_large": 7, "not_found": 8}


def exit_for(error: str) -> int:
    """The exit status nn-run uses for a wasi-nn error: 64 + errno."""
    return 64 + ERRNO[error]


@dataclass
class GuestRun:
    """What one guest run left behind: exit status, stdout, and the files it wrote in /d."""

    rc: int
    out: str
    err: str
    folder: Path

    def floats(self, line: int = 0) -> list[float]:
        return [float(v) for v in self.out.split("\n")[line].split()]

    def output(self, name: str, dtype: str | np.dtype) -> np.ndarray:
        return np.fromfile(self.folder / name, dtype=dtype)


class Guests:
    """Runs guests in-process with ``wasinn run`` (the real CLI, the real host, the real ABI)."""

    def __init__(self, folder: Path, capfd: pytest.CaptureFixture[str]) -> None:
        self.folder = folder
        self.capfd = capfd

    def write(self, name: str, array: np.ndarray | bytes) -> str:
        """Write an input file into the guest's /d folder; returns its guest path."""
        path = self.folder / name
        path.write_bytes(array if isinstance(array, bytes) else np.ascontiguousarray(array).tobytes())
        return f"/d/{name}"

    def run(self, args: Sequence[str], *, models: dict[str, Path] | None = None, guest: Path = NN_RUN,
            backend: str | None = "tflite", extra: Sequence[str] = ()) -> GuestRun:
        from wasinn.cli.main import main
        argv = ["run", "--dir", f"{self.folder}::/d"]
        for name, path in (models or {}).items():
            argv += ["--nn-graph", f"{name}={path}"]
        if backend:
            argv += ["--backend", backend]
        argv += [*extra, str(guest), *args]
        self.capfd.readouterr()
        rc = main(argv)
        captured = self.capfd.readouterr()
        return GuestRun(rc, captured.out, captured.err, self.folder)


def accuracy(text: str) -> float:
    found = re.search(r"accuracy: ([0-9.]+)%", text)
    assert found, text
    return float(found.group(1))
