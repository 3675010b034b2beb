"""Hostile whisper.cpp models and WAV files from a guest, through the default ranking: every one is an
errno (invalid_argument for a broken file), the host process survives, its peak RSS stays bounded, and
no file appears. Plus a seeded fuzz of both (mutated headers, tensor tables, weights and WAVs), and the
controls: each hostile model handed to whisper.cpp directly, with no validator, in a child process."""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from wasinn_backend_whisper.testing import TinyWhisper, model_bytes, wav_bytes
from wasinn_backend_whisper.validate import HEADER_BYTES, HPARAM_NAMES

WORKER = Path(__file__).with_name("whisper_hostile_worker.py")
INVALID_ARGUMENT = 1
#: The worker's peak RSS with the tiny model and every case: python + wasmtime + whisper.cpp are
#: ~150 MB; a hostile header that reached whisper.cpp would allocate gigabytes.
RSS_BOUND_KB = 600 * 1024


def run_worker(mode: str, folder: Path, *extra: str) -> tuple[dict[str, list[int]], int]:
    """The errnos per case, and the child's peak RSS in kB (VmHWM, read by the child's own getrusage)."""
    script = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
              "exec(open(sys.argv[0]).read()); "
              "sys.stderr.write('maxrss %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    tmp = folder.parent / f"tmp-{mode}"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "WASINN_BACKENDS": "whisper"}
    run = subprocess.run([sys.executable, "-c", script, str(WORKER), mode, str(folder), *extra],
                         capture_output=True, timeout=900, check=False, env=env)
    assert run.returncode == 0, f"the host died: {run.returncode} {run.stderr.decode(errors='replace')[-3000:]}"
    assert list(tmp.iterdir()) == [], "a file appeared"
    rss = int(run.stderr.rsplit(b"maxrss ", 1)[1].split()[0])
    return json.loads(run.stdout.splitlines()[-1]), rss


def header(data: bytes, **changes: int) -> bytes:
    values = list(struct.unpack_from("<11i", data, 4))
    for name, value in changes.items():
        values[HPARAM_NAMES.index(name)] = value
    return data[:4] + struct.pack("<11i", *values) + data[HEADER_BYTES:]


@functools.cache
def variants() -> dict[str, bytes]:
    good = model_bytes()
    vocab_at = HEADER_BYTES + 8 + 4 * 80 * 201
    first_tensor = good.index(b"encoder.positional_embedding") - 12 - 8
    return {
        "state-2^30": header(good, n_audio_state=1 << 30),
        "state-max-int": header(good, n_text_state=2**31 - 1),
        "state-negative": header(good, n_audio_state=-64),
        "layers-1000": header(good, n_text_layer=1000),
        "layers-2^20": header(good, n_audio_layer=1 << 20),
        "vocab-2^31": header(good, n_vocab=2**31 - 1),
        "vocab-51867": header(good, n_vocab=51867),
        "audio-ctx-1501": header(good, n_audio_ctx=1501),
        "audio-ctx-2^24": header(good, n_audio_ctx=1 << 24),
        "text-ctx-2^20": header(good, n_text_ctx=1 << 20),
        "heads-0": header(good, n_audio_head=0),
        "heads-negative": header(good, n_audio_head=-2),
        "heads-not-dividing": header(good, n_text_head=3),
        "mels-2^20": header(good, n_mels=1 << 20),
        "ftype-0-all-f32": model_bytes(TinyWhisper(ftype=0)),
        "ftype-99": header(good, ftype=99),
        "ftype-q-version-9": header(good, ftype=9001),
        "mel-n-fft-2^30": good[:HEADER_BYTES + 4] + struct.pack("<i", 1 << 30) + good[HEADER_BYTES + 8:],
        "mel-n-fft-2^24": good[:HEADER_BYTES + 4] + struct.pack("<i", 1 << 24) + good[HEADER_BYTES + 8:],
        "mel-n-mel-negative": good[:HEADER_BYTES] + struct.pack("<i", -80) + good[HEADER_BYTES + 4:],
        "vocab-count-2^31": good[:vocab_at] + struct.pack("<i", 2**31 - 1) + good[vocab_at + 4:],
        "token-length-2^31": good[:vocab_at + 4] + struct.pack("<I", 2**31 - 1) + good[vocab_at + 8:],
        "token-length-4GiB": good[:vocab_at + 4] + struct.pack("<I", 2**32 - 1) + good[vocab_at + 8:],
        "tensor-dims-lie": good[:first_tensor + 12] + struct.pack("<i", 1 << 20) + good[first_tensor + 16:],
        "tensor-ndims-2^20": good[:first_tensor] + struct.pack("<i", 1 << 20) + good[first_tensor + 4:],
        "tensor-type-q4": good[:first_tensor + 8] + struct.pack("<i", 2) + good[first_tensor + 12:],
        "tensor-name-unknown": good.replace(b"encoder.ln_post.bias", b"encoder.ln_post.bizz", 1),
        "tensor-twice": good + good[first_tensor:first_tensor + 12 + 8 + 28 + 64 * 1500 * 4],
        "truncated-in-tensor": good[:-7],
        "truncated-in-vocab": good[:vocab_at + 1000],
        "header-only": good[:HEADER_BYTES],
        "trailing-garbage": good + b"\x01\x02\x03",
        "magic-only": good[:4],
        "legacy-llama-ggml": good[:4] + struct.pack("<7i", 32000, 4096, 256, 32, 32, 128, 1) + bytes(64),
    }


def test_hostile_models_are_invalid_argument_with_bounded_rss(tmp_path: Path) -> None:
    cases = tmp_path / "models"
    cases.mkdir()
    for name, data in variants().items():
        (cases / name).write_bytes(data)
    results, rss = run_worker("model", cases)
    # Encoding 9 with bytes no backend recognises (legacy llama "ggml", a bare magic) is invalid_argument
    # too: "not a valid whisper model".
    assert results == {name: [INVALID_ARGUMENT] for name in variants()}
    assert rss < RSS_BOUND_KB, f"peak RSS {rss} kB"


#: The control child: the model's bytes straight into whisper.cpp (whisper_init_from_buffer, then
#: whisper_full on a second of audio if it loaded), no validator and no probe. whisper.cpp's own log
#: goes to a file, not to a Python callback (a callback that raises changes what happens). Its address
#: space is capped at 1 GiB above what the interpreter has mapped: "memory" means whisper.cpp asked for
#: more than that (std::bad_alloc, which the binding raises as MemoryError), with no cap it is real RSS.
CONTROL = r"""
import ctypes, os, resource, sys, tempfile
import numpy as np
import _pywhispercpp as pw

def report(outcome):
    print("outcome", outcome, flush=True)
    sys.exit(0)

resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmPeak"))
limit = peak * 1024 + (1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
data = open(sys.argv[1], "rb").read()
buf = ctypes.create_string_buffer(data, len(data))
new = ctypes.pythonapi.PyCapsule_New
new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
cparams = pw.whisper_context_default_params()
cparams.use_gpu = False
log, saved = tempfile.TemporaryFile(), os.dup(2)
os.dup2(log.fileno(), 2)
try:
    ctx = pw.whisper_init_from_buffer_with_params(new(ctypes.addressof(buf), None, None), len(data), cparams)
except MemoryError:
    report("memory")
except Exception:
    report("exception")
finally:
    os.dup2(saved, 2)
log.seek(0)
if b"failed to load model" in log.read():
    report("refused")  # a NULL context: the backend never touches it
params = pw.whisper_full_default_params(pw.WHISPER_SAMPLING_GREEDY)
params.n_threads, params.print_progress, params.max_tokens, params.temperature_inc = 1, False, 4, 0.0
pcm = (0.1 * np.sin(np.arange(16000, dtype=np.float32) / 8)).astype(np.float32)
try:
    pw.whisper_full(ctx, params, pcm, len(pcm))
except MemoryError:
    report("memory")
except Exception:
    report("exception")
report("loaded")
"""
CONTROL_TIMEOUT_S = 120

#: What whisper.cpp (pywhispercpp 1.5.1, pinned) does with each hostile model when nothing checks it
#: first. Harmful: a signal kills the process, whisper.cpp asks for gigabytes ("memory"; measured once
#: with a 6 GiB cap: token-length-2^31 reached 4.1 GB of RSS, vocab-count-2^31 4.9 GB, mel-n-fft-2^24
#: 5.2 GB and then SIGSEGV), or it runs past the timeout ("hang").
HARMFUL = {
    "state-2^30": "SIGABRT",  # GGML_ASSERT(!ggml_is_transposed(a)) building the graphs
    "state-max-int": "SIGABRT",  # GGML_ASSERT(buffer): the weights' buffer cannot be allocated
    "layers-2^20": "SIGABRT",
    "heads-0": "SIGFPE",  # n_state / n_head
    "heads-negative": "SIGABRT",
    "heads-not-dividing": "SIGABRT",  # GGML_ASSERT(ggml_nelements(a) == ne0*ne1*ne2)
    "ftype-0-all-f32": "SIGABRT",  # GGML_ASSERT(src0->type == GGML_TYPE_F16) in the encoder
    "ftype-99": "SIGABRT",  # GGML_ASSERT(wtype != GGML_TYPE_COUNT)
    "mel-n-fft-2^24": "memory",  # n_mel * n_fft floats for the filterbank: 5.4 GB
    "vocab-count-2^31": "memory",  # 2^31 token strings into two maps
    "token-length-2^31": "memory",  # a 2 GiB zero-filled buffer for one token, then copies of it
    "token-length-4GiB": "memory",
}
#: Harmless to whisper.cpp itself: the validator's refusal is defence in depth (see the test's docstring).
HARMLESS = {
    **dict.fromkeys(["state-negative", "layers-1000", "audio-ctx-1501", "audio-ctx-2^24", "text-ctx-2^20",
                     "mels-2^20", "mel-n-fft-2^30", "tensor-dims-lie", "tensor-ndims-2^20", "tensor-type-q4",
                     "tensor-name-unknown", "tensor-twice", "legacy-llama-ggml"], "refused"),
    **dict.fromkeys(["vocab-2^31", "vocab-51867", "mel-n-mel-negative", "header-only", "magic-only"], "exception"),
    **dict.fromkeys(["ftype-q-version-9", "truncated-in-tensor", "truncated-in-vocab", "trailing-garbage"],
                    "loaded"),
}


def control(data: bytes, folder: Path) -> str:
    """What whisper.cpp does with ``data`` in a child process: a signal's name, "hang", or the child's
    report ("memory", "exception", "refused", "loaded")."""
    path = folder / "model.bin"
    path.write_bytes(data)
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # ggml would attach a debugger to print a backtrace
    try:
        run = subprocess.run([sys.executable, "-c", CONTROL, str(path)], capture_output=True, check=False, env=env,
                             timeout=CONTROL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "hang"
    if run.returncode < 0:
        return signal.Signals(-run.returncode).name
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    return run.stdout.split(b"outcome ", 1)[1].split()[0].decode()


def test_every_hostile_model_has_a_control() -> None:
    assert sorted(variants()) == sorted({**HARMFUL, **HARMLESS})
    assert not HARMFUL.keys() & HARMLESS.keys()


@pytest.mark.parametrize("name", sorted(HARMFUL))
def test_control_whisper_cpp_without_the_validator_is_hurt(name: str, tmp_path: Path) -> None:
    """The control for the hostile-model test: without the validator, this payload kills the process
    (a GGML_ASSERT abort, a division by zero) or makes whisper.cpp ask for gigabytes of memory. With
    it (test_hostile_models_are_invalid_argument_with_bounded_rss) the same bytes are invalid_argument,
    the host lives and its peak RSS stays under RSS_BOUND_KB."""
    assert control(variants()[name], tmp_path) == HARMFUL[name]


@pytest.mark.parametrize("name", sorted(HARMLESS))
def test_control_whisper_cpp_without_the_validator_survives(name: str, tmp_path: Path) -> None:
    """Payloads whisper.cpp 1.8 survives on its own; the validator refuses them as defence in depth
    (a whitelist does not depend on each of whisper.cpp's own checks staying in place):

    * "refused": whisper.cpp's own shape and name checks fail the load (a NULL context, which the
      backend never touches). tensor-ndims-2^20 is refused too, but only after its loop has written
      past a four-int array on the stack (undefined behaviour; this build survives it); mel-n-fft-2^30
      overflows ``n_mel * n_fft`` to 0 and is refused by luck.
    * "exception": a C++ exception escapes whisper.cpp (std::logic_error for a vocabulary beyond its
      100 languages, a vector length error for a negative filterbank, ``map::at`` from whisper_full on
      a model of no tensors at all, which whisper.cpp loaded): the binding raises, the process lives,
      what whisper.cpp had allocated leaks.
    * "loaded": whisper.cpp loads and runs them: an unknown quantization version, trailing bytes, a
      file cut inside the vocabulary or inside the last tensor (whose missing tail is then whatever
      the fresh buffer held).
    """
    assert control(variants()[name], tmp_path) == HARMLESS[name]


def wav_variants() -> dict[str, bytes]:
    good = wav_bytes(1.0)
    return {
        "empty-data": wav_bytes(0.0),
        "one-frame": wav_bytes(1 / 16000),
        "data-size-4GiB": good[:40] + struct.pack("<I", 2**32 - 1) + good[44:],
        "fmt-size-4GiB": good[:16] + struct.pack("<I", 2**32 - 1) + good[20:],
        "fmt-size-0": good[:16] + struct.pack("<I", 0) + good[20:],
        "channels-0": good[:22] + struct.pack("<H", 0) + good[24:],
        "channels-65535": good[:22] + struct.pack("<H", 65535) + good[24:],
        "block-align-0": good[:32] + struct.pack("<H", 0) + good[34:],
        "riff-size-small": good[:4] + struct.pack("<I", 4) + good[8:],
        "riff-size-4GiB": good[:4] + struct.pack("<I", 2**32 - 1) + good[8:],
        "no-data-chunk": good[:36],
        "silence-10s": wav_bytes(10.0, seed=5)[:44] + bytes(320000),
    }


def fix_riff(data: bytes) -> bytes:
    return data[:4] + struct.pack("<I", max(len(data) - 8, 0)) + data[8:] if len(data) >= 8 else data


def test_hostile_and_fuzzed_audio_never_take_the_host_down(tmp_path: Path, tiny: Path) -> None:
    cases = tmp_path / "audio"
    cases.mkdir()
    for name, data in wav_variants().items():
        (cases / name).write_bytes(data if name.startswith("riff-size") else fix_riff(data))
    rng = random.Random(30)
    base = wav_bytes(0.5, seed=2)
    for i in range(60):
        fuzzed = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            where = rng.randrange(0, 60 if rng.random() < 0.8 else len(fuzzed))
            fuzzed[where] = rng.randrange(256)
        if rng.random() < 0.3:
            del fuzzed[rng.randrange(len(fuzzed)):]
        (cases / f"fuzz-{i:03d}").write_bytes(fix_riff(bytes(fuzzed)) if rng.random() < 0.7 else bytes(fuzzed))
    results, rss = run_worker("audio", cases, "compute", str(tiny))
    for name, errnos in results.items():
        assert errnos[0] in (0, INVALID_ARGUMENT), f"{name}: {errnos}"
        assert all(e == 0 for e in errnos[1:]), f"{name}: {errnos}"
    assert results["empty-data"] == [0, 0, 0] and results["one-frame"] == [0, 0, 0]
    assert results["silence-10s"] == [0, 0, 0]
    for name in ("fmt-size-4GiB", "fmt-size-0", "channels-0", "channels-65535", "block-align-0",
                 "riff-size-small", "riff-size-4GiB", "no-data-chunk"):
        assert results[name] == [INVALID_ARGUMENT], name
    assert rss < RSS_BOUND_KB, f"peak RSS {rss} kB"


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_models_never_take_the_host_down(tmp_path: Path, seed: int) -> None:
    cases = tmp_path / "models"
    cases.mkdir()
    rng = random.Random(seed)
    base = model_bytes(TinyWhisper(n_text_ctx=32))
    vocab_end = base.index(b"encoder.positional_embedding") - 20
    for i in range(40):
        data = bytearray(base)
        kind = rng.choice(("header", "vocab", "table", "weights", "truncate"))
        if kind == "header":
            where = rng.randrange(4, HEADER_BYTES)
        elif kind == "vocab":
            where = rng.randrange(HEADER_BYTES, vocab_end)
        elif kind == "table":
            where = vocab_end + rng.randrange(0, 48)
        else:
            where = rng.randrange(vocab_end, len(data))
        if kind == "truncate":
            data = data[:where]
        else:
            for k in range(rng.randint(1, 4)):
                data[min(where + k, len(data) - 1)] = rng.randrange(256)
        if kind == "weights":  # non-finite weights: the probe and the in-process run must survive them
            struct.pack_into("<e", data, where - where % 2, float("nan") if rng.random() < 0.5 else float("inf"))
        (cases / f"{kind}-{i:03d}").write_bytes(bytes(data))
    results, rss = run_worker("model", cases)
    for name, errnos in results.items():
        assert errnos[0] in (0, 1, 2), f"{name}: {errnos}"
        if not name.startswith("weights"):
            assert errnos[0] != 0 or name.startswith(("vocab", "header")), f"{name} was loaded"
    assert rss < RSS_BOUND_KB, f"peak RSS {rss} kB"
