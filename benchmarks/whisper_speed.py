"""Benchmark for docs/backends/whisper.md: seconds of audio transcribed per second, our C guest
(guests/whisper, WasmEdge's conventions) through wasinn against whisper.cpp called natively through
pywhispercpp: same model, same WAV, WasmEdge's decoding options, same threads (target: <= 1.03x).

The guest side is a whole guest run on a loaded named model (instantiate, read the WAV from a
preopened folder, set_input, compute, get_output, exit); the native side reads the WAV and calls
``whisper_full`` on the same ``whisper_context``. Rounds alternate which side goes first; medians are
reported. No downloads: a random-weight model with whisper tiny.en's widths and layers (a 64-token
text context, so that the random decoder's fallbacks stay short) is written on the spot
(``wasinn_backend_whisper.testing``).

    python benchmarks/whisper_speed.py [--threads 2] [--rounds 3] [--seconds 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime
from wasinn_backend_whisper.testing import TinyWhisper, write_tiny_whisper, write_wav

import wasinn

GUEST = Path(__file__).resolve().parents[1] / "guests" / "whisper" / "whisper.wasm"
SPEC = TinyWhisper(n_audio_state=384, n_audio_head=6, n_audio_layer=4, n_text_state=384, n_text_head=6,
                   n_text_layer=4, n_text_ctx=64, seed=7)


def native_side(model: Path, audio: Path, threads: int) -> Any:
    import _pywhispercpp as pw

    pw.whisper_log_set(lambda level, text: None)
    cparams = pw.whisper_context_default_params()
    cparams.use_gpu = False
    ctx = pw.whisper_init_from_file_with_params(str(model), cparams)

    def run() -> bytes:
        with wave.open(str(audio), "rb") as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / np.float32(32768)
        p = pw.whisper_full_default_params(pw.WHISPER_SAMPLING_BEAM_SEARCH)
        p.n_threads, p.print_progress, p.language = threads, False, "en"
        p.thold_pt, p.temperature, p.temperature_inc, p.entropy_thold, p.logprob_thold = 0.01, 0.0, 0.2, 2.4, -1.0
        p.greedy = {"best_of": 5}
        p.beam_search = {"beam_size": 5, "patience": -1.0}
        assert pw.whisper_full(ctx, p, pcm, len(pcm)) == 0
        return b"".join(pw.whisper_full_get_segment_text(ctx, i) for i in range(pw.whisper_full_n_segments(ctx)))

    return run, lambda: pw.whisper_free(ctx)


def guest_side(model: Path, audio: Path, threads: int) -> Any:
    engine = wasmtime.Engine()
    host = wasinn.WasiNnHost()
    host.register_model("default", model, config={"threads": threads})
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    host.add_to_linker(linker)
    module = wasmtime.Module.from_file(engine, str(GUEST))
    out = audio.parent / "guest-out.txt"

    def run() -> bytes:
        store = host.new_store(engine)
        config = wasmtime.WasiConfig()
        config.argv = ["whisper", f"/data/{audio.name}"]
        config.preopen_dir(str(audio.parent), "/data")
        config.stdout_file = str(out)
        store.set_wasi(config)
        instance = host.instantiate(store, linker, module)
        try:
            instance.exports(store)["_start"](store)
        except wasmtime.ExitTrap as exit_trap:
            assert exit_trap.code == 0
        store.data().close()  # the guest's contexts go; the named graph stays loaded
        return out.read_bytes()

    return run, host.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_whisper(Path(tmp) / "model.bin", SPEC)
        audio = write_wav(Path(tmp) / "audio.wav", args.seconds)
        native, native_close = native_side(model, audio, args.threads)
        guest, guest_close = guest_side(model, audio, args.threads)
        guest(), native()  # warm up: the graph is loaded, caches are hot
        times: dict[str, list[float]] = {"guest": [], "native": []}
        for r in range(args.rounds):
            order = (("guest", guest), ("native", native)) if r % 2 == 0 else (("native", native), ("guest", guest))
            for name, fn in order:
                started = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - started)
        guest_close()
        native_close()
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": args.threads, "rounds": args.rounds, "audio_seconds": args.seconds,
        "model": f"random f16, {SPEC.n_audio_layer}+{SPEC.n_text_layer} layers x {SPEC.n_audio_state}",
        "median_s": medians,
        "audio_s_per_s": {k: args.seconds / v for k, v in medians.items()},
        "ratio_guest_over_native": medians["guest"] / medians["native"],
        "all_s": times,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
