"""Tiny random-weight whisper.cpp models and WAV files, written on the spot (tests, benchmarks, fuzz;
no downloads, numpy only).

The mel filterbank is generated (triangular filters on the mel scale, as whisper's own are); the
vocabulary is generated too: 50,257 ordinary tokens made of syllables (so a random model's output is
readable text, not ``[_extra_token_N]``; whisper.cpp needs a token " "), after which whisper.cpp names
the special tokens itself.
Weights are small random normals from a fixed seed: the same arguments always give the same bytes.
"""

from __future__ import annotations

import io
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wasinn_backend_whisper.validate import F16, F32, HPARAM_NAMES, MAGIC_BYTES, N_FFT, expected_tensors

N_ORDINARY_TOKENS = 50257  # GPT-2's vocabulary: whisper.cpp's eot is the next id
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "do", "fa", "gu", "hi", "ja", "ko", "le")


@dataclass(frozen=True)
class TinyWhisper:
    """The shape of a test model (the defaults: a ~7 MB English-only f16 model that runs in ms)."""

    n_vocab: int = 51864
    n_audio_ctx: int = 1500
    n_audio_state: int = 64
    n_audio_head: int = 2
    n_audio_layer: int = 1
    n_text_ctx: int = 64
    n_text_state: int = 64
    n_text_head: int = 2
    n_text_layer: int = 1
    n_mels: int = 80
    ftype: int = 1
    seed: int = 0


def mel_filters(n_mels: int, n_fft: int = N_FFT, sample_rate: int = 16000) -> np.ndarray:
    """Triangular filters, evenly spaced on the mel scale from 0 Hz to Nyquist: (n_mels, n_fft)."""
    def mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft)
    edges = np.linspace(0.0, float(mel(np.array(sample_rate / 2))), n_mels + 2)
    points = 700.0 * (10 ** (edges / 2595.0) - 1.0)
    bank = np.zeros((n_mels, n_fft), np.float32)
    for m in range(n_mels):
        left, centre, right = points[m], points[m + 1], points[m + 2]
        rise = (freqs - left) / max(centre - left, 1e-6)
        fall = (right - freqs) / max(right - centre, 1e-6)
        bank[m] = np.maximum(0.0, np.minimum(rise, fall)) * 2.0 / max(right - left, 1e-6)
    return bank


def vocabulary(count: int = N_ORDINARY_TOKENS) -> list[bytes]:
    """``count`` distinct token texts: the printable ASCII characters (whisper.cpp looks up the token
    " " by text), then words of syllables, two in three with a leading space."""
    tokens: list[bytes] = [bytes([c]) for c in range(0x20, 0x7F)]
    n = len(SYLLABLES)
    index = 0
    while len(tokens) < count:
        word, value = "", index
        while True:
            word += SYLLABLES[value % n]
            value //= n
            if not value:
                break
        tokens.append((" " + word if index % 3 else word).encode())
        index += 1
    return tokens


def model_bytes(spec: TinyWhisper = TinyWhisper(), *, tensor_type: dict[str, int] | None = None) -> bytes:
    """The model file's bytes. ``tensor_type`` overrides single tensors' types (for broken variants)."""
    hp = {k: v for k, v in asdict(spec).items() if k in HPARAM_NAMES}
    rng = np.random.default_rng(spec.seed)
    out = io.BytesIO()
    out.write(MAGIC_BYTES)
    out.write(struct.pack("<11i", *(hp[name] for name in HPARAM_NAMES)))
    filters = mel_filters(spec.n_mels)
    out.write(struct.pack("<2i", *filters.shape))
    out.write(filters.astype("<f4").tobytes())
    tokens = vocabulary()
    out.write(struct.pack("<i", len(tokens)))
    for token in tokens:
        out.write(struct.pack("<I", len(token)))
        out.write(token)
    wtype = F16 if spec.ftype % 1000 == 1 else F32
    for name, dims, ttype in expected_tensors(hp, wtype):
        ttype = (tensor_type or {}).get(name, ttype)
        shape = tuple(reversed(dims))  # numpy order
        if name.endswith("ln.weight") or name.endswith("ln_post.weight") or name.endswith("_ln.weight"):
            data = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            data = 0.2 * rng.standard_normal(shape)
        encoded = name.encode()
        out.write(struct.pack("<3i", len(dims), len(encoded), ttype))
        out.write(struct.pack(f"<{len(dims)}i", *dims))
        out.write(encoded)
        out.write(data.astype("<f2" if ttype == F16 else "<f4").tobytes())
    return out.getvalue()


def write_tiny_whisper(path: Path | str, spec: TinyWhisper = TinyWhisper()) -> Path:
    path = Path(path)
    path.write_bytes(model_bytes(spec))
    return path


def wav_bytes(seconds: float = 2.0, *, rate: int = 16000, channels: int = 1, bits: int = 16,
              seed: int = 1) -> bytes:
    """A WAV of a few tones and some noise (PCM, little-endian)."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 660 * t * (1 + t)) \
        + 0.05 * rng.standard_normal(n)
    frames = np.stack([signal * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    if bits == 16:
        pcm = (np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes()
    elif bits == 8:
        pcm = (np.clip(frames, -1, 1) * 127 + 128).astype("u1").tobytes()
    elif bits == 32:
        pcm = frames.astype("<f4").tobytes()
    else:
        raise ValueError(f"bits {bits}")
    fmt_tag = 3 if bits == 32 else 1
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path: Path | str, seconds: float = 2.0, **kwargs: int) -> Path:
    path = Path(path)
    path.write_bytes(wav_bytes(seconds, **kwargs))
    return path
