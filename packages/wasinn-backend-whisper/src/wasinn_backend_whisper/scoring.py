"""``can_handle``: cheap, and honest about where the model will run."""

from __future__ import annotations

from wasinn import Decline, ErrorCode, ExecutionTarget, Hardware, ModelDescription, ModelFormat, Score

CPU_SCORE = 90.0  # whisper.cpp is the runtime this file format is written for


def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    if model.format != ModelFormat.WHISPER:
        return None
    if model.target is ExecutionTarget.CPU:
        return Score(CPU_SCORE, "whisper.cpp reads its own model files; runs on the CPU", device="cpu")
    if model.target is ExecutionTarget.AUTO:
        return Score(CPU_SCORE, "target auto: whisper.cpp on the CPU (this build has no GPU backend)", device="cpu")
    return Decline(f"this whisper.cpp build (pywhispercpp's wheel) cannot run on a {model.target.value}: "
                   f"ask for cpu or auto", ErrorCode.UNSUPPORTED_OPERATION)
