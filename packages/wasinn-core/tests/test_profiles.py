"""Guests built for Wasmtime, WasmEdge and WAMR run unchanged: each profile's numbering and layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from profile_guests import ProfileGuest

from wasinn.abi.profiles import PROFILES, get_profile
from wasinn.cli.main import main
from wasinn.enums import ErrorCode, GraphEncoding, TensorType
from wasinn.errors import ConfigurationError
from wasinn_test_backends import affine_model

U8_INPUT = np.arange(12, dtype=np.uint8).reshape(1, 12)
U8_EXPECTED = (U8_INPUT * 2 + 1).astype(np.uint8).tobytes()
F32_INPUT = np.arange(4, dtype=np.float32).reshape(1, 4)
F32_EXPECTED = (F32_INPUT * 2 + 1).tobytes()

CASES = {
    # name: (guest, expected stdout, profile wasinn should infer)
    "wasmtime witx": (ProfileGuest(affine_model("u8", (1, 12)), 5, 3, (1, 12), U8_INPUT.tobytes()), U8_EXPECTED),
    "wasi-nn crate 0.5, u8 sent as 2": (ProfileGuest(affine_model("u8", (1, 12)), 5, 2, (1, 12), U8_INPUT.tobytes()),
                                        U8_EXPECTED),
    "WAMR 2.1 to 2.3, u8 sent as 4": (ProfileGuest(affine_model("u8", (1, 12)), 6, 4, (1, 12), U8_INPUT.tobytes()),
                                      U8_EXPECTED),
    "WAMR >= 2.4, autodetect sent as 6": (ProfileGuest(affine_model("f32"), 6, 1, (1, 4), F32_INPUT.tobytes()),
                                          F32_EXPECTED),
    "WasmEdge, streaming imports": (ProfileGuest(affine_model("f32"), 5, 1, (1, 4), F32_INPUT.tobytes(),
                                                 extra_imports=("compute_single", "get_output_single",
                                                                "fini_single")), F32_EXPECTED),
    "WAMR legacy wasi_nn, f32": (ProfileGuest(affine_model("f32"), 6, 1, (1, 4), F32_INPUT.tobytes(), style="legacy"),
                                 F32_EXPECTED),
    "WAMR legacy wasi_nn, u8 as 2": (ProfileGuest(affine_model("u8", (1, 12)), 6, 2, (1, 12), U8_INPUT.tobytes(),
                                                  style="legacy"), U8_EXPECTED),
}


def run_guest(tmp_path: Path, guest: ProfileGuest, *flags: str) -> int:
    path = tmp_path / "guest.wat"
    path.write_text(guest.wat())
    return main(["run", *flags, str(path)])


@pytest.mark.parametrize("case", list(CASES))
def test_each_profile_runs_without_flags(case: str, tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    guest, expected = CASES[case]
    assert run_guest(tmp_path, guest) == 0, capfdbinary.readouterr().err
    assert capfdbinary.readouterr().out == expected


def test_profile_inference_is_logged(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    guest, _ = CASES["WasmEdge, streaming imports"]
    assert run_guest(tmp_path, guest, "-v") == 0
    assert "ABI profile wasmedge" in capfd.readouterr().err
    guest, _ = CASES["wasi-nn crate 0.5, u8 sent as 2"]
    assert run_guest(tmp_path, guest, "-v") == 0
    assert "tensor type 2 read as u8 (ABI profile witx-2022), not f64" in capfd.readouterr().err


@pytest.mark.parametrize(("case", "wrong", "errno", "message"), [
    ("wasi-nn crate 0.5, u8 sent as 2", "witx", 1, "12 bytes of data but f64[1x12] needs 96"),
    ("WAMR 2.1 to 2.3, u8 sent as 4", "witx", 2, "unknown graph encoding 6 (ABI profile witx)"),
    ("wasmtime witx", "witx-2022", 1, "12 bytes of data but i32[1x12] needs 48"),
    ("WAMR legacy wasi_nn, u8 as 2", "witx", 1, "12 bytes of data but f64[1x12] needs 96"),
])
def test_a_forced_wrong_profile_fails_clearly(case: str, wrong: str, errno: int, message: str, tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    guest, _ = CASES[case]
    if guest.style == "legacy":
        # the legacy module always speaks its own numbering; forcing witx affects wasi_ephemeral_nn only
        assert run_guest(tmp_path, guest, "--abi", wrong) == 0
        return
    assert run_guest(tmp_path, guest, "--abi", wrong) == 64 + errno  # an error, never wrong numbers
    assert message in capfd.readouterr().err


def test_forced_right_profile_works(tmp_path: Path, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    guest, expected = CASES["WAMR 2.1 to 2.3, u8 sent as 4"]
    assert run_guest(tmp_path, guest, "--abi", "wamr-2.1") == 0
    assert capfdbinary.readouterr().out == expected


def test_wasmedge_missing_model_is_model_not_found(tmp_path: Path) -> None:
    wasmedge = get_profile("wasmedge")
    assert wasmedge.errno(ErrorCode.NOT_FOUND) == 103
    assert get_profile("witx").errno(ErrorCode.NOT_FOUND) == 8
    assert wasmedge.encodings[6] is GraphEncoding.GGML and get_profile("wamr").encodings[5] is GraphEncoding.GGML
    assert get_profile("wamr-2.1").errno(ErrorCode.RUNTIME_ERROR) == 4
    assert get_profile("wamr-2.1").tensor_types[3] is TensorType.BF16


def test_unknown_import_fails_at_instantiation_naming_it(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "odd.wat"
    path.write_text('(module (import "wasi_ephemeral_nn" "teleport" (func (param i32) (result i32))) '
                    '(memory (export "memory") 1) (func (export "_start")))')
    assert main(["run", str(path)]) == 2
    assert "wasi_ephemeral_nn::teleport" in capfd.readouterr().err


def test_unknown_profile_name_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="unknown ABI profile"):
        get_profile("nonsense")
    assert set(PROFILES) >= {"witx", "witx-2022", "wasmedge", "wamr", "wamr-2.1", "wamr-legacy"}
