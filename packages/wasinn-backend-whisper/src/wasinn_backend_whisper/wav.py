"""WAV files as WasmEdge's Whisper backend reads them (its RIFF check, then dr_wav).

RIFF with a chunk size equal to the buffer's length less 8, form ``WAVE``; PCM (or an extensible
header whose sub-format is PCM), mono or stereo, 16 kHz, 16-bit. Anything else is invalid_argument.
Samples become float32 in [-1, 1); stereo is averaged, as WasmEdge does (and kept per channel for
``diarize``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
PCM, EXTENSIBLE = 1, 0xFFFE
PCM_SUBFORMAT = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


class WavError(ValueError):
    pass


@dataclass(frozen=True)
class Wav:
    channels: int
    frames: int
    data: memoryview  # the interleaved 16-bit samples (a view of the caller's buffer)


def parse(buf: memoryview) -> Wav:
    """Check the header and find the samples (no copy)."""
    size = len(buf)
    if size < 12 or bytes(buf[:4]) != b"RIFF" or bytes(buf[8:12]) != b"WAVE":
        raise WavError("not a RIFF/WAVE file (only WAV audio is supported)")
    (riff_size,) = struct.unpack_from("<I", buf, 4)
    if riff_size + 8 != size:
        raise WavError(f"the RIFF chunk says {riff_size + 8} bytes, the input is {size}")
    pos = 12
    fmt: tuple[int, int, int, int, int] | None = None
    while pos + 8 <= size:
        chunk_id = bytes(buf[pos:pos + 4])
        (chunk_size,) = struct.unpack_from("<I", buf, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if chunk_size < 16 or body + chunk_size > size:
                raise WavError("a truncated fmt chunk")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", buf, body)
            if tag == EXTENSIBLE:
                if chunk_size < 40 or bytes(buf[body + 24:body + 40]) != PCM_SUBFORMAT:
                    raise WavError("an extensible WAV whose samples are not PCM")
                tag = PCM
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("the data chunk comes before the fmt chunk")
            return _samples(fmt, buf[body:min(body + chunk_size, size)])
        pos = body + chunk_size + (chunk_size & 1)  # chunks are padded to an even length
    raise WavError("no fmt and data chunks")


def _samples(fmt: tuple[int, int, int, int, int], data: memoryview) -> Wav:
    tag, channels, rate, block_align, bits = fmt
    if channels not in (1, 2):
        raise WavError(f"{channels} channels: the WAV must be mono or stereo")
    if rate != SAMPLE_RATE:
        raise WavError(f"{rate} Hz: the WAV must be {SAMPLE_RATE // 1000} kHz")
    if bits != 16:
        raise WavError(f"{bits}-bit samples: the WAV must be 16-bit")
    if tag != PCM:
        raise WavError(f"format tag {tag}: the WAV must hold PCM samples")
    if block_align != 2 * channels:
        raise WavError(f"block align {block_align} for {channels} channel(s) of 16 bits")
    frames = len(data) // block_align
    return Wav(channels=channels, frames=frames, data=data[:frames * block_align])


def to_float(wav: Wav, stereo: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """The mono float32 samples whisper.cpp takes, and (for ``diarize``) each channel of a stereo file."""
    pcm16 = np.frombuffer(wav.data, dtype="<i2")
    if wav.channels == 1:
        return pcm16.astype(np.float32) / np.float32(32768.0), []
    pairs = pcm16.reshape(-1, 2).astype(np.float32)
    mono = (pairs[:, 0] + pairs[:, 1]) / np.float32(65536.0)
    channels = [pairs[:, 0] / np.float32(32768.0), pairs[:, 1] / np.float32(32768.0)] if stereo else []
    return np.ascontiguousarray(mono, np.float32), channels
