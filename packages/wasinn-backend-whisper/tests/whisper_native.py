"""whisper.cpp called natively through pywhispercpp with WasmEdge's options, written independently of
the backend (the stdlib ``wave`` reads the audio): what a guest's output must equal."""

from __future__ import annotations

import atexit
import os
import wave
from pathlib import Path
from typing import Any

import _pywhispercpp as pw
import numpy as np

atexit.register(pw.whisper_log_set, None)


def wasmedge_threads() -> int:
    return min(4, os.cpu_count() or 1)


def read_wav(path: Path) -> np.ndarray:
    return read_channels(path)[0]


def read_channels(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """The mono samples whisper.cpp gets and, for a stereo file, each channel (for diarize)."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
        if w.getnchannels() == 2:
            pairs = frames.reshape(-1, 2)
            mono = ((pairs[:, 0] + pairs[:, 1]) / np.float32(65536.0)).astype(np.float32)
            return mono, [pairs[:, 0] / np.float32(32768.0), pairs[:, 1] / np.float32(32768.0)]
        return frames / np.float32(32768.0), []


def speaker(channels: list[np.ndarray], t0: int, t1: int) -> str:
    """WasmEdge's estimateDiarizationSpeaker: the sums of |sample| over the segment, in double, in order."""
    n = len(channels[0])
    i0, i1 = (max(0, min(n - 1, t * 16000 // 100)) for t in (t0, t1))
    energy = [float(np.cumsum(np.abs(c[i0:i1]).astype(np.float64))[-1]) if i1 > i0 else 0.0 for c in channels]
    who = "0" if energy[0] > 1.1 * energy[1] else "1" if energy[1] > 1.1 * energy[0] else "?"
    return f"(speaker {who})"


def stamp(t: int) -> str:
    ms = t * 10
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


class Native:
    """A fresh whisper_context per call: whisper.cpp's decoder state (its RNG) carries over between
    calls on one context, and a guest's graph is fresh too."""

    def __init__(self, model: Path) -> None:
        self.model = str(model)
        pw.whisper_log_set(lambda level, text: None)

    def transcribe(self, audio: Path, *, threads: int | None = None, language: str = "en",
                   translate: bool = False, no_timestamps: bool = False, beam_size: int = 5, best_of: int = 5,
                   processors: int = 1, diarize: bool = False, **extra: Any) -> bytes:
        cparams = pw.whisper_context_default_params()
        cparams.use_gpu = False
        ctx = pw.whisper_init_from_file_with_params(self.model, cparams)
        try:
            p = pw.whisper_full_default_params(pw.WHISPER_SAMPLING_BEAM_SEARCH)
            p.strategy = pw.WHISPER_SAMPLING_BEAM_SEARCH if beam_size > 1 else pw.WHISPER_SAMPLING_GREEDY
            p.n_threads = threads or wasmedge_threads()
            p.n_max_text_ctx = 16384
            p.print_progress = False
            p.thold_pt = 0.01
            p.language = language
            p.translate = translate
            p.temperature, p.temperature_inc = 0.0, 0.2
            p.entropy_thold, p.logprob_thold = 2.4, -1.0
            p.greedy = {"best_of": best_of}
            p.beam_search = {"beam_size": beam_size, "patience": -1.0}
            p.no_timestamps = no_timestamps
            p.print_timestamps = not no_timestamps
            for key, value in extra.items():
                setattr(p, key, value)
            pcm, channels = read_channels(audio)
            if processors > 1:  # WasmEdge calls whisper_full_parallel, which is whisper_full for 1
                assert pw.whisper_full_parallel(ctx, p, pcm, len(pcm), processors) == 0
            else:
                assert pw.whisper_full(ctx, p, pcm, len(pcm)) == 0
            out = b""
            for i in range(pw.whisper_full_n_segments(ctx)):
                t0 = t1 = 0
                if not no_timestamps:
                    t0, t1 = pw.whisper_full_get_segment_t0(ctx, i), pw.whisper_full_get_segment_t1(ctx, i)
                    out += f"[{stamp(t0)} --> {stamp(t1)}] ".encode()
                if diarize and channels:
                    out += speaker(channels, t0, t1).encode()
                out += pw.whisper_full_get_segment_text(ctx, i)
                if not no_timestamps or diarize:
                    out += b"\n"
            return out
        finally:
            pw.whisper_free(ctx)

    def close(self) -> None:
        pass
