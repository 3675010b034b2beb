"""Benchmark for docs/backends/whisper.md: seconds of audio transcribed per second, our C guest
(guests/whisper, WasmEdge's conventions) through wasinn against whisper.cpp called natively through
pywhispercpp (the issue's target: guest <= 1.03x native).

Equal work on both sides, checked:

* the same model file and WAV file, the same options (threads, strategy, beam size, best-of,
  temperature and its fallback step, thresholds), set on the native side as WasmEdge's
  ``setWhisperParams`` sets them (written here, not taken from the backend);
* ``--context fresh`` (the default): a new ``whisper_context`` for every round on both sides (the guest
  side: a new host whose named model is loaded before the clock starts), so whisper.cpp's decoder
  state (its RNG, which the temperature fallback draws from) never carries over; ``--context reuse``:
  one context per side for the whole run, both sides making the same calls in the same order;
* every round's text is compared byte for byte (the guest's stdout against the native segments
  printed as WasmEdge prints them); a difference stops the run (exit status 1): the timings would
  not be of the same work;
* modes: ``greedy`` (beam size 1, best-of 1, temperature 0 and no fallback: the embedder-only option
  ``temperature-inc`` = 0, so every round does the same work) and ``wasmedge`` (WasmEdge's defaults:
  beam search of 5, best-of 5, temperature 0 with fallback steps of 0.2);
* what is timed: the guest side is a whole guest run on the loaded model (instantiate, the guest
  reads the WAV from a preopened folder, load_by_name, init_execution_context, set_input, compute,
  get_output, writes the text, exits); the native side reads the WAV, calls ``whisper_full`` and
  gathers the segments' text. Loading the model is outside the clock on both sides. Rounds
  alternate which side goes first, after one untimed warm-up round each; medians and minimums.

No downloads: a random-weight f16 model with the widths and layers of whisper's ``tiny`` (or
``--size base``/``small``), a 64-token text context (so that a random decoder's segments stay short),
is written on the spot (``wasinn_backend_whisper.testing``), and so is the audio (tones and noise;
30 s by default: whisper.cpp encodes whole 30-s windows, so shorter audio costs the same encoder time
and would understate the throughput). Run it on an idle machine (the JSON records the load average)::

    python benchmarks/whisper_speed.py --threads 4 --rounds 7 --out benchmarks/results_whisper.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import wave
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime
from wasinn_backend_whisper.testing import TinyWhisper, write_tiny_whisper, write_wav

import wasinn

GUEST = Path(__file__).resolve().parents[1] / "guests" / "whisper" / "whisper.wasm"
#: (state, heads, layers) of whisper's own sizes; the vocabulary is English-only (51864).
SIZES = {"tiny": (384, 6, 4), "base": (512, 8, 6), "small": (768, 12, 12)}
#: The options per mode, in WasmEdge's keys (``temperature-inc`` is wasinn's embedder-only key).
MODES: dict[str, dict[str, Any]] = {
    "greedy": {"beam-size": 1, "best-of": 1, "temperature": 0.0, "temperature-inc": 0.0},
    "wasmedge": {},
}
#: WasmEdge's defaults (plugins/wasi_nn/wasinn_whisper.h), for the native side.
DEFAULTS: dict[str, Any] = {"beam-size": 5, "best-of": 5, "temperature": 0.0, "temperature-inc": 0.2}


def spec(size: str) -> TinyWhisper:
    state, heads, layers = SIZES[size]
    return TinyWhisper(n_audio_state=state, n_audio_head=heads, n_audio_layer=layers, n_text_state=state,
                       n_text_head=heads, n_text_layer=layers, n_text_ctx=64, seed=7)


def stamp(t: int) -> str:
    ms = t * 10
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


class Native:
    """whisper.cpp through pywhispercpp, set as WasmEdge's setWhisperParams sets it."""

    def __init__(self, model: Path, options: dict[str, Any]) -> None:
        import _pywhispercpp as pw

        self.pw, self.model, self.options = pw, model, {**DEFAULTS, **options}
        self.ctx: Any = None

    def open(self) -> None:
        cparams = self.pw.whisper_context_default_params()
        cparams.use_gpu = False
        self.ctx = self.pw.whisper_init_from_file_with_params(str(self.model), cparams)

    def close(self) -> None:
        if self.ctx is not None:
            self.pw.whisper_free(self.ctx)
            self.ctx = None

    def params(self) -> Any:
        pw, o = self.pw, self.options
        beam = int(o["beam-size"])
        p = pw.whisper_full_default_params(pw.WHISPER_SAMPLING_BEAM_SEARCH)
        p.strategy = pw.WHISPER_SAMPLING_BEAM_SEARCH if beam > 1 else pw.WHISPER_SAMPLING_GREEDY
        p.n_threads = int(o["threads"])
        p.n_max_text_ctx = 16384
        p.print_progress = False
        p.thold_pt = 0.01
        p.language, p.translate = "en", False
        p.temperature, p.temperature_inc = float(o["temperature"]), float(o["temperature-inc"])
        p.entropy_thold, p.logprob_thold = 2.4, -1.0
        p.greedy = {"best_of": int(o["best-of"])}
        p.beam_search = {"beam_size": beam, "patience": -1.0}
        p.print_timestamps, p.no_timestamps = True, False
        return p

    def run(self, audio: Path) -> bytes:
        pw, ctx = self.pw, self.ctx
        with wave.open(str(audio), "rb") as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / np.float32(32768.0)
        if pw.whisper_full(ctx, self.params(), pcm, len(pcm)) != 0:
            raise RuntimeError("whisper_full failed")
        out = bytearray()
        for i in range(pw.whisper_full_n_segments(ctx)):
            t0, t1 = pw.whisper_full_get_segment_t0(ctx, i), pw.whisper_full_get_segment_t1(ctx, i)
            out += f"[{stamp(t0)} --> {stamp(t1)}] ".encode() + pw.whisper_full_get_segment_text(ctx, i) + b"\n"
        return bytes(out)


class Guest:
    """Our C guest through wasinn, the model registered as "default" with the same options."""

    def __init__(self, model: Path, options: dict[str, Any]) -> None:
        self.model, self.options = model, options
        self.engine = wasmtime.Engine()
        self.module = wasmtime.Module.from_file(self.engine, str(GUEST))
        self.host: wasinn.WasiNnHost | None = None
        self.linker: wasmtime.Linker | None = None

    def open(self) -> None:
        self.host = wasinn.WasiNnHost()
        self.host.register_model("default", self.model, config=self.options)
        self.host.load_named("default")  # the model is loaded here, before the clock starts
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.host.add_to_linker(self.linker)

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
            self.host = None

    def run(self, audio: Path) -> bytes:
        assert self.host is not None and self.linker is not None
        out = audio.parent / "guest-out.txt"
        store = self.host.new_store(self.engine)
        config = wasmtime.WasiConfig()
        config.argv = ["whisper", f"/data/{audio.name}"]
        config.preopen_dir(str(audio.parent), "/data")
        config.stdout_file = str(out)
        store.set_wasi(config)
        instance = self.host.instantiate(store, self.linker, self.module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
        except wasmtime.ExitTrap as exit_trap:
            if exit_trap.code != 0:
                raise RuntimeError(f"the guest exited with {exit_trap.code}") from None
        self.host.state(store).close()  # the guest's contexts go; the named graph stays loaded
        return out.read_bytes()


def measure(sides: dict[str, Native | Guest], audio: Path, rounds: int, fresh: bool) -> dict[str, Any]:
    times: dict[str, list[float]] = {name: [] for name in sides}
    texts: list[bytes] = []

    def one(name: str, timed: bool) -> bytes:
        side = sides[name]
        if fresh:
            side.open()
        started = time.perf_counter()
        text = side.run(audio)
        elapsed = time.perf_counter() - started
        if fresh:
            side.close()
        if timed:
            times[name].append(elapsed)
        return text

    if not fresh:
        for side in sides.values():
            side.open()
    try:
        for r in range(rounds + 1):  # round 0 is the warm-up, untimed
            order = ["guest", "native"] if r % 2 == 0 else ["native", "guest"]
            got = {name: one(name, timed=r > 0) for name in order}
            if got["guest"] != got["native"]:
                sys.stderr.write(f"round {r}: the texts differ: the timings would not be of the same work\n"
                                 f"guest:  {got['guest'][:400]!r}\nnative: {got['native'][:400]!r}\n")
                raise SystemExit(1)
            texts.append(got["guest"])
    finally:
        if not fresh:
            for side in sides.values():
                side.close()
    return {"times": times, "texts": texts}


def summary(times: dict[str, list[float]], seconds: float) -> dict[str, Any]:
    median = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return {
        "median_s": median,
        "min_s": best,
        "max_s": {k: max(v) for k, v in times.items()},
        "audio_s_per_s_median": {k: seconds / v for k, v in median.items()},
        "audio_s_per_s_best": {k: seconds / v for k, v in best.items()},
        "ratio_guest_over_native_median": median["guest"] / median["native"],
        "ratio_guest_over_native_min": best["guest"] / best["native"],
        "all_s": times,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "pywhispercpp": version("pywhispercpp"), "wasmtime": version("wasmtime")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="whisper.cpp threads, both sides (default: WasmEdge's, min(4, cores))")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per mode (after a warm-up round)")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio length")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="the random model's widths and layers")
    parser.add_argument("--modes", default="greedy,wasmedge", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--context", choices=("fresh", "reuse"), default="fresh",
                        help="a new whisper_context per round on both sides, or one per side for the run")
    parser.add_argument("--note", default="", help="recorded in the JSON (what the run is for)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= (os.cpu_count() or 1):
        # The backend cuts a guest's threads to the cores here; the native side would not.
        parser.error(f"--threads {args.threads}: 1 to the {os.cpu_count()} cores here")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}")
    model_spec = spec(args.size)
    result: dict[str, Any] = {
        "note": args.note,
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "threads": args.threads, "rounds": args.rounds, "audio_seconds": args.seconds, "context": args.context,
        "model": f"random f16, whisper {args.size}'s widths: {model_spec.n_audio_layer}+{model_spec.n_text_layer} "
                 f"layers x {model_spec.n_audio_state}, 64-token text context",
        "modes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_whisper(Path(tmp) / "model.bin", model_spec)
        audio = write_wav(Path(tmp) / "audio.wav", args.seconds)
        for mode in modes:
            options = {**MODES[mode], "threads": args.threads}
            # The guest side first: it installs the backend's whisper.cpp log callback, which the
            # native side then shares (whisper.cpp has one per process).
            sides: dict[str, Native | Guest] = {"guest": Guest(model, options), "native": Native(model, options)}
            run = measure(sides, audio, args.rounds, fresh=args.context == "fresh")
            texts = run["texts"]
            result["modes"][mode] = {
                "options": {**DEFAULTS, **options},
                "text_equal_every_round": True,  # measure() stops the run otherwise
                "same_text_every_round": all(t == texts[0] for t in texts),
                "segments": texts[0].count(b"\n"),
                **summary(run["times"], args.seconds),
            }
    result["load_average_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
