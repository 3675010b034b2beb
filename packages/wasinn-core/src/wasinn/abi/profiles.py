"""Numbering profiles: how each family of guests numbers encodings, targets, tensor types and errors.

Guests compiled for Wasmtime, WasmEdge and WAMR send different numbers for the same meaning
(see docs/compatibility.md and the ABI reference this module follows). A profile turns a guest's
numbers into wasinn's symbols and wasinn's error codes back into the guest's errnos.

How a store's profile is chosen (:func:`wasinn.abi.linking.choose_profile`): ``--abi NAME`` / the
``abi=`` argument if given; otherwise from the module's imports (module ``wasi_nn`` → ``wamr-legacy``;
``compute_single``/``get_output_single``/``fini_single`` → ``wasmedge``); otherwise ``witx``.
Where a guest's tensor type number is ambiguous between a profile and its known older numberings
(``tensor_type_alternates``), the tensor's byte length and the model's declared input decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, TensorType
from wasinn.errors import ConfigurationError

E, T, D, X = GraphEncoding, ExecutionTarget, TensorType, ErrorCode

# ---- encodings --------------------------------------------------------------------------------
# 9 = Whisper as in WasmEdge: a guest that imports only the standard functions is read under this
# numbering, and 9 is unassigned in it.
WITX_ENCODINGS = {0: E.OPENVINO, 1: E.ONNX, 2: E.TENSORFLOW, 3: E.PYTORCH, 4: E.TENSORFLOWLITE,
                  5: E.AUTODETECT, 9: E.WHISPER}
# WAMR follows the WIT order: ggml 5, autodetect 6.
WAMR_ENCODINGS = {0: E.OPENVINO, 1: E.ONNX, 2: E.TENSORFLOW, 3: E.PYTORCH, 4: E.TENSORFLOWLITE,
                  5: E.GGML, 6: E.AUTODETECT}
# WasmEdge: autodetect 5, GGML 6, Whisper 9 (7, 8, 10-14 are WasmEdge-only runtimes wasinn has no
# backends for: NeuralSpeed, Piper, ChatTTS, MLX, ...).
WASMEDGE_ENCODINGS = {0: E.OPENVINO, 1: E.ONNX, 2: E.TENSORFLOW, 3: E.PYTORCH, 4: E.TENSORFLOWLITE,
                      5: E.AUTODETECT, 6: E.GGML, 9: E.WHISPER}

# ---- targets ----------------------------------------------------------------------------------
TARGETS = {0: T.CPU, 1: T.GPU, 2: T.TPU}
WASMEDGE_TARGETS = {0: T.CPU, 1: T.GPU, 2: T.TPU, 3: T.AUTO}

# ---- tensor types -----------------------------------------------------------------------------
# Since the 2023-08 witx (wasi-nn crate 0.6, WasmEdge 0.15, WAMR 2.4): f64 and i64 added, u8/i32 moved.
WITX_TENSORS = {0: D.F16, 1: D.F32, 2: D.F64, 3: D.U8, 4: D.I32, 5: D.I64}
# Before it (wasi-nn crate <= 0.5, WasmEdge <= 0.14, WAMR legacy `wasi_nn`).
WITX_2022_TENSORS = {0: D.F16, 1: D.F32, 2: D.U8, 3: D.I32}
# WAMR 2.1.1-2.3.x used the WIT numbering, bf16 included.
WAMR_21_TENSORS = {0: D.F16, 1: D.F32, 2: D.F64, 3: D.BF16, 4: D.U8, 5: D.I32, 6: D.I64}

# ---- errors -------------------------------------------------------------------------------------
# The GGML codes have no witx number: the end of a token stream is not a failure of the host
# (runtime_error), a full context or an over-long prompt is too much input (too_large).
WITX_ERRORS = {X.INVALID_ARGUMENT: 1, X.INVALID_ENCODING: 2, X.MISSING_MEMORY: 3, X.BUSY: 4,
               X.RUNTIME_ERROR: 5, X.UNSUPPORTED_OPERATION: 6, X.TOO_LARGE: 7, X.NOT_FOUND: 8,
               X.END_OF_SEQUENCE: 5, X.CONTEXT_FULL: 7, X.PROMPT_TOO_LONG: 7}
# WasmEdge adds 100-103 (EndOfSequence, ContextFull, PromptTooLong, ModelNotFound); a missing named
# model is ModelNotFound (103).
WASMEDGE_ERRORS = {**WITX_ERRORS, X.NOT_FOUND: 103, X.END_OF_SEQUENCE: 100, X.CONTEXT_FULL: 101,
                   X.PROMPT_TOO_LONG: 102}
# WAMR >= 2.4 defines 100-102 as well ("for WasmEdge-wasi-nn").
WAMR_ERRORS = {**WITX_ERRORS, X.END_OF_SEQUENCE: 100, X.CONTEXT_FULL: 101, X.PROMPT_TOO_LONG: 102}
# WAMR 2.1.1-2.3.x: invalid_argument 1, invalid_encoding 2, timeout 3, runtime_error 4,
# unsupported_operation 5, too_large 6, not_found 7, security 8, unknown 9 (no missing_memory, no busy).
WAMR_21_ERRORS = {X.INVALID_ARGUMENT: 1, X.INVALID_ENCODING: 2, X.MISSING_MEMORY: 1, X.BUSY: 4,
                  X.RUNTIME_ERROR: 4, X.UNSUPPORTED_OPERATION: 5, X.TOO_LARGE: 6, X.NOT_FOUND: 7,
                  X.END_OF_SEQUENCE: 4, X.CONTEXT_FULL: 6, X.PROMPT_TOO_LONG: 6}


@dataclass(frozen=True)
class AbiProfile:
    """One numbering of the wasi-nn enums."""

    name: str
    description: str
    encodings: Mapping[int, GraphEncoding]
    targets: Mapping[int, ExecutionTarget]
    tensor_types: Mapping[int, TensorType]
    errors: Mapping[ErrorCode, int]
    #: Profiles whose tensor-type numbers guests of this family may really be sending.
    tensor_type_alternates: tuple[str, ...] = ()
    _tensor_numbers: dict[TensorType, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tensor_numbers", {t: n for n, t in self.tensor_types.items()})

    def errno(self, code: ErrorCode) -> int:
        return self.errors[code]

    def tensor_type_number(self, dtype: TensorType) -> int | None:
        return self._tensor_numbers.get(dtype)


PROFILES: dict[str, AbiProfile] = {
    p.name: p
    for p in (
        AbiProfile("witx", "current wasi-nn witx: Wasmtime, wasi-nn crate >= 0.6, WasmEdge >= 0.15, WAMR >= 2.4",
                   WITX_ENCODINGS, TARGETS, WITX_TENSORS, WITX_ERRORS,
                   tensor_type_alternates=("witx-2022", "wamr-2.1")),
        AbiProfile("witx-2022", "pre-2023 witx: wasi-nn crate <= 0.5 (u8 = 2, i32 = 3)",
                   WITX_ENCODINGS, TARGETS, WITX_2022_TENSORS, WITX_ERRORS),
        AbiProfile("wasmedge", "WasmEdge (GGML = 6, target AUTO = 3, errors 100-103)",
                   WASMEDGE_ENCODINGS, WASMEDGE_TARGETS, WITX_TENSORS, WASMEDGE_ERRORS,
                   tensor_type_alternates=("wasmedge-0.14",)),
        AbiProfile("wasmedge-0.14", "WasmEdge <= 0.14 (u8 = 2, i32 = 3)",
                   WASMEDGE_ENCODINGS, WASMEDGE_TARGETS, WITX_2022_TENSORS, WASMEDGE_ERRORS),
        AbiProfile("wamr-2.1", "WAMR 2.1.1-2.3.x wasi_ephemeral_nn (WIT numbering: bf16 = 3, errno 3 = timeout)",
                   WAMR_ENCODINGS, TARGETS, WAMR_21_TENSORS, WAMR_21_ERRORS),
        AbiProfile("wamr", "WAMR >= 2.4 wasi_ephemeral_nn (ggml = 5, autodetect = 6)",
                   WAMR_ENCODINGS, TARGETS, WITX_TENSORS, WAMR_ERRORS,
                   tensor_type_alternates=("wamr-2.1",)),
        AbiProfile("wamr-legacy", "WAMR legacy module wasi_nn (12-byte tensor, 4-argument load/get_output)",
                   WAMR_ENCODINGS, TARGETS, WITX_2022_TENSORS, WITX_ERRORS),
    )
}

DEFAULT_PROFILE = "witx"


def get_profile(name: str) -> AbiProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigurationError(f"unknown ABI profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
