"""The committed guest .wasm files: reproducible from source, and importing the expected ABI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import wasmtime

GUESTS_DIR = Path(__file__).resolve().parents[2] / "guests"

STANDARD = {
    "load": 5,
    "load_by_name": 3,
    "init_execution_context": 2,
    "set_input": 3,
    "compute": 1,
    "get_output": 5,
}
WASMEDGE_EXTRAS = {
    "load_by_name_with_config": 5,
    "unload": 1,
    "finalize_execution_context": 1,
}
EXPECTED_NN_IMPORTS = {
    "nn-run/nn-run.wasm": {**STANDARD, **WASMEDGE_EXTRAS},
    "digits/digits.wasm": STANDARD,
    # WasmEdge GGML conventions: by name with config (or load "preload:PATH"), and token streaming
    "llm-chat/llm-chat.wasm": {**{k: v for k, v in STANDARD.items() if k != "load_by_name"}, **WASMEDGE_EXTRAS,
                               "compute_single": 1, "get_output_single": 5, "fini_single": 1},
    # WasmEdge Whisper conventions with the standard imports only (read under the witx numbering)
    "whisper/whisper.wasm": STANDARD,
}


def _load_build_module():
    spec = importlib.util.spec_from_file_location(
        "guests_build", GUESTS_DIR / "build.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


def test_every_guest_is_listed():
    assert sorted(g.output for g in build.GUESTS) == sorted(EXPECTED_NN_IMPORTS)


def test_rebuild_is_byte_identical(tmp_path):
    problem = build.toolchain_problem()
    if problem:
        pytest.skip(f"cannot rebuild guests here: {problem}")
    version = build.clang_version()
    if version != build.PINNED_CLANG:
        pytest.skip(
            f"byte-identity needs the pinned toolchain {build.PINNED_CLANG!r}, found {version!r}"
        )
    outputs = build.build_all(tmp_path, verbose=False)
    for guest, rebuilt in zip(build.GUESTS, outputs, strict=True):
        committed = GUESTS_DIR / guest.output
        assert rebuilt.read_bytes() == committed.read_bytes(), (
            f"{guest.output} differs from a fresh build; run `python guests/build.py` and commit the result"
        )


@pytest.mark.parametrize("wasm", sorted(EXPECTED_NN_IMPORTS))
def test_committed_wasm_imports(wasm):
    module = wasmtime.Module.from_file(wasmtime.Engine(), str(GUESTS_DIR / wasm))
    nn = {}
    for imp in module.imports:
        if imp.module == "wasi_ephemeral_nn":
            ty = imp.type
            assert isinstance(ty, wasmtime.FuncType), imp.name
            assert all(str(p) == "i32" for p in ty.params), imp.name
            assert [str(r) for r in ty.results] == ["i32"], imp.name
            nn[imp.name] = len(ty.params)
        else:
            assert imp.module == "wasi_snapshot_preview1", (imp.module, imp.name)
    assert nn == EXPECTED_NN_IMPORTS[wasm]
    assert "memory" in {e.name for e in module.exports}
    assert "_start" in {e.name for e in module.exports}
